"""server/: connects people. FastAPI app, websockets, consoles, storage, metrics, the CLI."""
