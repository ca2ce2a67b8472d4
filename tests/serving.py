"""Run the real app on uvicorn in a background thread, on a free port, for end-to-end tests over real websockets."""
from __future__ import annotations

import contextlib
import threading
from typing import Any, Iterator

from server.app import create_app
from server.caller.bench import free_port, wait_ready  # the bench's launcher helpers serve the tests too
from server.commands import uvicorn_config
from server.settings import Settings


@contextlib.contextmanager
def serve_app(app: Any, settings: Settings, *, ready_timeout_s: float = 300.0) -> Iterator[str]:
    """Serve a built app on uvicorn in a thread; yield http://127.0.0.1:PORT once /readyz is 200; stop afterwards."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn_config(app, settings, host="127.0.0.1", port=port, timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, timeout_s=ready_timeout_s, poll_s=0.05,
                   died=lambda: None if thread.is_alive() else "the server thread died during start-up")
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
