"""`install_people(app, settings, queue_store=...)`: accounts, the agent queue runtime, live call taps and the two
consoles, added to the call service's app. Everything hangs off `app.state.people` (no module-level state: tests
build several apps).

create_app (server/app.py) builds the queue store (server/people/queue_store.py), calls install_people, hands
`people.queue` (the QueueRuntime) and `people.observed_sessions()` to the CallContext it builds, and runs
`people.startup()` / `people.shutdown()` in its lifespan: after the store is open (a failure, e.g. development
accounts outside dev mode or an unreachable Redis, stops the start-up), and at shutdown before the store closes
(the queue gives every call it holds its final state first).
"""
from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from routing.queue import QueueStore
from server.people.auth import AuthService
from server.people.live import LiveRegistry
from server.people.queue_runtime import QueueRuntime
from server.people.queue_store import make_queue_store, new_process_id
from server.people.retention import retention_loop
from server.people.throttle import LoginThrottle
from server.settings import PeopleSettings
from server.store.recordings import DatabaseRecordings, FolderRecordings, RecordingStore
from server.tasks import cancel_and_wait

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


def recordings_store(settings: PeopleSettings, *, store: Any, folder: Path | None, shared: bool) -> RecordingStore | None:
    """The folder or the database (`recordings_storage`); "auto" is the database when processes share Redis."""
    if not settings.recordings:
        return None
    where = settings.recordings_storage
    if where == "database" or (where == "auto" and shared):
        return DatabaseRecordings(store)
    return FolderRecordings(folder) if folder is not None else None


class DevAccountsPresent(RuntimeError):
    pass


class PeopleService:
    def __init__(self, *, app: FastAPI, settings: PeopleSettings, project_root: Path, queue_store: QueueStore,
                 db_url: str = "", redis: bool = False) -> None:
        self.settings = settings
        self.store = _AppStore(app)
        self.recordings_dir = recordings_folder(settings, project_root=project_root, db_url=db_url)
        # With Redis (several processes) recordings go to the database by default: every process plays every call.
        self.recordings = recordings_store(settings, store=self.store, folder=self.recordings_dir, shared=redis)
        self.live = LiveRegistry(recordings=self.recordings,
                                 recording_max_bytes=int(settings.recording_max_mb * 1024 * 1024))
        self._retention: Any = None
        self.queue_store = queue_store
        # A shared queue needs a time every process reads alike: the wall clock (routing/queue/store.py).
        shared = hasattr(queue_store, "follow")
        self.queue = QueueRuntime(settings=settings, live=self.live, store=self.store, queue_store=queue_store,
                                  clock=self.live.clock, queue_clock=time.time if shared else self.live.clock,
                                  metrics=getattr(app.state, "metrics", None))
        self.auth = AuthService(store=self.store, token_ttl_s=settings.token_ttl_s, dev_mode=settings.dev_mode,
                                ticket_ttl_s=settings.ws_ticket_ttl_s)
        self.throttle = LoginThrottle(window_s=settings.login_window_s, per_account=settings.login_failures_per_account,
                                      per_address=settings.login_failures_per_address)

    def observed_sessions(self) -> "ObservedSessions":
        """The CallContext's `sessions`: every call is tapped (LiveRegistry.attach) the moment it registers."""
        return ObservedSessions({}, self.live)

    async def startup(self) -> None:
        """Refuse to start with development accounts (any password, e.g. a demo one) unless dev mode is on, or
        with a shared queue store that cannot be reached."""
        count = await self.auth.dev_accounts()
        if count and not self.settings.dev_mode:
            raise DevAccountsPresent(
                f"{count} development account(s) (made with `hotline users add --dev`) exist: disable them or start "
                "with HOTLINE_PEOPLE__DEV_MODE=true on a development machine")
        check = getattr(self.queue_store, "check", None)
        if check is not None:
            await asyncio.to_thread(check)
        self.queue.start()
        retention_days = self.settings.recordings_retention_days
        # Retention prunes the recordings where this service keeps them: files in the folder, or rows in the database.
        where = getattr(self.recordings, "where", None)
        folder = self.recordings_dir if where == "folder" else None
        database = self.recordings if where == "database" else None
        self._retention = asyncio.create_task(retention_loop(
            folder, max_age_s=retention_days * 86400 if retention_days else None, database=database))

    async def shutdown(self) -> None:
        if self._retention is not None:
            await cancel_and_wait(self._retention)
        try:
            await self.queue.stop()
        finally:
            try:
                await asyncio.to_thread(self.queue_store.close)
            except RuntimeError:
                # The loop's thread pool is already shut down (a loop being torn down at interpreter exit): closing
                # here, blocking, still releases the store's connections instead of leaking them.
                self.queue_store.close()


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


def people_settings(settings: Any) -> PeopleSettings:
    value = getattr(settings, "people", None)
    return value if isinstance(value, PeopleSettings) else PeopleSettings()


def install_people(app: FastAPI, settings: Any, *, people: PeopleSettings | None = None,
                   queue_store: QueueStore | None = None) -> PeopleService:
    """`queue_store`: the one create_app built from the settings; default: the one the settings choose."""
    from server.people.api import router as api_router
    from server.people.consoles import router as ws_router
    from server.people.pages import router as pages_router
    from server.settings import project_root

    people = people or people_settings(settings)
    if queue_store is None:
        queue_store = make_queue_store(settings, process_id=new_process_id(), acd=people.acd)
    service = PeopleService(app=app, settings=people, project_root=project_root(), queue_store=queue_store,
                            db_url=getattr(settings, "db_url", ""), redis=bool(getattr(settings, "redis_url", None)))
    app.state.people = service
    app.state.auth = service.auth
    app.include_router(api_router)
    app.include_router(ws_router)
    app.include_router(pages_router)
    return service
