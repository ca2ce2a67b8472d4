"""One websocket plus its serializer, with a bounded send queue.

Sending never blocks the call: messages go into a bounded queue that one writer task drains. A client that stops
reading fills it (or blocks one send past `send_timeout_s`); the connection then reports `slow_consumer` and the
session drops that call — other calls never wait on it.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Callable

from starlette.websockets import WebSocket, WebSocketState

from server.call.messages import Inbound, Outbound
from server.call.transports import Serializer
from server.tasks import cancel_and_wait

log = logging.getLogger("hotline.transport")


class Disconnected(Exception):
    def __init__(self, code: int | None = None) -> None:
        super().__init__(f"websocket closed (code {code})")
        self.code = code


class Connection:
    def __init__(
        self,
        *,
        websocket: WebSocket,
        serializer: Serializer,
        send_queue_max: int,
        send_timeout_s: float,
        on_slow_consumer: Callable[[], None] | None = None,
    ) -> None:
        self.ws = websocket
        self.serializer = serializer
        self.protocol = serializer.protocol
        self.send_timeout_s = send_timeout_s
        self.on_slow_consumer = on_slow_consumer
        self._queue: asyncio.Queue[str | bytes] = asyncio.Queue(maxsize=send_queue_max)
        self._writer: asyncio.Task[None] | None = None
        self._in_flight = False  # a frame is taken from the queue and being written
        self.broken = False  # the peer is gone or stopped reading: nothing more can be sent
        self.closed_by_peer = False

    def start(self) -> None:
        self._writer = asyncio.create_task(self._write_loop(), name="ws-writer")

    async def receive(self) -> list[Inbound]:
        message = await self.ws.receive()
        kind = message["type"]
        if kind == "websocket.disconnect":
            self.closed_by_peer = True
            self.broken = True
            raise Disconnected(message.get("code"))
        if message.get("bytes") is not None:
            return self.serializer.parse_binary(message["bytes"])
        if message.get("text") is not None:
            return self.serializer.parse_text(message["text"])
        return []

    def send(self, message: Outbound) -> bool:
        """Queue a message; False when the client is not keeping up (or gone)."""
        if self.broken:
            return False
        for frame in self.serializer.serialize(message):
            try:
                self._queue.put_nowait(frame)
            except asyncio.QueueFull:
                self._slow()
                return False
        return True

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    def _slow(self) -> None:
        if not self.broken:
            self.broken = True
            if self.on_slow_consumer is not None:
                self.on_slow_consumer()

    async def _write_loop(self) -> None:
        while True:
            frame = await self._queue.get()
            self._in_flight = True
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel that lands just as the
                # send completes, and this loop would then wait on the empty queue for ever (seen in CI: a call
                # whose close never came).
                async with asyncio.timeout(self.send_timeout_s):
                    if isinstance(frame, bytes):
                        await self.ws.send_bytes(frame)
                    else:
                        await self.ws.send_text(frame)
            except TimeoutError:
                self._slow()
                return
            except Exception:  # the peer went away while we were writing; the reader reports the disconnect
                self.broken = True
                return
            finally:
                self._in_flight = False

    async def flush(self, timeout: float = 2.0) -> None:
        """Let the writer send what is queued (the last events of a call) before closing."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (
            not self.broken
            and (self._queue.qsize() or self._in_flight)  # the frame being written counts: it may be call.ended
            and loop.time() < deadline
            and self._writer
            and not self._writer.done()
        ):
            await asyncio.sleep(0.01)

    async def close(self, code: int = 1000, *, timeout: float = 2.0) -> None:
        if self._writer is not None:
            if not self.broken:
                await self.flush(timeout)
            # Bounded: a writer stuck in a send must not keep the call from ending.
            await cancel_and_wait(self._writer, timeout=timeout)
            if self._writer.done():
                # The cancelled writer's traceback holds its frame, and so this connection: let go, the connection
                # is freed as soon as its call lets go of it, not at the garbage collector's next full pass.
                self._writer = None
        if self.closed_by_peer:
            return
        try:
            if self.ws.application_state != WebSocketState.DISCONNECTED:
                # A peer that stopped reading will not take the close frame either: do not wait long for it.
                async with asyncio.timeout(0.3 if self.broken else timeout):
                    await self.ws.close(code=code)
        except Exception:  # already closed, or the peer does not answer the close handshake
            pass
