"""The real app (server.app.create_app) on a real uvicorn, on a free port, for the caller and softphone tests.

Unlike tests/serving.py this takes a built app, so a test can add the softphone page when the app does not mount it
itself yet (server/web/softphone.py's router).
"""
from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

import httpx
import uvicorn

from server.commands import uvicorn_config


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def with_softphone(app: Any) -> Any:
    """Mount the softphone at `/` unless the app already serves something there."""
    from server.web.softphone import router

    if not any(getattr(route, "path", None) == "/" for route in app.router.routes):
        app.include_router(router)
    return app


@contextmanager
def serve_app(app: Any, settings: Any, *, ready_timeout_s: float = 300.0) -> Iterator[str]:
    """Yield the base URL (http://127.0.0.1:PORT) once /readyz answers 200; stop the server afterwards."""
    port = free_port()
    server = uvicorn.Server(uvicorn_config(app, settings, host="127.0.0.1", port=port, timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + ready_timeout_s
    try:
        while True:
            if not thread.is_alive():
                raise RuntimeError("the server thread died during start-up")
            try:
                r = httpx.get(f"{base}/readyz", timeout=2)
                if r.status_code == 200:
                    break
                if r.json().get("status") == "error":
                    raise RuntimeError(f"the server failed to load its models: {r.json()}")
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the server was not ready within {ready_timeout_s:.0f} s")
            time.sleep(0.1)
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def ws_url(base: str, protocol: str) -> str:
    return base.replace("http://", "ws://", 1) + ("/ws/call" if protocol == "native" else "/ws/twilio")


_SHARED: dict[str, Any] = {}


def shared_real_server(tmp_root: Any) -> str:
    """One real server (real models, softphone mounted) per test process, shared by the caller and browser tests:
    loading Whisper, the synthesizer and the router's embeddings is the slow part (minutes on 2 busy cores).
    It stops when the process exits."""
    if "base" in _SHARED:
        return _SHARED["base"]
    import atexit

    from server.app import create_app
    from server.settings import Settings

    # pace_audio=False: answers are sent as fast as they are synthesized (the callers still play them at 1x), so
    # a test does not sit through every answer's full length on the wire.
    settings = Settings(db_url=f"sqlite+aiosqlite:///{tmp_root / 'real-calls.db'}", log_level="WARNING",
                        pace_audio=False)
    context = serve_app(with_softphone(create_app(settings, configure_logs=False)), settings, ready_timeout_s=900)
    _SHARED["base"] = context.__enter__()
    atexit.register(context.__exit__, None, None, None)
    return _SHARED["base"]
