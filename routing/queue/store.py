"""Where the queue's state lives: one interface, `QueueStore`, and the in-process implementation.

Every change to the queue is one *decision*: load the state, let the pure `Acd` decide (routing/queue/decisions.py),
save the state, as one atomic step, and hand back a `Decision` (the actions, numbered by the state's version).
Two implementations, chosen by settings and built once by the app (server/people/queue_store.py):

- `InProcessQueueStore` (here): the state in this process, behind a lock. The default: nothing to install.
- `RedisQueueStore` (server/people/queue_redis.py): the state in Redis, shared by every `hotline serve` process;
  each decision is load -> decide in Python -> compare-and-set on the version (a Lua script), retried on conflict.
  It lives in server/ because a Redis client is I/O, and routing/ stays pure (tests/test_routing_layering.py).

Both share `apply_event` below, so the rules are the same code whatever the store.

Time: a decision happens at max(now, the state's last decision time). In one process the clock is monotonic and
this changes nothing; across processes the clock is the wall clock (time.time(): monotonic clocks of two processes
have unrelated origins), and two processes' readings race (B reads its clock, A commits a later time, B loads):
taking the later of the two keeps the queue's time monotonic without refusing B's event. A clock that is
not a finite number still reaches the Acd and is refused (ClockError).

Parties: the store also records which process owns each call and each agent (`Party`, keyed "call:<id>" and
"agent:<id>"), set by `enqueue` and `agent_login`, so that every process can tell which actions it must carry out,
and so that the survivors of a dead process find its calls and agents (`owned_by`).
"""
from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .decisions import EPS, Acd, AcdSettings
from .state import AcdState, build_snapshot
from .types import AcdSnapshot, Action, CallbackTaskCreated, CallFinal

# The Acd methods a store runs as decisions (each takes `now` as its last positional argument).
EVENTS = frozenset({
    "agent_login", "agent_logout", "agent_disconnect", "set_available", "set_away", "finish_wrap_up", "accept",
    "decline", "end_call", "hand_back_to_bot", "complete_callback_task", "enqueue", "hangup", "request_callback",
    "tick", "close",
})
# Events whose first argument is a call id whose final state the Acd reads (ids are never reused, late hang-ups).
EVENTS_READING_FINALS = frozenset({"enqueue", "hangup", "request_callback"})


class QueueBusy(RuntimeError):
    """A shared store could not commit a decision after its bounded number of tries (heavy contention)."""


@dataclass(frozen=True, slots=True)
class Party:
    """Who holds a call or an agent console: the process that carries out the actions concerning it."""

    process: str
    language: str | None = None  # calls: the caller's language as the session knows it (en | zh | other:xx)
    topic: str | None = None  # calls: why the caller asked for a person

    def as_dict(self) -> dict[str, Any]:
        return {"process": self.process, "language": self.language, "topic": self.topic}


@dataclass(frozen=True, slots=True)
class Decision:
    """One committed change of the queue. Versions are consecutive (1, 2, 3, ...) in commit order: carrying out
    decisions in version order is carrying them out in the order the queue made them."""

    version: int
    at: float  # the time the Acd decided at (see the module doc)
    origin: str  # the process that made it
    actions: tuple[Action, ...]
    parties: Mapping[str, Party]  # "call:<id>" / "agent:<id>" -> owner, for every party the actions name
    next_deadline: float | None  # when the queue next needs a tick (after this decision)


@dataclass(frozen=True, slots=True)
class StoreView:
    version: int
    snapshot: AcdSnapshot
    parties: Mapping[str, Party]


class QueueStore(Protocol):
    """The one seam between the queue's run-time and its state. All methods are safe to call from any thread."""

    process_id: str
    settings: AcdSettings

    def decide(self, event: str, *args: Any, now: float, info: Party | None = None, **kwargs: Any) -> Decision:
        """Run `Acd.<event>(*args, now, **kwargs)` atomically. AcdError (and subclasses) propagate and change
        nothing. `info` names the caller's language and topic for `enqueue` (the owner is always this process)."""
        ...

    def tick(self, now: float) -> Decision | None:
        """Claim what fell due: a decision when the next deadline is reached, else None (and nothing is written).
        Every process's ticker calls this; exactly one of them carries a given deadline out."""
        ...

    def view(self, now: float) -> StoreView: ...

    def outcome(self, call_id: str) -> CallFinal | None: ...

    def next_deadline(self) -> float | None: ...

    def version(self) -> int: ...

    def owned_by(self, process_id: str) -> tuple[list[str], list[str]]:
        """(call ids, agent ids) whose party is `process_id`: what to hang up / disconnect when it dies."""
        ...

    def close(self) -> None:
        """Release connections (not the queue: Acd.close is the `close` event)."""
        ...


def decision_time(state: AcdState, now: float) -> float:
    if isinstance(now, bool) or not isinstance(now, (int, float)) or not math.isfinite(now):
        return now  # the Acd refuses it with a ClockError
    last = state.last_now
    return now if last is None or now >= last else last


def is_due(acd: Acd, at: float) -> bool:
    deadline = acd.next_deadline()
    return deadline is not None and at >= deadline - EPS


def named_parties(actions: Iterable[Action]) -> set[str]:
    keys: set[str] = set()
    for action in actions:
        call_id = action.task.call_id if isinstance(action, CallbackTaskCreated) else getattr(action, "call_id", None)
        if call_id is not None:
            keys.add("call:" + call_id)
        agent_id = getattr(action, "agent_id", None)
        if agent_id is not None:
            keys.add("agent:" + agent_id)
    return keys


def changes_nothing(event: str, actions: list[Action]) -> bool:
    """An event without actions left the state as it was (a late hang-up, a second call-back confirmation, available
    when already available, ...), so a store need not write it. Not a tick: a due tick may only move last_now on
    past a deadline that needed no action, and that must be saved or the deadline stays due."""
    return not actions and event != "tick"


def apply_event(*, acd: Acd, parties: dict[str, Party], process_id: str, event: str, args: tuple[Any, ...],
                kwargs: Mapping[str, Any], now: float, info: Party | None) -> tuple[list[Action], float, dict[str, Party]]:
    """Decide one event on `acd.state` and keep `parties` up to date. Returns the actions, the decision time and
    the parties the actions name (as they were when the actions were decided)."""
    if event not in EVENTS:
        raise ValueError(f"unknown queue event {event!r}")
    at = decision_time(acd.state, now)
    actions = getattr(acd, event)(*args, at, **kwargs)
    if event == "enqueue":
        language, topic = (info.language, info.topic) if info is not None else (None, None)
        parties["call:" + args[0]] = Party(process=process_id, language=language, topic=topic)
    elif event == "agent_login":
        parties["agent:" + args[0]] = Party(process=process_id)
    named = {key: parties[key] for key in named_parties(actions) if key in parties}
    for action in actions:
        if isinstance(action, CallFinal):
            parties.pop("call:" + action.call_id, None)  # a finished call needs nobody any more
    return actions, at, named


def owned(parties: Mapping[str, Party], process_id: str) -> tuple[list[str], list[str]]:
    calls = sorted(k[5:] for k, p in parties.items() if k.startswith("call:") and p.process == process_id)
    agents = sorted(k[6:] for k, p in parties.items() if k.startswith("agent:") and p.process == process_id)
    return calls, agents


class InProcessQueueStore:
    """The queue's state in this process (the default). A lock makes each decision atomic among threads."""

    def __init__(self, *, settings: AcdSettings, process_id: str = "local") -> None:
        self.settings = settings
        self.process_id = process_id
        self.acd = Acd(settings=settings)
        self.parties: dict[str, Party] = {}
        self._version = 0
        self._lock = threading.Lock()

    def decide(self, event: str, *args: Any, now: float, info: Party | None = None, **kwargs: Any) -> Decision:
        with self._lock:
            actions, at, named = apply_event(acd=self.acd, parties=self.parties, process_id=self.process_id,
                                             event=event, args=args, kwargs=kwargs, now=now, info=info)
            if changes_nothing(event, actions):
                return self._unchanged(at)
            return self._committed(actions, at, named)

    def _unchanged(self, at: float) -> Decision:
        return Decision(version=self._version, at=at, origin=self.process_id, actions=(), parties={},
                        next_deadline=self.acd.next_deadline())

    def tick(self, now: float) -> Decision | None:
        with self._lock:
            if not is_due(self.acd, decision_time(self.acd.state, now)):
                return None
            actions, at, named = apply_event(acd=self.acd, parties=self.parties, process_id=self.process_id,
                                             event="tick", args=(), kwargs={}, now=now, info=None)
            return self._committed(actions, at, named)

    def _committed(self, actions: list[Action], at: float, named: dict[str, Party]) -> Decision:
        self._version += 1
        return Decision(version=self._version, at=at, origin=self.process_id, actions=tuple(actions), parties=named,
                        next_deadline=self.acd.next_deadline())

    def view(self, now: float) -> StoreView:
        with self._lock:
            snapshot = build_snapshot(self.acd.state, decision_time(self.acd.state, now))
            return StoreView(version=self._version, snapshot=snapshot, parties=dict(self.parties))

    def outcome(self, call_id: str) -> CallFinal | None:
        with self._lock:
            return self.acd.outcome(call_id)

    def next_deadline(self) -> float | None:
        with self._lock:
            return self.acd.next_deadline()

    def version(self) -> int:
        return self._version

    def owned_by(self, process_id: str) -> tuple[list[str], list[str]]:
        with self._lock:
            return owned(self.parties, process_id)

    def close(self) -> None:
        pass
