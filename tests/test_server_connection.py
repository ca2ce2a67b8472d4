"""The websocket writer: closing a call's connection always finishes, whatever moment the close lands on."""
from __future__ import annotations

import asyncio

import pytest
from starlette.websockets import WebSocketState

from server.call.transports.connection import Connection


class _Serializer:
    protocol = "test"

    def serialize(self, message: str) -> list[str]:
        return [message]


class _GatedSocket:
    """A websocket whose sends complete only when the test opens the gate."""

    def __init__(self) -> None:
        self.application_state = WebSocketState.CONNECTED
        self.gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.sending = asyncio.Event()
        self.sent: list[str] = []
        self.closed_with: int | None = None

    async def send_text(self, text: str) -> None:
        self.sending.set()
        await self.gate
        self.sent.append(text)

    async def close(self, code: int = 1000) -> None:
        self.closed_with = code
        self.application_state = WebSocketState.DISCONNECTED


@pytest.mark.parametrize("steps", range(8))
async def test_close_finishes_when_it_lands_as_a_send_completes(steps):
    # CI once hung here: on Python 3.11 asyncio.wait_for swallows a cancel that arrives in the same loop turn as
    # its inner send completes, and the writer then waited on the empty queue for ever. Opening the gate and
    # closing 0..7 loop steps later puts the cancel on each of those turns.
    ws = _GatedSocket()
    conn = Connection(websocket=ws, serializer=_Serializer(), send_queue_max=8, send_timeout_s=5.0)
    conn.start()
    writer = conn._writer
    assert conn.send("last frame")
    await asyncio.wait_for(ws.sending.wait(), 2)
    ws.gate.set_result(None)
    for _ in range(steps):
        await asyncio.sleep(0)
    async with asyncio.timeout(3):
        await conn.close(1003)
    assert writer is not None and writer.done()
    assert conn._writer is None  # let go once stopped: its traceback would hold the connection in a cycle
    assert ws.sent == ["last frame"]
    assert ws.closed_with == 1003


async def test_a_send_that_never_completes_marks_the_peer_slow_and_close_still_finishes():
    ws = _GatedSocket()  # the gate never opens: a client that stopped reading
    slow: list[bool] = []
    conn = Connection(websocket=ws, serializer=_Serializer(), send_queue_max=8, send_timeout_s=0.2,
                      on_slow_consumer=lambda: slow.append(True))
    conn.start()
    conn.send("stuck")
    async with asyncio.timeout(3):
        while not conn.broken:
            await asyncio.sleep(0.01)
        await conn.close(1000)
    assert slow == [True]
    assert conn.send("more") is False  # nothing more is queued for a broken peer
