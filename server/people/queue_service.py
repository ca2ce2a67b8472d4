"""The seam between a call that routes to `agent` and whoever answers it: what the call session sees of the queue.

Implemented by server/people/queue_runtime.py (QueueRuntime), on the queue store the settings chose (in-process or
shared through Redis: docs/queue.md). Keep the interface narrow: the session only enqueues, asks its position, and
leaves.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


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
