"""Bounded worker pools shared by all calls: blocking inference never runs on the event loop, so
one call's recognition or synthesis never stalls the audio of the others.

A pool has a fixed number of threads and a bound on jobs waiting or running. When the bound is reached an
optional job (a partial transcript) is skipped and a required one (a final transcript, an answer's speech) fails
at once with `Overloaded` — a clear error instead of an ever-growing backlog that makes every call late.
"""
from __future__ import annotations

import asyncio
import contextvars
import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar

from prometheus_client import Gauge

T = TypeVar("T")


class Overloaded(RuntimeError):
    def __init__(self, pool: str, limit: int) -> None:
        super().__init__(f"the {pool} pool is full ({limit} jobs)")
        self.pool = pool


class BoundedPool:
    def __init__(self, *, name: str, workers: int, max_pending: int, depth_gauge: Gauge | None = None) -> None:
        self.name = name
        self.workers = workers
        self.max_pending = max_pending
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"hotline-{name}")
        self._pending = 0
        self._gauge = depth_gauge.labels(pool=name) if depth_gauge is not None else None

    @property
    def pending(self) -> int:
        return self._pending

    def _set_depth(self) -> None:
        if self._gauge is not None:
            self._gauge.set(self._pending)

    def has_room(self) -> bool:
        return self._pending < self.max_pending

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn` in the pool; raises Overloaded when the pool is full. Context (call id) travels along."""
        if self._pending >= self.max_pending:
            raise Overloaded(self.name, self.max_pending)
        self._pending += 1
        self._set_depth()
        ctx = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        job = self._executor.submit(ctx.run, functools.partial(fn, *args, **kwargs))
        # Counted down when the thread really finishes (or the job is cancelled before it starts), not when the
        # awaiting task gives up: a cancelled call's inference still occupies a worker until it returns.
        job.add_done_callback(lambda _f: self._finished(loop))
        return await asyncio.wrap_future(job)

    def _finished(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            loop.call_soon_threadsafe(self._done)
        except RuntimeError:  # the loop is closed (shutdown): nothing left to count for
            pass

    def _done(self) -> None:
        self._pending -= 1
        self._set_depth()

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
