"""The seam between a call that routes to `agent` and whoever answers it.

For now an in-process waiting list per language: the call is recorded as queued and waits on hold. The ACD
(routing/acd.py: pure offer / time-out decisions taking `now`) plugs in behind this same interface, and a Redis
implementation later lets several server processes share one queue (scale-out). Keep the interface
narrow: the session only enqueues, asks its position, and leaves.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from server.metrics import Metrics


@dataclass(frozen=True, slots=True)
class QueueTicket:
    call_id: str
    language: str  # en | zh | other:<code> — agents are matched by language
    topic: str
    enqueued_at: float  # the caller's clock (monotonic seconds)
    position: int  # 1 = next


class AgentQueue(Protocol):
    def enqueue(self, *, call_id: str, language: str, topic: str, now: float) -> QueueTicket: ...

    def position(self, call_id: str) -> int | None: ...

    def leave(self, call_id: str, *, reason: str, now: float) -> bool: ...

    def waiting(self) -> list[QueueTicket]: ...


class WaitingList:
    """First come, first served per language; no agents yet, so calls only wait (and leave when they hang up)."""

    def __init__(self, *, metrics: Metrics | None = None) -> None:
        self._entries: dict[str, QueueTicket] = {}  # insertion order = arrival order
        self._metrics = metrics

    def _gauge(self) -> None:
        if self._metrics is None:
            return
        counts: dict[str, int] = {}
        for t in self._entries.values():
            counts[t.language] = counts.get(t.language, 0) + 1
        for language in {*counts, "en", "zh"}:
            self._metrics.agent_queue.labels(language=language).set(counts.get(language, 0))

    def enqueue(self, *, call_id: str, language: str, topic: str, now: float) -> QueueTicket:
        if call_id in self._entries:
            return self._with_position(self._entries[call_id])
        ticket = QueueTicket(call_id=call_id, language=language, topic=topic, enqueued_at=now, position=0)
        self._entries[call_id] = ticket
        self._gauge()
        return self._with_position(ticket)

    def _with_position(self, ticket: QueueTicket) -> QueueTicket:
        pos = self.position(ticket.call_id) or 0
        return QueueTicket(ticket.call_id, ticket.language, ticket.topic, ticket.enqueued_at, pos)

    def position(self, call_id: str) -> int | None:
        ticket = self._entries.get(call_id)
        if ticket is None:
            return None
        same = [t for t in self._entries.values() if t.language == ticket.language]
        return same.index(ticket) + 1

    def leave(self, call_id: str, *, reason: str, now: float) -> bool:
        removed = self._entries.pop(call_id, None) is not None
        if removed:
            self._gauge()
        return removed

    def waiting(self) -> list[QueueTicket]:
        return [self._with_position(t) for t in self._entries.values()]
