"""The real app (server.app.create_app) on a real uvicorn, on a free port, for the caller and softphone tests.

Built on tests/serving.py's launcher; adds the softphone page when an app does not mount it itself.
"""
from __future__ import annotations

from typing import Any

from serving import serve_app  # one launcher for every end-to-end test (re-exported to the tests)


def with_softphone(app: Any) -> Any:
    """Mount the softphone at `/` unless the app already serves something there."""
    from server.web.softphone import router

    if not any(getattr(route, "path", None) == "/" for route in app.router.routes):
        app.include_router(router)
    return app


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
    # warm_answers=False: filling the synthesis cache with every answer (minutes with the neural voice on a fresh
    # checkout) would compete with the tests for the 2 cores; it has a test of its own.
    # inbound_burst_s=None: the callers replay recordings faster than real time; twilio_allow_unsigned: they also
    # play Twilio, without a signing token.
    settings = Settings(db_url=f"sqlite+aiosqlite:///{tmp_root / 'real-calls.db'}", log_level="WARNING",
                        pace_audio=False, warm_answers=False, inbound_burst_s=None, twilio_allow_unsigned=True)
    context = serve_app(with_softphone(create_app(settings, configure_logs=False)), settings, ready_timeout_s=900)
    _SHARED["base"] = context.__enter__()
    atexit.register(context.__exit__, None, None, None)
    return _SHARED["base"]
