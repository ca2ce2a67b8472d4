"""Storage of calls, turns and call events: SQLAlchemy 2 (async), SQLite in WAL mode or PostgreSQL."""
from server.store.db import Store
from server.store.models import FINAL_STATES, Call, CallEvent, Turn

__all__ = ["Store", "Call", "Turn", "CallEvent", "FINAL_STATES"]
