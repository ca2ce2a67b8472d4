"""Work-permit applications on the main store: the server's side of `routing.progress.ApplicationLookup`.

The router decides in a worker thread of the routing pool; the store is async on the event loop. `StoreApplications`
hands each look-up to the loop and waits for it (an indexed primary-key read, a millisecond), so routing/ keeps its
plain synchronous interface and knows nothing of SQLAlchemy.
"""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Iterable

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite

from routing.progress import Application, ApplicationNumber, digits_of, read_applications_file
from server.store.db import Store
from server.store.models import ApplicationRow, utcnow

log = logging.getLogger("hotline.store")

LOOKUP_TIMEOUT_S = 3.0  # a look-up that takes longer fails (the caller is offered a person); never hangs the turn


def _application(row: ApplicationRow) -> Application:
    return Application(row.number, row.status_en, row.status_zh, row.updated, row.date_of_birth, row.passport_last4)


async def upsert_applications(store: Store, applications: Iterable[Application]) -> int:
    """Insert or update by number, in one transaction (an import is all or nothing)."""
    rows = [dict(number=a.number, digits=digits_of(a.number), status_en=a.status_en, status_zh=a.status_zh,
                 updated=a.updated, date_of_birth=a.date_of_birth, passport_last4=a.passport_last4,
                 imported_at=utcnow()) for a in applications]
    if not rows:
        return 0
    insert = postgresql.insert if store.engine.dialect.name == "postgresql" else sqlite.insert
    async with store.sessions.begin() as s:
        stmt = insert(ApplicationRow)
        stmt = stmt.on_conflict_do_update(
            index_elements=[ApplicationRow.number],
            set_={k: getattr(stmt.excluded, k) for k in rows[0] if k != "number"},
        )
        await s.execute(stmt, rows)
    return len(rows)


async def count_applications(store: Store) -> int:
    async with store.sessions() as s:
        return int((await s.execute(select(func.count()).select_from(ApplicationRow))).scalar_one())


async def find_application(store: Store, number: ApplicationNumber) -> Application | None:
    async with store.sessions() as s:
        row = await s.get(ApplicationRow, number.canonical)
        if row is None:
            rows = (await s.execute(select(ApplicationRow).where(ApplicationRow.digits == number.digits).limit(2))).scalars().all()
            row = rows[0] if len(rows) == 1 else None
        return _application(row) if row is not None else None


async def seed_demo_applications(store: Store, demo_file: Path | None) -> int:
    """An empty store gets the demonstration applications, so a fresh install can be tried at once."""
    if demo_file is None or not Path(demo_file).is_file() or await count_applications(store) > 0:
        return 0
    n = await upsert_applications(store, read_applications_file(Path(demo_file)))
    log.info("application store filled with demonstration applications", extra={"count": n})
    return n


class StoreApplications:
    """`ApplicationLookup` on the main store, for a router that decides in worker threads of `loop`."""

    def __init__(self, *, store: Store, loop: asyncio.AbstractEventLoop) -> None:
        self.store = store
        self.loop = loop

    def find(self, number: ApplicationNumber) -> Application | None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:  # waiting here would block the loop the look-up needs
            raise RuntimeError("StoreApplications.find must be called from a worker thread, not the event loop")
        future = asyncio.run_coroutine_threadsafe(find_application(self.store, number), self.loop)
        try:
            return future.result(timeout=LOOKUP_TIMEOUT_S)
        except BaseException:
            # Store unreachable or slow: raised, not "not found", so the router puts the caller through to a
            # person (its internal-error path) instead of telling them their application does not exist.
            future.cancel()
            raise
