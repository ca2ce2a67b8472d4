"""The Redis bus between processes: one channel per live call (what happens on it: the caller's and the line's
20 ms audio frames, transcript lines, decisions, its end), one channel per process (commands to the calls it holds).

Message layout (binary, first byte the kind):
    b"f" + channel byte + PCM16      an audio frame as listen-in sends it (1: the caller, 2: what the caller hears)
    b"e" + JSON                      an event for consoles (transcript, decision, call.ended ...)
    b"c" + JSON                      a command to the process that holds the call ({"call_id", "op", ...})
    b"o" + call id (32) + turn (4, big-endian) + PCM16     audio for the caller (an agent's microphone or reply)
Pub/sub, not streams: audio is worth nothing late, a subscriber that is gone should cost nothing, and a lost frame
is a 20 ms gap, as on any telephone line. Sending never blocks a call: items wait in a bounded queue, a full queue
drops audio first.
"""
from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Callable

from server.tasks import cancel_and_wait

log = logging.getLogger("hotline.cluster.bus")

Handler = Callable[[bytes], None]


def encode_event(event: dict[str, Any]) -> bytes:
    return b"e" + json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()


def encode_command(call_id: str, op: str, **args: Any) -> bytes:
    return b"c" + json.dumps({"call_id": call_id, "op": op, **args}, ensure_ascii=False).encode()


def encode_audio_to_caller(call_id: str, turn: int, pcm: bytes) -> bytes:
    return b"o" + call_id.encode().ljust(32)[:32] + int(turn).to_bytes(4, "big", signed=False) + pcm


def decode_audio_to_caller(data: bytes) -> tuple[str, int, bytes]:
    return data[1:33].decode().strip(), int.from_bytes(data[33:37], "big"), data[37:]


class Bus:
    def __init__(self, *, redis: Any, prefix: str, process_id: str, queue_max: int = 2000) -> None:
        self.redis = redis
        self.prefix = prefix
        self.process_id = process_id
        self.pubsub = redis.pubsub(ignore_subscribe_messages=True)
        self.handlers: dict[str, Handler] = {}
        self._out: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(maxsize=queue_max)
        self._tasks: list[asyncio.Task[None]] = []
        self.dropped = 0

    def call_channel(self, call_id: str) -> str:
        return f"{self.prefix}call:{call_id}"

    def process_channel(self, process_id: str) -> str:
        return f"{self.prefix}cmd:{process_id}"

    async def start(self, on_command: Handler) -> None:
        await self.subscribe(self.process_channel(self.process_id), on_command)
        self._tasks = [asyncio.create_task(self._read(), name="bus-read"),
                       asyncio.create_task(self._write(), name="bus-write")]

    async def stop(self) -> None:
        await cancel_and_wait(*self._tasks)
        try:
            await self.pubsub.aclose()
        except Exception:  # noqa: BLE001 - Redis gone: nothing to close
            pass

    async def subscribe(self, channel: str, handler: Handler) -> None:
        self.handlers[channel] = handler
        await self.pubsub.subscribe(channel)

    async def unsubscribe(self, channel: str) -> None:
        self.handlers.pop(channel, None)
        try:
            await self.pubsub.unsubscribe(channel)
        except Exception:  # noqa: BLE001
            pass

    def send(self, channel: str, data: bytes) -> None:
        """Queue one message; never blocks (a full queue drops it and counts)."""
        try:
            self._out.put_nowait((channel, data))
        except asyncio.QueueFull:
            self.dropped += 1

    async def _write(self) -> None:
        while True:
            channel, data = await self._out.get()
            batch = [(channel, data)]
            while not self._out.empty() and len(batch) < 64:
                batch.append(self._out.get_nowait())
            try:
                if len(batch) == 1:
                    await self.redis.publish(channel, data)
                else:  # a burst goes out in one round trip
                    async with self.redis.pipeline(transaction=False) as pipe:
                        for ch, d in batch:
                            pipe.publish(ch, d)
                        await pipe.execute()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis away: these frames are lost, the call goes on
                self.dropped += len(batch)
                log.warning("bus publish failed", extra={"error": type(exc).__name__})
                await asyncio.sleep(0.2)

    async def _read(self) -> None:
        while True:
            try:
                if not self.pubsub.subscribed:
                    await asyncio.sleep(0.05)
                    continue
                message = await self.pubsub.get_message(timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - reconnects on the next read
                log.warning("bus read failed", extra={"error": type(exc).__name__})
                await asyncio.sleep(0.5)
                continue
            if message is None or message.get("type") != "message":
                continue
            channel = message["channel"]
            channel = channel.decode() if isinstance(channel, bytes) else channel
            handler = self.handlers.get(channel)
            if handler is not None:
                try:
                    handler(message["data"])
                except Exception:  # one bad message must not stop the bus
                    log.exception("bus handler failed")
