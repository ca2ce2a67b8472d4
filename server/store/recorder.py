"""One call's writer: every call, turn and event is stored as it happens, in order, off the call's hot path.

The session hands records to `CallRecorder` without waiting for the database; a single task per call writes them
in order (the call row before its turns). At the end the session awaits `close()`, which drains what is queued, so
a call that is cut off still keeps every finished turn and gets its final state.

When the database is unreachable the writes wait, in order, and are retried with a back-off until it answers:
the call goes on meanwhile (nothing on its path waits for the store). A call that ends during the outage leaves
its writer running, registered on the store (`Store.pending_writers`), so its turns and final state are written
when the database returns; the app's shutdown gives those writers a last chance before it closes the store.
Only a write the database refuses as such (a constraint or data error: retrying cannot help) is given up.

The queue is bounded (`max_queue`): when the database falls behind, the oldest non-essential events (key presses,
playback marks, protocol errors, barge-ins) are dropped and counted (`dropped`, metric errors{kind=
"recorder_dropped"}). Turns, the call row, its updates and its final state are never dropped.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import deque
from typing import Any, Awaitable, Callable

from sqlalchemy.exc import DataError, IntegrityError, ProgrammingError

from server.metrics import Metrics
from server.store.db import Store
from server.store.models import utcnow

log = logging.getLogger("hotline.store")

_STOP = object()
_REFUSED = (IntegrityError, DataError, ProgrammingError)  # the database answered "no": retrying cannot help
RETRY_MAX_S = 2.0  # back-off ceiling while the database is unreachable
# Call events that may be dropped under load: everything else (started, decision, queued, ended, ...) is kept.
NON_ESSENTIAL = frozenset({"dtmf", "mark", "protocol_error", "barge_in"})


class CallRecorder:
    def __init__(self, *, store: Store, call_id: str, metrics: Metrics | None = None, max_queue: int = 2000) -> None:
        self.store = store
        self.call_id = call_id
        self.metrics = metrics
        self.max_queue = max_queue
        self._jobs: deque[tuple[bool, Any]] = deque()  # (essential, job)
        self._optional = 0  # non-essential jobs in _jobs
        self._wake = asyncio.Event()
        self.dropped = 0
        self._task: asyncio.Task[None] | None = None
        self._seq = 0
        self.ended: tuple[str, str] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"recorder-{self.call_id}")

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _put(self, job: Any, *, essential: bool = True) -> None:
        if len(self._jobs) >= self.max_queue and not self._drop_oldest_optional():
            if not essential:
                self._count_drop()
                return
        self._jobs.append((essential, job))
        self._optional += not essential
        self._wake.set()

    def _drop_oldest_optional(self) -> bool:
        if not self._optional:
            return False
        for i, (essential, _job) in enumerate(self._jobs):
            if not essential:
                del self._jobs[i]
                self._optional -= 1
                self._count_drop()
                return True
        return False

    def _count_drop(self) -> None:
        self.dropped += 1
        if self.metrics is not None:
            self.metrics.errors.labels(kind="recorder_dropped").inc()

    @property
    def pending(self) -> int:
        return len(self._jobs)

    def written(self) -> "asyncio.Future[None]":
        """Resolves once everything queued so far is in the store (or failed): the session waits on it before it
        answers a caller, so an answered turn survives even a kill -9 right after the answer."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def mark() -> None:
            if not future.done():
                future.set_result(None)

        self._put(mark)
        return future

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
        self._put(lambda: self.store.add_event(call_id=self.call_id, kind=kind, data=data, at=at),
                  essential=kind not in NON_ESSENTIAL)

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
        self._put(_STOP)
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except asyncio.TimeoutError:
            log.error("store writes still waiting for the database", extra={"pending": len(self._jobs)})
            pending = getattr(self.store, "pending_writers", None)
            if pending is None:
                self._task.cancel()
                return
            pending.add(self._task)
            self._task.add_done_callback(pending.discard)

    async def _next(self) -> Any:
        while not self._jobs:
            self._wake.clear()
            await self._wake.wait()
        essential, job = self._jobs.popleft()
        self._optional -= not essential
        return job

    async def _run(self) -> None:
        while True:
            job = await self._next()
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
