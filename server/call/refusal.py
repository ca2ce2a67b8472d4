"""Refusing a call politely: a spoken apology in both languages, then close 1013 (try again later).

Used when the service is at its call limit, overall or for one client address (server.call.limits.Admission).
The apology is synthesized once per app and kept in memory: a crowd of refused callers must not cost a synthesis
job each (that is what they would be exhausting).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import WebSocket

from server.call.messages import AudioEnd, AudioOut, AudioStart, ErrorOut, StartCall

log = logging.getLogger("hotline.call")

CLOSE_TRY_AGAIN = 1013
FRAME_BYTES = 640
APOLOGY_KEY = "busy"  # prompts/prompts.yaml; older prompt files fall back to agent_unavailable


class Apology:
    """The spoken apology's text and 16 kHz PCM16, synthesized on first use."""

    def __init__(self) -> None:
        self.text = ""
        self.pcm = b""
        self._lock = asyncio.Lock()
        self._done = False

    async def get(self, ctx: Any) -> tuple[str, bytes]:
        async with self._lock:
            if not self._done:
                self._done = True
                try:
                    self.text, self.pcm = await asyncio.wait_for(_synthesize(ctx), timeout=20)
                except Exception:  # no audio then: the error event and the close code still say it
                    log.exception("the busy apology could not be synthesized")
        return self.text, self.pcm


async def _synthesize(ctx: Any) -> tuple[str, bytes]:
    prompts, synth = ctx.components.prompts, ctx.components.synthesizer
    key = APOLOGY_KEY if prompts.has(APOLOGY_KEY) else "agent_unavailable"
    texts, pcm = [], bytearray()
    for language in ctx.settings.languages:
        text = prompts.text(key, language)
        texts.append(text)

        def run(text: str = text, language: str = language) -> bytes:
            return b"".join(c.pcm16 for c in synth.synthesize(text, language) if getattr(c, "sample_rate", 16000) == 16000)

        pcm += await ctx.pools.synthesis.run(run)
    return " ".join(texts), bytes(pcm)


async def refuse(websocket: WebSocket, serializer: Any, ctx: Any, apology: Apology, reason: str) -> None:
    """Tell an accepted caller that the lines are busy (spoken, and as an error event), then close with 1013."""
    if serializer.protocol == "twilio":
        # Media sent before Twilio's `start` carries no stream id and is not played: wait briefly for it.
        try:
            async with asyncio.timeout(2.0):
                while serializer.stream_sid is None:
                    message = await websocket.receive()
                    if message["type"] == "websocket.disconnect":
                        return
                    if message.get("text") is not None:
                        if any(isinstance(m, StartCall) for m in serializer.parse_text(message["text"])):
                            break
        except TimeoutError:
            pass
    text, pcm = await apology.get(ctx)
    frames: list[str | bytes] = []
    for message in [ErrorOut(code=reason, message="all lines are busy; please call again later"),
                    AudioStart(turn=0, text=text, language=ctx.settings.languages[0])]:
        frames += serializer.serialize(message)
    for start in range(0, len(pcm), FRAME_BYTES):
        frames += serializer.serialize(AudioOut(pcm16=pcm[start:start + FRAME_BYTES], turn=0))
    frames += serializer.serialize(AudioEnd(turn=0))
    try:
        async with asyncio.timeout(5.0):
            for frame in frames:
                if isinstance(frame, bytes):
                    await websocket.send_bytes(frame)
                else:
                    await websocket.send_text(frame)
            await websocket.close(code=CLOSE_TRY_AGAIN, reason=reason)
    except Exception:  # the caller left, or does not read: nothing more to tell them
        pass

