"""server.tasks: cancel_and_wait (a stopper cancelled while its helpers end raises its own cancellation) and
bounded (a shutdown step that hangs is abandoned, logged, after its timeout)."""

import asyncio
import gc

import logging

from server.tasks import bounded, cancel_and_wait


def test_the_stoppers_own_cancel_message_survives():
    # The stopper is cancelled after it has cancelled its helper and before the helper has ended (`entered` wakes
    # main ahead of the helper). asyncio.gather raises the helper's CancelledError here (no message), which an anyio
    # cancel scope does not take as its own.
    async def stopper(entered: asyncio.Event) -> None:
        helper = asyncio.create_task(asyncio.sleep(60))
        await asyncio.sleep(0)
        entered.set()
        await cancel_and_wait(helper)

    async def main() -> tuple:
        entered = asyncio.Event()
        task = asyncio.create_task(stopper(entered))
        await entered.wait()
        task.cancel("scope")
        try:
            await task
        except asyncio.CancelledError as exc:
            return exc.args
        return ("returned",)

    assert asyncio.run(main()) == ("scope",)


def test_helpers_end_and_their_errors_are_retrieved():
    async def fails() -> None:
        try:
            await asyncio.sleep(60)
        finally:
            raise RuntimeError("on the way out")

    async def main() -> tuple[list[bool], set, list[str]]:
        reported: list[str] = []
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: reported.append(ctx["message"]))
        a = asyncio.create_task(asyncio.sleep(60))
        b = asyncio.create_task(fails())
        await asyncio.sleep(0)
        stuck = await cancel_and_wait(a, None, b)
        ended = [a.done(), b.done(), a.cancelled()]
        del a, b
        gc.collect()  # an unretrieved error is reported when its task is collected
        return ended, stuck | await cancel_and_wait(), reported

    assert asyncio.run(main()) == ([True, True, True], set(), [])


def test_a_helper_that_does_not_stop_is_returned_after_the_timeout():
    async def stubborn(release: asyncio.Event) -> None:
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue  # ignores cancellation until released

    async def main() -> tuple[bool, bool]:
        release = asyncio.Event()
        task = asyncio.create_task(stubborn(release))
        await asyncio.sleep(0)
        stuck = await cancel_and_wait(task, timeout=0.05)
        release.set()
        await task
        return task in stuck, task.done()

    assert asyncio.run(main()) == (True, True)


def test_a_shutdown_step_that_hangs_is_abandoned_after_its_bound_and_logged(caplog):
    finished = []

    async def hangs() -> None:
        await asyncio.Event().wait()  # a reply that never comes

    async def quick() -> None:
        await asyncio.sleep(0)
        finished.append("quick")

    async def main() -> tuple[bool, bool]:
        return await bounded(hangs(), "stuck client", timeout=0.05), await bounded(quick(), "quick step", timeout=1.0)

    with caplog.at_level(logging.ERROR, logger="hotline.tasks"):
        assert asyncio.run(main()) == (False, True)
    assert finished == ["quick"]  # the step after the stuck one still ran
    assert [r.step for r in caplog.records] == ["stuck client"]
