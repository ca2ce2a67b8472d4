"""Stopping helper tasks without losing the stopper's own cancellation."""

from __future__ import annotations

import asyncio


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
