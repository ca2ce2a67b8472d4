"""A small websocket caller for tests: records every event with its time, waits for conditions, streams audio."""
from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any, Callable

import numpy as np
import websockets

from voice.audio import mulaw_encode, resample

FRAME = 640


class NativeCaller:
    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self.audio = bytearray()
        self.frames = 0
        self.closed: tuple[int | None, str] | None = None
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, url: str, **kwargs: Any) -> "NativeCaller":
        ws = await websockets.connect(url, max_size=None, **kwargs)
        return cls(ws)

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                if isinstance(message, bytes):
                    self.audio += message
                    self.frames += 1
                else:
                    event = json.loads(message)
                    event["_t"] = time.monotonic()
                    self.events.append(event)
                self._changed.set()
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed = (self.ws.close_code, self.ws.close_reason or "")
            self._changed.set()

    def named(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == name]

    async def wait_for(self, predicate: Callable[["NativeCaller"], Any], timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate(self)
            if value:
                return value
            if self.closed is not None and not predicate(self):
                raise AssertionError(f"connection closed {self.closed} while waiting; events: {self.summary()}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out; events: {self.summary()}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def wait_event(self, name: str, *, count: int = 1, timeout: float = 10.0, **match: Any) -> dict[str, Any]:
        def found(c: "NativeCaller") -> Any:
            hits = [e for e in c.named(name) if all(e.get(k) == v for k, v in match.items())]
            return hits[count - 1] if len(hits) >= count else None

        return await self.wait_for(found, timeout)

    async def wait_closed(self, timeout: float = 10.0) -> tuple[int | None, str]:
        await self.wait_for(lambda c: c.closed is not None, timeout)
        assert self.closed is not None
        return self.closed

    def summary(self) -> list[str]:
        return [f"{e.get('event')}:{e.get('code') or e.get('reason') or e.get('turn') or ''}" for e in self.events][-30:]

    async def send_json(self, obj: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(obj))

    async def stream(self, pcm16: bytes, *, realtime: bool = False) -> None:
        for i in range(0, len(pcm16), FRAME):
            await self.ws.send(pcm16[i : i + FRAME])
            await asyncio.sleep(0.02 if realtime else 0)

    async def close(self) -> None:
        await self.ws.close()
        await asyncio.gather(self._task, return_exceptions=True)


def pcm16_to_twilio_payloads(pcm16: bytes) -> list[str]:
    x = np.frombuffer(pcm16, dtype="<i2").astype(np.float32) / 32768
    y = resample(x, 16000, 8000)
    mulaw = mulaw_encode((np.clip(y, -1, 1) * 32767).astype(np.int16))
    return [base64.b64encode(mulaw[i : i + 160]).decode() for i in range(0, len(mulaw), 160)]


class TwilioCaller(NativeCaller):
    """Plays Twilio's side of a Media Stream."""

    stream_sid = "MZ00000000000000000000000000000001"
    call_sid = "CA00000000000000000000000000000001"

    def __init__(self, ws: Any) -> None:
        super().__init__(ws)
        self.seq = 0
        self.mulaw = bytearray()

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                event = json.loads(message)
                event["_t"] = time.monotonic()
                if event.get("event") == "media":
                    self.mulaw += base64.b64decode(event["media"]["payload"])
                    self.frames += 1
                self.events.append(event)
                self._changed.set()
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed = (self.ws.close_code, self.ws.close_reason or "")
            self._changed.set()

    def _next(self) -> str:
        self.seq += 1
        return str(self.seq)

    async def start(self, *, custom: dict[str, str] | None = None, fmt: dict[str, Any] | None = None) -> None:
        await self.send_json({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        await self.send_json({
            "event": "start", "sequenceNumber": self._next(), "streamSid": self.stream_sid,
            "start": {"accountSid": "AC0", "streamSid": self.stream_sid, "callSid": self.call_sid,
                      "tracks": ["inbound"], "customParameters": custom or {},
                      "mediaFormat": fmt or {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}},
        })

    async def stream(self, pcm16: bytes, *, realtime: bool = False) -> None:
        for i, payload in enumerate(pcm16_to_twilio_payloads(pcm16)):
            await self.send_json({"event": "media", "sequenceNumber": self._next(), "streamSid": self.stream_sid,
                                  "media": {"track": "inbound", "chunk": str(i + 1), "timestamp": str(i * 20), "payload": payload}})
            await asyncio.sleep(0.02 if realtime else 0)

    async def stop(self) -> None:
        await self.send_json({"event": "stop", "sequenceNumber": self._next(), "streamSid": self.stream_sid,
                              "stop": {"accountSid": "AC0", "callSid": self.call_sid}})
