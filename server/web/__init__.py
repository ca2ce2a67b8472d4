"""Pages served by the call service (the browser softphone at `/`; consoles live beside it)."""
