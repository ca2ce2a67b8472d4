"""`CallPort`: everything the people side does to a live call, in one place.

The queue runtime and the consoles never reach into a CallSession directly: they go through this port. It is the
whole surface the people side needs from server/call/session.py — if the session's internals change, only this file
changes (and tests/test_people_queue_runtime.py's FakeSession shows the same surface).
"""
from __future__ import annotations

import asyncio
from typing import Any, Callable


class CallPort:
    def __init__(self, session: Any) -> None:
        self.session = session

    # --- what the caller hears

    def say(self, key: str, language: str, **params: Any) -> None:
        """Queue a prompt (prompts.yaml key) in the caller's line, after what is already queued."""
        self.session._say(key, language, **params)

    def send(self, message: Any) -> bool:
        """A message to the caller's transport (AudioStart / AudioOut / AudioEnd)."""
        return self.session.conn.send(message)

    def stop_speech(self, now: float) -> None:
        """Cut the bot's speech at once (playing and queued): a barge-in through the session's control lane."""
        from server.call.session import BargeIn

        self.session._control_now(BargeIn(at=now))

    def idle(self, now: float) -> bool:
        s = self.session
        return s._speak_q.empty() and not s._is_playing(now)

    # --- the call itself

    def next_turn(self) -> int:
        """A turn number of this call (store seq and `turn` on the wire), unique within the call."""
        return self.session.recorder.next_seq()

    def event(self, kind: str, data: dict[str, Any] | None = None) -> None:
        self.session.recorder.event(kind, data)

    def end(self, state: str, reason: str, close_code: int = 1000) -> None:
        from server.call.session import EndCall

        self.session._control_now(EndCall(state, reason, close_code))

    def resume_bot(self) -> None:
        """Handed back by the agent: the bot answers this caller again (and watches for silence again)."""
        self.session._queued = False
        self.session.no_input.enabled = True

    async def end_after_speech(self, state: str, reason: str, *, clock: Callable[[], float], timeout: float = 30.0) -> None:
        """End the call once what is queued for the caller has played (e.g. the call-back confirmation)."""
        deadline = clock() + timeout
        await asyncio.sleep(0.2)
        while clock() < deadline and not self.idle(clock()):
            await asyncio.sleep(0.1)
        self.end(state, reason)

    # --- shared models and pools

    @property
    def components(self) -> Any:
        return self.session.ctx.components

    @property
    def pools(self) -> Any:
        return self.session.ctx.pools
