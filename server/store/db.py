"""The store: one async engine per app, migrations at start-up, small explicit write methods.

SQLite runs in WAL mode so readers (dashboards, tests) never block the calls writing turns; PostgreSQL by URL
(`postgresql+asyncpg://user@host/db`). Schema changes go through Alembic (server/store/migrations), also for SQLite.
"""
from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

from sqlalchemy import event, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from server.store.models import ACTIVE, FINAL_STATES, Call, CallEvent, Turn, utcnow

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def _sqlite_path(url: str) -> Path | None:
    prefix = "sqlite+aiosqlite:///"
    if not url.startswith(prefix) or ":memory:" in url:
        return None
    return Path(url[len(prefix) :])


def run_migrations(url: str) -> None:
    """`alembic upgrade head`. Blocking: env.py runs its own event loop, so call this from a thread."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["db_url"] = url
    command.upgrade(cfg, "head")


class Store:
    def __init__(self, *, url: str, echo: bool = False, process_id: str | None = None) -> None:
        self.url = url
        self.process_id = process_id  # written on every call this process creates (server/cluster)
        # Writers of ended calls still waiting for an unreachable database (server/store/recorder.py).
        self.pending_writers: set[asyncio.Task[None]] = set()
        path = _sqlite_path(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        connect_args: dict[str, Any] = {"timeout": 30} if url.startswith("sqlite") else {}
        self.engine: AsyncEngine = create_async_engine(url, echo=echo, connect_args=connect_args, pool_pre_ping=True)
        if url.startswith("sqlite"):
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    async def migrate(self) -> None:
        await asyncio.to_thread(run_migrations, self.url)

    async def close(self, *, pending_timeout_s: float = 5.0) -> None:
        if self.pending_writers:
            await asyncio.wait(set(self.pending_writers), timeout=pending_timeout_s)
            for task in self.pending_writers:
                task.cancel()  # the database did not return in time: these writes are lost, and logged as such
        await self.engine.dispose()

    # ------------------------------------------------------------ writes

    async def create_call(self, *, call_id: str, protocol: str, started_at: dt.datetime | None = None, **fields: Any) -> None:
        async with self.sessions.begin() as s:
            fields.setdefault("process_id", self.process_id)
            s.add(Call(id=call_id, protocol=protocol, state=ACTIVE, started_at=started_at or utcnow(), **fields))

    async def update_call(self, call_id: str, **fields: Any) -> None:
        """Only a call still open changes: once ended (by itself, or by a survivor that found its process dead) its
        one final state stays, whatever late write arrives."""
        async with self.sessions.begin() as s:
            await s.execute(update(Call).where(Call.id == call_id, Call.ended_at.is_(None)).values(**fields))

    async def add_turn(self, *, call_id: str, **fields: Any) -> None:
        async with self.sessions.begin() as s:
            s.add(Turn(call_id=call_id, **fields))

    async def add_event(self, *, call_id: str, kind: str, data: dict[str, Any] | None = None, at: dt.datetime | None = None) -> None:
        async with self.sessions.begin() as s:
            s.add(CallEvent(call_id=call_id, kind=kind, data=data, at=at or utcnow()))

    async def end_call(self, call_id: str, *, state: str, reason: str, at: dt.datetime | None = None) -> bool:
        """Set the final state once: a call already ended keeps its first state (returns False)."""
        if state not in FINAL_STATES:
            raise ValueError(f"not a final state: {state!r}")
        async with self.sessions.begin() as s:
            result = await s.execute(
                update(Call)
                .where(Call.id == call_id, Call.ended_at.is_(None))
                .values(state=state, reason=reason[:64], ended_at=at or utcnow())
            )
            return (result.rowcount or 0) == 1

    async def close_abandoned(self, *, reason: str = "server_restart") -> int:
        """Calls left open by a process that died: they end as dropped, so every call has a final state."""
        async with self.sessions.begin() as s:
            result = await s.execute(
                update(Call).where(Call.ended_at.is_(None)).values(state="dropped", reason=reason, ended_at=utcnow())
            )
            return result.rowcount or 0

    async def drop_calls_of(self, process_id: str, *, reason: str = "process_lost") -> list[str]:
        """The open calls of a process that died end as dropped. Conditional (only calls still open), so that
        several survivors sweeping at once, or the process's own late write, still leave exactly one final state."""
        async with self.sessions.begin() as s:
            ids = list((await s.execute(
                select(Call.id).where(Call.process_id == process_id, Call.ended_at.is_(None)))).scalars())
            if not ids:
                return []
            result = await s.execute(
                update(Call)
                .where(Call.id.in_(ids), Call.ended_at.is_(None))
                .values(state="dropped", reason=reason[:64], ended_at=utcnow())
                .returning(Call.id)
            )
            return list(result.scalars())

    async def close_orphans(self, *, live: set[str], before: dt.datetime, reason: str = "process_lost") -> int:
        """At start-up with several processes: calls left open by processes no longer alive (started before this
        process, so that a call a new process has just created is never taken for an orphan)."""
        async with self.sessions.begin() as s:
            cond = [Call.ended_at.is_(None), Call.started_at < before]
            if live:
                cond.append((Call.process_id.is_(None)) | (Call.process_id.not_in(sorted(live))))
            result = await s.execute(update(Call).where(*cond).values(state="dropped", reason=reason, ended_at=utcnow()))
            return result.rowcount or 0

    async def ping(self) -> None:
        """One round trip to the database (readiness)."""
        async with self.engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")

    # ------------------------------------------------------------ reads

    async def get_call(self, call_id: str) -> Call | None:
        async with self.sessions() as s:
            return await s.get(Call, call_id)

    async def turns(self, call_id: str) -> list[Turn]:
        async with self.sessions() as s:
            rows = await s.execute(select(Turn).where(Turn.call_id == call_id).order_by(Turn.seq))
            return list(rows.scalars())

    async def events(self, call_id: str) -> list[CallEvent]:
        async with self.sessions() as s:
            rows = await s.execute(select(CallEvent).where(CallEvent.call_id == call_id).order_by(CallEvent.id))
            return list(rows.scalars())

    async def calls(self, *, limit: int = 100) -> list[Call]:
        async with self.sessions() as s:
            rows = await s.execute(select(Call).order_by(Call.started_at.desc()).limit(limit))
            return list(rows.scalars())


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL: readers never block the writer; NORMAL sync is durable across process crashes in WAL mode.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
