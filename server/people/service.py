"""`install_people(app, settings)`: accounts, the agent queue runtime, live call taps and the two consoles, added to
the call service's app. Everything hangs off `app.state.people` (no module-level state: tests build several apps).

The one hook in server/app.py is `install_people(app, settings)` after the app is built. The rest binds itself
through a small ASGI middleware (`_Binder`), so the call service's code does not change:
- lifespan: after the app's start-up (store open, migrations run) `startup()` runs — and a failure (development
  accounts outside dev mode) is reported as `lifespan.startup.failed`, so the server refuses to start; at shutdown
  the queue closes (every waiting call gets its final state) before the app closes the store.
- the first call connection after the models are ready swaps the CallContext's agent queue (the in-process
  WaitingList) for this QueueRuntime, and its `sessions` dict for one that taps every new CallSession
  (`LiveRegistry.attach`) the moment it registers, before it reads its first message.
"""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from server.people.auth import AuthService
from server.people.live import LiveRegistry
from server.people.queue_runtime import QueueRuntime
from server.people.retention import retention_loop
from server.people.throttle import LoginThrottle
from server.settings import PeopleSettings

log = logging.getLogger("hotline.people")


class _AppStore:
    """The app's store, resolved when used: the store is built in the lifespan, after the routes exist."""

    def __init__(self, app: FastAPI) -> None:
        self._app = app

    @property
    def sessions(self) -> Any:
        store = getattr(self._app.state, "store", None)
        if store is None:
            raise RuntimeError("the store is not open yet")
        return store.sessions


def recordings_folder(settings: PeopleSettings, *, project_root: Path, db_url: str) -> Path | None:
    if not settings.recordings:
        return None
    if settings.recordings_dir:
        folder = Path(settings.recordings_dir)
        return folder if folder.is_absolute() else project_root / folder
    prefix = "sqlite+aiosqlite:///"
    if db_url.startswith(prefix) and ":memory:" not in db_url:
        return Path(db_url[len(prefix):]).parent / "recordings"  # var/hotline.db -> var/recordings
    return project_root / "var" / "recordings"


class DevAccountsPresent(RuntimeError):
    pass


class PeopleService:
    def __init__(self, *, app: FastAPI, settings: PeopleSettings, project_root: Path, db_url: str = "") -> None:
        self.settings = settings
        self.store = _AppStore(app)
        self.recordings_dir = recordings_folder(settings, project_root=project_root, db_url=db_url)
        self.live = LiveRegistry(recordings_dir=self.recordings_dir,
                                 recording_max_bytes=int(settings.recording_max_mb * 1024 * 1024))
        self._retention: Any = None
        self.queue = QueueRuntime(settings=settings, live=self.live, store=self.store, clock=self.live.clock,
                                  metrics=getattr(app.state, "metrics", None))
        self.auth = AuthService(store=self.store, token_ttl_s=settings.token_ttl_s, dev_mode=settings.dev_mode,
                                ticket_ttl_s=settings.ws_ticket_ttl_s)
        self.throttle = LoginThrottle(window_s=settings.login_window_s, per_account=settings.login_failures_per_account,
                                      per_address=settings.login_failures_per_address)

    async def startup(self) -> None:
        """Refuse to start with development accounts (any password, e.g. a demo one) unless dev mode is on."""
        count = await self.auth.dev_accounts()
        if count and not self.settings.dev_mode:
            raise DevAccountsPresent(
                f"{count} development account(s) (made with `hotline users add --dev`) exist: disable them or start "
                "with HOTLINE_PEOPLE__DEV_MODE=true on a development machine")
        self.queue.start()
        retention_days = self.settings.recordings_retention_days
        self._retention = asyncio.create_task(retention_loop(
            self.recordings_dir, max_age_s=retention_days * 86400 if retention_days else None))

    async def shutdown(self) -> None:
        if self._retention is not None:
            self._retention.cancel()
            await asyncio.gather(self._retention, return_exceptions=True)
        await self.queue.stop()


class ObservedSessions(dict):  # type: ignore[type-arg]
    """CallContext.sessions that taps each call as it registers (CallSession.run's first line)."""

    def __init__(self, existing: dict[str, Any], live: LiveRegistry) -> None:
        super().__init__(existing)
        self.live = live

    def __setitem__(self, call_id: str, session: Any) -> None:
        super().__setitem__(call_id, session)
        try:
            self.live.attach(session)
        except Exception:  # a console problem must never stop a call
            log.exception("could not tap a call")


class _Binder:
    """ASGI middleware: binds the people service to the app's lifespan and call context (see the module doc)."""

    def __init__(self, app: Any, service: "PeopleService", fastapi_app: FastAPI) -> None:
        self.app = app
        self.service = service
        self.fastapi_app = fastapi_app

    def _bind_context(self) -> None:
        ctx = getattr(self.fastapi_app.state, "context", None)
        if ctx is None:
            return
        if ctx.queue is not self.service.queue:
            ctx.queue = self.service.queue
        if not isinstance(ctx.sessions, ObservedSessions):
            ctx.sessions = ObservedSessions(ctx.sessions, self.service.live)
            for session in list(ctx.sessions.values()):
                self.service.live.attach(session)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            self._bind_context()
            await self.app(scope, receive, send)
            return

        async def lifespan_receive() -> Any:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                try:
                    await self.service.shutdown()
                except Exception:
                    log.exception("the agent queue did not shut down cleanly")
            return message

        async def lifespan_send(message: Any) -> None:
            if message["type"] == "lifespan.startup.complete":
                try:
                    await self.service.startup()
                except Exception as exc:
                    log.error("refusing to start", extra={"error": str(exc)})
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
            await send(message)

        await self.app(scope, lifespan_receive, lifespan_send)


def people_settings(settings: Any) -> PeopleSettings:
    value = getattr(settings, "people", None)
    return value if isinstance(value, PeopleSettings) else PeopleSettings()


def install_people(app: FastAPI, settings: Any, *, people: PeopleSettings | None = None) -> PeopleService:
    from server.people.api import router as api_router
    from server.people.consoles import router as ws_router
    from server.people.pages import router as pages_router
    from server.settings import project_root

    service = PeopleService(app=app, settings=people or people_settings(settings), project_root=project_root(),
                            db_url=getattr(settings, "db_url", ""))
    app.state.people = service
    app.state.auth = service.auth
    app.include_router(api_router)
    app.include_router(ws_router)
    app.include_router(pages_router)
    app.add_middleware(_Binder, service=service, fastapi_app=app)
    return service
