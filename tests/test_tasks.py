"""server.tasks.cancel_and_wait: a stopper cancelled while its helpers end raises its own cancellation."""

import asyncio

from server.tasks import cancel_and_wait


async def _stopper(started: asyncio.Event) -> None:
    helper = asyncio.create_task(asyncio.sleep(60))
    await asyncio.sleep(0)
    started.set()
    await asyncio.sleep(0.01)
    await cancel_and_wait(helper)


def test_the_stoppers_own_cancel_message_survives():
    # The stopper is cancelled in the same turn of the loop as it cancels its helper: asyncio.gather would raise
    # the helper's CancelledError here (no message), which an anyio cancel scope does not take as its own.
    async def main() -> tuple:
        started = asyncio.Event()
        stopper = asyncio.create_task(_stopper(started))
        await started.wait()
        await asyncio.sleep(0.01)
        stopper.cancel("scope")
        try:
            await stopper
        except asyncio.CancelledError as exc:
            return exc.args
        return ("returned",)

    assert asyncio.run(main()) == ("scope",)


def test_helpers_end_and_their_errors_are_dropped():
    async def fails() -> None:
        try:
            await asyncio.sleep(60)
        finally:
            raise RuntimeError("on the way out")

    async def main() -> list[bool]:
        a = asyncio.create_task(asyncio.sleep(60))
        b = asyncio.create_task(fails())
        await asyncio.sleep(0)
        await cancel_and_wait(a, None, b)
        await cancel_and_wait()
        return [a.done(), b.done(), a.cancelled()]

    assert asyncio.run(main()) == [True, True, True]
