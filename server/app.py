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

from server.cluster.presence import Presence
from server.health import Health
from server.logging import configure_logging, redact_web_queries
from server.metrics import Metrics
from server.knowledge.service import install_knowledge
from server.people.queue_store import make_queue_store, new_process_id
from server.security import ERROR_RESPONSES, install_security, metrics_access
from server.people.service import install_people
from server.call.session import CallContext, CallSession
from server.settings import Settings
from server.store import Store
from server.store.applications import StoreApplications, seed_demo_applications
from server.store.models import utcnow
from server.call.transports.connection import Connection
from server.call.transports.native import NativeSerializer
from server.call.transports.twilio import TwilioSerializer, signature_valid
from server.call.limits import Admission
from server.call.refusal import Apology, refuse
from server.call.wiring import Components, build_pools, load_components, warm_resampler
from server.tasks import bounded, cancel_and_wait

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
        started_at = utcnow()
        process_id = app.state.process_id  # the same name in the queue's store and in the cluster's presence
        store = Store(url=settings.db_url, echo=settings.db_echo, process_id=process_id)
        await store.migrate()
        await seed_demo_applications(store, settings.routing.applications_path)
        presence = await _start_presence(app, settings, store, process_id) if settings.redis_url else None
        cluster_live = await _start_cluster_live(app, settings, presence) if presence is not None else None
        if presence is None:
            closed = await store.close_abandoned(reason="server_restart")
        elif presence.redis_ok:  # other processes may be serving calls: only the calls of dead ones are closed
            closed = await presence.close_orphans(started_at=started_at)
        else:
            closed = 0  # Redis not there yet: the sweeper closes what dead processes left once it is
        if closed:
            log.warning("calls left open by an earlier process were closed", extra={"count": closed})
        health = Health(store=store, presence=presence, interval_s=settings.cluster.health_interval_s,
                        timeout_s=settings.cluster.probe_timeout_s)
        health.start()
        pools = build_pools(settings, metrics)
        state.presence, state.health = presence, health
        state.store = store
        state.context = None
        state.loader = asyncio.create_task(_load(app, store, pools))
        try:
            await state.people.startup()  # raises to refuse the start (see server/people/service.py)
            yield
        finally:
            state.ready = False
            try:  # first: the queue gives the calls it holds their final states while the store is open
                await bounded(state.people.shutdown(), "agent queue")
            except Exception:
                log.exception("the agent queue did not shut down cleanly")
            if getattr(state, "context", None) is not None:
                state.context.components.stopping.set()  # background cache filling ends with the service
            # Every step bounded (server/tasks.py `bounded`): one stuck service must not keep the process alive.
            await bounded(cancel_and_wait(state.loader), "model loader")
            await bounded(state.knowledge.stop(), "knowledge service")
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
            await bounded(health.stop(), "health probes")
            if cluster_live is not None:
                await bounded(cluster_live.stop(), "cluster live view")
                await bounded(cluster_live.redis.aclose(), "cluster live view's Redis client")
            if presence is not None:
                await bounded(presence.stop(), "cluster presence")
                await bounded(presence.redis.aclose(), "cluster presence's Redis client")
            await bounded(store.close(), "store")

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
            await app.state.knowledge.attach(comps)  # the store's published knowledge base, before ready
            await asyncio.to_thread(warm_resampler)  # whatever the models: the Twilio edge never imports on the loop
        except Exception as exc:  # the service stays up (healthz) and says why it is not ready
            log.exception("models failed to load")
            app.state.load_error = f"{type(exc).__name__}: {exc}"[:500]
            metrics.errors.labels(kind="load").inc()
            return
        comps.timings["ready_s"] = round(time.perf_counter() - t0, 3)
        if hasattr(comps.router, "applications"):  # look-ups go to the main store, shared by every process
            comps.router.applications = StoreApplications(store=store, loop=asyncio.get_running_loop())
        app.state.context = CallContext(
            settings=settings, components=comps, pools=pools, store=store, metrics=metrics,
            queue=app.state.people.queue, sessions=app.state.people.observed_sessions(),
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
    app.state.health = None
    app.state.presence = None

    try:  # the browser softphone (server/web), when present
        from server.web.softphone import router as softphone_router
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("server.web"):
            raise
    else:
        app.include_router(softphone_router)

    # The process's name in a shared queue, and the queue's store chosen once from the settings (docs/queue.md).
    app.state.process_id = new_process_id()
    queue_store = make_queue_store(settings, process_id=app.state.process_id)
    # agent queue, agent and supervisor consoles, accounts (server/people)
    install_people(app, settings, queue_store=queue_store)
    install_knowledge(app, settings)  # knowledge editor, publishing without a restart, missed questions

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        ctx: CallContext | None = app.state.context
        if not app.state.ready or ctx is None:
            body = {"status": "error" if app.state.load_error else "loading", "error": app.state.load_error}
            return JSONResponse(body, status_code=503)
        health: Health | None = app.state.health
        if health is not None and not health.ok:
            return JSONResponse({"status": "unavailable", "reasons": health.reasons()}, status_code=503)
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
        health: Health | None = app.state.health
        refusal = None if health is None or health.ok else "; ".join(health.reasons())
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
            session = CallSession(connection=connection, context=ctx, refusal=refusal)
            await session.run()
        finally:
            admission.leave(address)

    return app


def cluster_prefix(settings: Settings) -> str:
    return f"{settings.redis_prefix}:cluster:"


async def _release_queue_parties(app: FastAPI, dead: str, _agents: list[str]) -> None:
    """A process died: the agent queue takes over what it held (its agents' offers and calls go back to the
    queue, its callers leave it: QueueRuntime.take_over, docs/queue.md); the sweeper has recorded its calls
    as dropped already."""
    people = getattr(app.state, "people", None)
    if people is not None:
        people.queue.take_over(dead)


async def _start_presence(app: FastAPI, settings: Settings, store: Store, process_id: str) -> Presence:
    import redis.asyncio as aioredis

    timeout = settings.cluster.probe_timeout_s
    client = aioredis.Redis.from_url(settings.redis_url, socket_timeout=timeout, socket_connect_timeout=timeout)
    presence = Presence(redis=client, store=store, process_id=process_id, settings=settings.cluster,
                        prefix=cluster_prefix(settings), beat_url=settings.redis_url)
    presence.on_process_lost.append(lambda dead, agents: _release_queue_parties(app, dead, agents))
    await presence.start()
    log.info("cluster presence started", extra={"process_id": process_id, "redis": presence.redis_ok})
    return presence


async def _start_cluster_live(app: FastAPI, settings: Settings, presence: Presence) -> Any:
    """The bus and the cluster-wide live view (server/cluster/live.py), on a connection of their own: pub/sub
    holds one, and its reads must not share the probes' short time-out."""
    import redis.asyncio as aioredis

    from server.cluster.bus import Bus
    from server.cluster.live import ClusterLive, ClusterRemoteCalls

    people = getattr(app.state, "people", None)
    if people is None:
        return None
    client = aioredis.Redis.from_url(settings.redis_url, socket_connect_timeout=settings.cluster.probe_timeout_s)
    bus = Bus(redis=client, prefix=cluster_prefix(settings), process_id=presence.process_id)
    cluster_live = ClusterLive(redis=client, bus=bus, presence=presence, registry=people.live,
                               local_context=lambda: app.state.context,
                               interval_s=settings.cluster.heartbeat_interval_s, ttl_s=settings.cluster.heartbeat_ttl_s)
    people.queue.remote = ClusterRemoteCalls(cluster_live)  # a caller and an agent on two processes hear each other
    try:
        await cluster_live.start()
    except Exception as exc:  # noqa: BLE001 - Redis away at start: readiness says so, and the bus keeps trying
        log.error("the cluster bus could not start; retrying", extra={"error": type(exc).__name__})

        async def retry() -> None:
            while True:
                await asyncio.sleep(settings.cluster.heartbeat_interval_s)
                try:
                    await cluster_live.start()
                    log.info("the cluster bus started")
                    return
                except Exception:  # noqa: BLE001
                    continue

        cluster_live.retrying = asyncio.create_task(retry(), name="cluster-bus-retry")
    return cluster_live


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
