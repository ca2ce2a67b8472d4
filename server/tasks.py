"""Stopping helper tasks without losing the stopper's own cancellation."""

from __future__ import annotations

import asyncio


async def cancel_and_wait(*tasks: asyncio.Task | None) -> None:
    """Cancel `tasks` and wait until they have ended; their results and errors are dropped.

    Not `asyncio.gather(..., return_exceptions=True)`: when the waiting task is itself cancelled while the helpers
    are ending, gather raises a helper's CancelledError in its place, without the cancel's message. An anyio cancel
    scope (Starlette's test client, a server's task group) recognises its own cancellation by that message, so the
    error escaped the scope and the connection ended as cancelled instead of closed. `asyncio.wait` raises the
    waiter's own cancellation, message included.
    """
    live = [t for t in tasks if t is not None]
    for task in live:
        task.cancel()
    if live:
        await asyncio.wait(live)
