"""The FastAPI app: `create_app(settings)` builds one service; nothing is global, tests build several.

Start-up (lifespan): logging, store + migrations, metrics, worker pools, then the models load and warm in a thread
while `/healthz` already answers; `/readyz` turns 200 only when every model is warm, and the call websockets
refuse callers (close 1013, try again later) until then.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable

from fastapi import Depends, FastAPI, WebSocket
from fastapi.responses import JSONResponse, Response

from server.logging import configure_logging, redact_web_queries
from server.metrics import Metrics
from server.security import ERROR_RESPONSES, install_security, metrics_access
from server.people.service import install_people
from server.people.queue_service import WaitingList
from server.call.session import CallContext, CallSession
from server.settings import Settings
from server.store import Store
from server.call.transports.connection import Connection
from server.call.transports.native import NativeSerializer
from server.call.transports.twilio import TwilioSerializer, signature_valid
from server.call.limits import Admission
from server.call.refusal import Apology, refuse
from server.call.wiring import Components, build_pools, load_components, warm_resampler

log = logging.getLogger("hotline.app")

CLOSE_TRY_AGAIN = 1013
CLOSE_GOING_AWAY = 1001


def _background_warm(comps: Components) -> None:
    stopping = getattr(comps, "stopping", None)
    for warm in comps.background_warmups:
        if stopping is not None and stopping.is_set():
            return
        try:
            warm()
        except Exception:  # a cache miss later is slower, not wrong
            log.exception("background warm-up failed")


def create_app(
    settings: Settings,
    *,
    components: Components | Callable[[Settings], Components] | None = None,
    configure_logs: bool = True,
) -> FastAPI:
    """`components`: ready models (tests pass fakes) or a loader; default: load the real models."""
    metrics = Metrics()
    redact_web_queries()  # whoever configures the logs: no URL query (tickets, searches) reaches them

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if configure_logs:
            configure_logging(level=settings.log_level, json_lines=settings.log_json, caller_data=settings.log_caller_data)
        state = app.state
        state.ready = False
        state.load_error = None
        store = Store(url=settings.db_url, echo=settings.db_echo)
        await store.migrate()
        closed = await store.close_abandoned(reason="server_restart")
        if closed:
            log.warning("calls left open by an earlier process were closed", extra={"count": closed})
        pools = build_pools(settings, metrics)
        state.store = store
        state.context = None
        state.loader = asyncio.create_task(_load(app, store, pools))
        try:
            yield
        finally:
            state.ready = False
            if getattr(state, "context", None) is not None:
                state.context.components.stopping.set()  # background cache filling ends with the service
            state.loader.cancel()
            await asyncio.gather(state.loader, return_exceptions=True)
            context: CallContext | None = state.context
            if context is not None:
                # Calls still connected end as dropped/server_shutdown, recorded before the store closes.
                tasks = [s for s in list(context.sessions.values())]
                for session in tasks:
                    session._control_now(_shutdown_end())
                deadline = time.monotonic() + 5
                while context.sessions and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
            pools.shutdown()
            await store.close()

    async def _load(app: FastAPI, store: Store, pools: Any) -> None:
        t0 = time.perf_counter()
        try:
            if components is None:
                comps = await asyncio.to_thread(load_components, settings)
            elif callable(components) and not isinstance(components, Components):
                comps = await asyncio.to_thread(components, settings)
            else:
                comps = components
            await asyncio.to_thread(comps.warm_up)
            await asyncio.to_thread(warm_resampler)  # whatever the models: the Twilio edge never imports on the loop
        except Exception as exc:  # the service stays up (healthz) and says why it is not ready
            log.exception("models failed to load")
            app.state.load_error = f"{type(exc).__name__}: {exc}"[:500]
            metrics.errors.labels(kind="load").inc()
            return
        comps.timings["ready_s"] = round(time.perf_counter() - t0, 3)
        app.state.context = CallContext(
            settings=settings, components=comps, pools=pools, store=store, metrics=metrics,
            queue=WaitingList(metrics=metrics),
        )
        context = app.state.context
        comps.calls_active = lambda: bool(context.sessions)
        app.state.ready = True
        log.info("ready", extra={"timings": comps.timings})
        if comps.background_warmups:
            # A daemon thread, not the event loop's executor: filling the synthesis cache can take minutes with
            # the neural voice, and neither a shutdown nor the interpreter's exit may wait for it (it also stops
            # between segments once `stopping` is set).
            threading.Thread(target=_background_warm, args=(comps,), name="warm-caches", daemon=True).start()

    # The API documentation shows every route and schema to whoever asks: only when the settings say so.
    docs = {} if settings.public_docs else {"docs_url": None, "redoc_url": None, "openapi_url": None}
    app = FastAPI(title="hotline", summary="Bilingual (English / Mandarin) hotline call service", lifespan=lifespan,
                  **docs)
    install_security(app)  # security headers, 422s that never echo what was sent
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.ready = False
    app.state.context = None

    try:  # the browser softphone (server/web), when present
        from server.web.softphone import router as softphone_router
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("server.web"):
            raise
    else:
        app.include_router(softphone_router)

    install_people(app, settings)  # agent queue, agent and supervisor consoles, accounts (server/people, issue 5)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        ctx: CallContext | None = app.state.context
        if not app.state.ready or ctx is None:
            body = {"status": "error" if app.state.load_error else "loading", "error": app.state.load_error}
            return JSONResponse(body, status_code=503)
        return JSONResponse({"status": "ready", "calls": len(ctx.sessions), "timings": ctx.components.timings})

    @app.get("/metrics", dependencies=[Depends(metrics_access)], response_class=Response,
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
                        401: ERROR_RESPONSES[401], 403: ERROR_RESPONSES[403]})
    async def metrics_endpoint() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.websocket("/ws/call")
    async def ws_call(websocket: WebSocket) -> None:
        await _serve_call(websocket, NativeSerializer(max_frame_bytes=settings.max_frame_bytes))

    @app.websocket("/ws/twilio")
    async def ws_twilio(websocket: WebSocket) -> None:
        token = settings.twilio_auth_token
        if token is not None and token.get_secret_value():
            if not signature_valid(token.get_secret_value(), websocket.headers.get("x-twilio-signature"),
                                   _signed_urls(websocket, settings.public_url)):
                metrics.errors.labels(kind="twilio_signature").inc()
                log.warning("refused a Twilio stream with a bad signature")
                await websocket.close(code=1008)  # before accept: the upgrade is answered with HTTP 403
                return
        elif not settings.twilio_allow_unsigned:
            # No token, no way to tell Twilio from anyone else: refused unless a development setting allows it.
            metrics.errors.labels(kind="twilio_unsigned").inc()
            log.warning("refused a Twilio stream: no twilio_auth_token is set (twilio_allow_unsigned is off)")
            await websocket.close(code=1008)
            return
        await _serve_call(websocket, TwilioSerializer(max_frame_bytes=settings.max_frame_bytes))

    admission = Admission(max_calls=settings.max_calls, max_per_address=settings.max_calls_per_address)
    apology = Apology()
    app.state.admission = admission

    async def _serve_call(websocket: WebSocket, serializer: Any) -> None:
        ctx: CallContext | None = app.state.context
        await websocket.accept()
        if not app.state.ready or ctx is None:
            await websocket.close(code=CLOSE_TRY_AGAIN, reason="not ready")
            return
        address = websocket.client.host if websocket.client else "unknown"
        refused = admission.enter(address)
        if refused is not None:
            metrics.errors.labels(kind=f"refused_{refused}").inc()
            log.warning("call refused", extra={"why": refused, "calls": admission.total})
            await refuse(websocket, serializer, ctx, apology, refused)
            return
        try:
            connection = Connection(websocket=websocket, serializer=serializer, send_queue_max=settings.send_queue_max,
                                    send_timeout_s=settings.send_timeout_s)
            session = CallSession(connection=connection, context=ctx)
            await session.run()
        finally:
            admission.leave(address)

    return app


def _shutdown_end() -> Any:
    from server.call.session import EndCall

    return EndCall("dropped", "server_shutdown", CLOSE_GOING_AWAY)


def _signed_urls(websocket: WebSocket, public_url: str | None) -> list[str]:
    """The URLs Twilio may have signed: the configured public one first, then what this server sees."""
    path_qs = websocket.url.path + (f"?{websocket.url.query}" if websocket.url.query else "")
    urls = []
    if public_url:
        base = public_url.rstrip("/").replace("https://", "wss://").replace("http://", "ws://")
        urls.append(base + path_qs)
    host = websocket.headers.get("host", websocket.url.netloc)
    for scheme in ("wss", "ws"):
        urls.append(f"{scheme}://{host}{path_qs}")
    return urls
