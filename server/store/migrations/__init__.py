"""Alembic migrations of the call store (run at start-up by Store.migrate)."""
