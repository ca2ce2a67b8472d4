"""Run the real app on uvicorn in a background thread, on a free port, for end-to-end tests over real websockets."""
from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Any, Iterator

import httpx

from server.app import create_app
from server.commands import uvicorn_config
from server.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_app(app: Any, settings: Settings, *, ready_timeout_s: float = 300.0) -> Iterator[str]:
    """Serve a built app on uvicorn in a thread; yield http://127.0.0.1:PORT once /readyz is 200; stop afterwards."""
    import uvicorn

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
            time.sleep(0.05)
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@contextlib.contextmanager
def running_server(settings: Settings, *, components: Any = None, ready_timeout: float = 300.0) -> Iterator[tuple[str, Any]]:
    """Yields (ws base url "ws://127.0.0.1:PORT", app) once /readyz says ready; stops the server afterwards."""
    app = create_app(settings, components=components, configure_logs=False)
    with serve_app(app, settings, ready_timeout_s=ready_timeout) as base:
        yield base.replace("http://", "ws://", 1), app
