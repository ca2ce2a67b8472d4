"""The queue's mutable state, kept as plain dataclasses of plain values.

The store seam: everything the ACD knows lives in one `AcdState` (agents, live calls, the memory of final states,
recent handle times, call-back tasks, the last `now`). Nothing is hidden in the `Acd` object itself, so a store
(routing/queue/store.py) loads an AcdState, lets `Acd(settings=..., state=...)` decide, and saves it back atomically;
routing/queue/codec.py turns it into JSON for a shared store (server/people/queue_redis.py).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from .types import AcdSnapshot, ActiveCallView, AgentState, AgentView, CallbackTask, CallFinal, QueuedCallView

_S = AgentState

# The legal moves of the agent state machine. Everything else raises IllegalTransition.
ALLOWED_TRANSITIONS: dict[AgentState, frozenset[AgentState]] = {
    _S.OFFLINE: frozenset({_S.AVAILABLE, _S.AWAY}),  # login
    _S.AVAILABLE: frozenset({_S.OFFERED, _S.AWAY, _S.OFFLINE}),
    _S.OFFERED: frozenset({_S.ON_CALL, _S.AVAILABLE, _S.AWAY, _S.OFFLINE}),
    _S.ON_CALL: frozenset({_S.WRAP_UP, _S.OFFLINE}),  # OFFLINE only by disconnect (the call is requeued)
    _S.WRAP_UP: frozenset({_S.AVAILABLE, _S.AWAY, _S.OFFLINE}),
    _S.AWAY: frozenset({_S.AVAILABLE, _S.OFFLINE}),
}


@dataclass(slots=True)
class AgentRecord:
    agent_id: str
    languages: frozenset[str]
    state: AgentState
    state_since: float
    # Set on entering AVAILABLE; kept while an offer rings so that an offer withdrawn through no fault of the agent
    # (the caller hung up) leaves them at the head of the idle order.
    idle_since: float | None = None
    call_id: str | None = None  # offered or connected call
    offer_expires_at: float | None = None
    missed_offers: int = 0  # consecutive; reset by accept / decline
    busy_since: float | None = None  # accept time: handle time runs to the end of wrap-up
    wrap_up_until: float | None = None  # None in wrap-up = wait for an explicit finish


@dataclass(slots=True)
class CallRecord:
    call_id: str
    language: str
    enqueued_at: float  # original arrival; kept when the call is requeued
    seq: int  # arrival order, breaks ties between equal enqueued_at
    waiting_since: float | None  # None while connected to an agent
    queued_before_s: float = 0.0  # waiting time of earlier stretches (before a requeue)
    requeued: bool = False  # its agent dropped it: ahead of every other waiting call
    offered_to: str | None = None
    tried: set[str] = field(default_factory=set)  # agents who declined / missed it: tried last
    agent_id: str | None = None  # connected agent
    connected_at: float | None = None
    next_announce_at: float = 0.0
    callback_offered: bool = False

    def waited(self, now: float) -> float:
        if self.waiting_since is None:
            return self.queued_before_s
        return self.queued_before_s + max(0.0, now - self.waiting_since)


@dataclass(slots=True)
class AcdState:
    agents: dict[str, AgentRecord] = field(default_factory=dict)
    calls: dict[str, CallRecord] = field(default_factory=dict)  # live calls only (waiting or connected)
    # Final states of recent calls (insertion order, bounded by AcdSettings.final_history): lets hang-ups that race
    # with a final state be recognised as no-ops, and refuses re-use of a finished call id.
    finals: OrderedDict[str, CallFinal] = field(default_factory=OrderedDict)
    handle_times: list[float] = field(default_factory=list)  # recent accept -> end of wrap-up durations
    callback_tasks: dict[str, CallbackTask] = field(default_factory=dict)  # open tasks
    last_now: float | None = None
    next_seq: int = 0
    closed: bool = False


def queue_order(state: AcdState) -> list[CallRecord]:
    """Waiting calls in distribution order: calls whose agent's console dropped first, then oldest arrival first."""
    waiting = (c for c in state.calls.values() if c.waiting_since is not None)
    return sorted(waiting, key=lambda c: (not c.requeued, c.enqueued_at, c.seq))


def build_snapshot(state: AcdState, now: float) -> AcdSnapshot:
    queue = tuple(
        QueuedCallView(call_id=c.call_id, language=c.language, position=i, wait_s=c.waited(now),
                       enqueued_at=c.enqueued_at, requeued=c.requeued, offered_to=c.offered_to,
                       callback_offered=c.callback_offered)
        for i, c in enumerate(queue_order(state), start=1)
    )
    active = tuple(
        ActiveCallView(call_id=c.call_id, language=c.language, agent_id=c.agent_id, wait_s=c.queued_before_s,
                       connected_at=c.connected_at)
        for c in sorted(state.calls.values(), key=lambda c: (c.connected_at or 0.0, c.seq))
        if c.agent_id is not None
    )
    agents = tuple(
        AgentView(agent_id=a.agent_id, languages=a.languages, state=a.state, state_since=a.state_since,
                  idle_since=a.idle_since if a.state is AgentState.AVAILABLE else None, call_id=a.call_id,
                  missed_offers=a.missed_offers)
        for a in sorted(state.agents.values(), key=lambda a: a.agent_id)
    )
    tasks = tuple(sorted(state.callback_tasks.values(), key=lambda t: (t.requested_at, t.task_id)))
    return AcdSnapshot(at=now, queue=queue, active=active, agents=agents, callback_tasks=tasks, closed=state.closed)
