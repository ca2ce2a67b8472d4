"""`hotline serve`: the call service on uvicorn (the README's first command)."""
from __future__ import annotations

import argparse
from typing import Any

from server.settings import Settings


def uvicorn_config(app: Any, settings: Settings, **overrides: Any) -> Any:
    """The uvicorn settings the service needs, shared by `hotline serve` and the end-to-end tests."""
    import uvicorn

    options: dict[str, Any] = dict(
        host=settings.host,
        port=settings.port,
        ws_max_size=settings.ws_max_message_bytes,  # bigger frames close the connection with 1009
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        log_config=None,  # our JSON logging (server.logging) handles uvicorn's loggers too
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    options.update(overrides)
    return uvicorn.Config(app, **options)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from server.app import create_app

    overrides: dict[str, Any] = {}
    if args.host:
        overrides["host"] = args.host
    if args.port is not None:
        overrides["port"] = args.port
    if args.db:
        overrides["db_url"] = args.db
    if args.redis:
        overrides["redis_url"] = args.redis
    settings = Settings.load(getattr(args, "config", None), **overrides)
    server = uvicorn.Server(uvicorn_config(create_app(settings), settings))
    server.run()
    return 0


def add_commands(sub: Any, bench_sub: Any) -> None:
    serve = sub.add_parser("serve", help="start the call service (websockets /ws/call and /ws/twilio, /metrics)")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8000)")
    serve.add_argument("--db", help="database URL: sqlite+aiosqlite:///var/hotline.db (default) or postgresql+asyncpg://...")
    serve.add_argument("--redis", help="share the agent queue with other processes through Redis: redis://HOST:6379/0 "
                       "(or HOTLINE_REDIS_URL); without it the queue lives in this process")
    serve.set_defaults(func=_serve)
    warm = sub.add_parser("warm", help="load the models and synthesize every prompt and answer into the disk cache")
    warm.add_argument("--prompts-only", action="store_true",
                      help="only the fixed prompts a call needs first (greeting, one moment, transfer, goodbye ...): "
                           "what setup.sh does, so that a first `hotline serve` is ready sooner")
    warm.set_defaults(func=_warm)


def warm_caches(settings: Settings, *, out: Any = None, answers: bool = True) -> dict[str, float]:
    """Load the models and fill the synthesis cache with every prompt and knowledge-base answer (kept on disk)."""
    import sys
    import time

    from server.call.wiring import load_components

    out = out or sys.stderr
    t0 = time.perf_counter()
    comps = load_components(settings)
    comps.warm_up()
    # warm_up() synthesizes the fixed prompts; the knowledge-base answers come after, only when asked for.
    print(f"warm: models loaded and the fixed prompts cached in {time.perf_counter() - t0:.1f} s"
          + ("; filling the synthesis cache with every answer ..." if answers else ""), file=out, flush=True)
    t1 = time.perf_counter()
    for warm in comps.background_warmups if answers else ():
        warm()
    synth = comps.synthesizer
    what = f"answers cached in {time.perf_counter() - t1:.1f} s" if answers else "prompts only (no answers)"
    print(f"warm: {what} (synthesized {getattr(synth, 'misses', '?')}, already cached {getattr(synth, 'hits', '?')})",
          file=out, flush=True)
    return {"total_s": time.perf_counter() - t0}


def _warm(args: argparse.Namespace) -> int:
    warm_caches(Settings.load(getattr(args, "config", None)), answers=not getattr(args, "prompts_only", False))
    return 0
