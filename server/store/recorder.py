"""One call's writer: every call, turn and event is stored as it happens, in order, off the call's hot path.

The session hands records to `CallRecorder` without waiting for the database; a single task per call writes them
in order (the call row before its turns). At the end the session awaits `close()`, which drains what is queued, so
a call that is cut off still keeps every finished turn and gets its final state.

When the database is unreachable the writes wait, in order, and are retried with a back-off until it answers:
the call goes on meanwhile (nothing on its path waits for the store). A call that ends during the outage leaves
its writer running, registered on the store (`Store.pending_writers`), so its turns and final state are written
when the database returns; the app's shutdown gives those writers a last chance before it closes the store.
Only a write the database refuses as such (a constraint or data error: retrying cannot help) is given up.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any, Awaitable, Callable

from sqlalchemy.exc import DataError, IntegrityError, ProgrammingError

from server.metrics import Metrics
from server.store.db import Store
from server.store.models import utcnow

log = logging.getLogger("hotline.store")

_STOP = object()
_REFUSED = (IntegrityError, DataError, ProgrammingError)  # the database answered "no": retrying cannot help
RETRY_MAX_S = 2.0  # back-off ceiling while the database is unreachable


class CallRecorder:
    def __init__(self, *, store: Store, call_id: str, metrics: Metrics | None = None) -> None:
        self.store = store
        self.call_id = call_id
        self.metrics = metrics
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._seq = 0
        self.ended: tuple[str, str] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"recorder-{self.call_id}")

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _put(self, job: Callable[[], Awaitable[Any]]) -> None:
        self._queue.put_nowait(job)

    def call_started(self, *, protocol: str, **fields: Any) -> None:
        at = utcnow()
        self._put(lambda: self.store.create_call(call_id=self.call_id, protocol=protocol, started_at=at, **fields))

    def update(self, **fields: Any) -> None:
        if not fields:
            return
        self._put(lambda: self.store.update_call(self.call_id, **fields))

    def turn(self, *, seq: int | None = None, **fields: Any) -> int:
        """Store a turn; `seq` given when it was reserved earlier (a bot turn is numbered when decided)."""
        seq = seq if seq is not None else self.next_seq()
        at = utcnow()
        self._put(lambda: self.store.add_turn(call_id=self.call_id, seq=seq, created_at=at, **fields))
        return seq

    def event(self, kind: str, data: dict[str, Any] | None = None) -> None:
        at = utcnow()
        self._put(lambda: self.store.add_event(call_id=self.call_id, kind=kind, data=data, at=at))

    def end(self, *, state: str, reason: str) -> bool:
        """First ending wins: a call has exactly one final state."""
        if self.ended is not None:
            return False
        self.ended = (state, reason)
        at = utcnow()
        self.event("ended", {"state": state, "reason": reason})
        self._put(lambda: self.store.end_call(self.call_id, state=state, reason=reason, at=at))
        return True

    async def close(self, timeout: float = 10.0) -> None:
        """Wait for the queued writes; if the database is still away, leave the writer running (not lost)."""
        if self._task is None:
            return
        self._queue.put_nowait(_STOP)
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except asyncio.TimeoutError:
            log.error("store writes still waiting for the database", extra={"pending": self._queue.qsize()})
            pending = getattr(self.store, "pending_writers", None)
            if pending is None:
                self._task.cancel()
                return
            pending.add(self._task)
            self._task.add_done_callback(pending.discard)

    async def _run(self) -> None:
        while True:
            job = await self._queue.get()
            if job is _STOP:
                return
            await self._write(job)

    async def _write(self, job: Callable[[], Awaitable[Any]]) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                await job()
                if attempt > 1:
                    log.info("store write succeeded after retrying", extra={"attempts": attempt})
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a failed write must not end the call; it is logged and counted
                refused = isinstance(exc, _REFUSED)
                if attempt == 1 or (refused and attempt == 3):
                    log.error("store write failed", extra={"error": type(exc).__name__, "detail": str(exc)[:200],
                                                           "retrying": not (refused and attempt == 3)})
                    if self.metrics is not None:
                        self.metrics.errors.labels(kind="store").inc()
                if refused and attempt >= 3:
                    return
                await asyncio.sleep(min(RETRY_MAX_S, 0.05 * 2 ** (attempt - 1)))
