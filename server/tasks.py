"""Stopping helper tasks without losing the stopper's own cancellation."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

log = logging.getLogger("hotline.tasks")


async def cancel_and_wait(*tasks: asyncio.Task | None, timeout: float | None = None) -> set[asyncio.Task]:
    """Cancel `tasks` and wait until they have ended, at most `timeout` seconds; returns those still running.

    Their results and errors are dropped, and the errors marked as retrieved (asyncio would otherwise report each one
    as "never retrieved" when the task is collected): a task that must report its failure logs it itself.

    Not `asyncio.gather(..., return_exceptions=True)`: when the waiting task is itself cancelled while the helpers
    are ending, gather raises a helper's CancelledError in its place, without the cancel's message. An anyio cancel
    scope (Starlette's test client, a server's task group) recognises its own cancellation by that message, so the
    error escaped the scope and the connection ended as cancelled instead of closed. `asyncio.wait` raises the
    waiter's own cancellation, message included.
    """
    live = [t for t in tasks if t is not None]
    for task in live:
        task.cancel()
    if not live:
        return set()
    done, stuck = await asyncio.wait(live, timeout=timeout)
    for task in done:
        if not task.cancelled():
            task.exception()
    return stuck


async def bounded(step: Awaitable[object], what: str, timeout: float = 10.0) -> bool:
    """Await one step of a service's shutdown for at most `timeout` seconds; False (logged) when it did not finish.

    A shutdown that hangs on one stuck client (a Redis reply that never comes, a pool that never drains) keeps the
    process from exiting and its successor from taking the port; later steps, the store's close among them, never
    run. Each step gets its own bound, so the others still run."""
    try:
        async with asyncio.timeout(timeout):
            await step
        return True
    except TimeoutError:
        log.error("a shutdown step did not finish in time", extra={"step": what, "timeout_s": timeout})
        return False
