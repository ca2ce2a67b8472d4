"""The automatic call distributor (ACD): pure decision code for the agent queue.

No I/O, no asyncio, no clock: every method takes `now` (seconds; any origin that never goes backwards: the
shared store uses the wall clock, see routing/queue/store.py) and returns the actions it
caused, as typed frozen dataclasses (routing/queue/types.py); the server carries them out (ring a console, play a prompt,
bridge audio, store a final state). `tick(now)` moves time on; `next_deadline()` says when the next tick matters.

Rules (each has a unit test in tests/test_routing_acd.py; the simulation in tests/test_routing_acd_sim.py checks
them on thousands of random events):
- Distribution: waiting calls in queue order (calls whose agent's console dropped first, then oldest arrival first);
  each goes to the longest-idle AVAILABLE agent who speaks its language. A call that has waited any_agent_after_s
  may go to any available agent, but only while no agent with its language is available. A call for which no agent
  fits is skipped, so it never blocks the calls behind it. Agents who already missed / declined this call are tried
  last (so a timed-out offer moves on to the next agent, yet a lone agent with the language gets it again).
- Offers ring for offer_timeout_s; a timeout counts as a miss, and max_missed_offers misses in a row set the agent
  away. Accept / decline reset the count. Accept at or after the deadline raises OfferExpired.
- end_call / hand_back_to_bot / the caller hanging up: the agent goes to wrap-up, then available after wrap_up_s
  (or on finish_wrap_up when wrap_up_s is None). An agent console that disconnects during an offer or a call puts
  the call back at the FRONT of the queue, keeping its original arrival time; it is never dropped.
- Announcements: a waiting call (not ringing an agent) hears its position among calls of its language and an
  estimated wait at enqueue and every announce_interval_s; after max_wait_s of waiting it is offered a call-back once.
- Every call ends in exactly one CallOutcome (see types.CallOutcome), immutable once set; hang-ups that race
  with a final state are no-ops. "Waiting" time counts only time in the queue, not time talking to an agent.

Errors (types.AcdError and subclasses) are raised BEFORE any change, so a refused call leaves the state as it was.
State lives in routing/queue/state.AcdState (plain dataclasses): see its docstring for the Redis seam.
"""
from __future__ import annotations

import math
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field

from .state import ALLOWED_TRANSITIONS, AcdState, AgentRecord, CallRecord, build_snapshot, queue_order
from .types import (
    LANGUAGES,
    AcdClosed,
    AcdError,
    AcdSnapshot,
    Action,
    AgentSetAway,
    AgentState,
    AgentStateChanged,
    Announce,
    CallbackTask,
    CallbackTaskCompleted,
    CallbackTaskCreated,
    CallConnected,
    CallFinal,
    CallOutcome,
    CallRequeued,
    CallStateError,
    ClockError,
    IllegalTransition,
    Offer,
    OfferCallback,
    OfferExpired,
    OfferWithdrawn,
    UnknownAgent,
    UnknownCall,
    WithdrawReason,
)

# Deadlines are compared with this slack: a tick exactly at next_deadline() must see the deadline as reached even
# after float rounding (1 us is far below anything a caller or agent can notice; above the rounding of monotonic
# clocks that have run for years).
EPS = 1e-6

_S = AgentState
_SERVING = frozenset({_S.AVAILABLE, _S.OFFERED, _S.ON_CALL, _S.WRAP_UP})  # agents who will take calls soon


class AcdSettings(BaseModel):
    """Settings of the agent queue (seconds). Part of the routing layer's settings."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    offer_timeout_s: float = Field(default=20.0, gt=0, le=600)
    max_missed_offers: int = Field(default=2, ge=1, le=100)  # an agent who misses two offers in a row is set away
    any_agent_after_s: float = Field(default=60.0, ge=0)  # then a call may go to an agent without its language
    announce_interval_s: float = Field(default=30.0, gt=0)
    max_wait_s: float = Field(default=300.0, gt=0)  # then the caller is offered a call-back
    wrap_up_s: float | None = Field(default=30.0, ge=0)  # None: wrap-up lasts until finish_wrap_up
    default_handle_s: float = Field(default=240.0, gt=0)  # handle time assumed before any call was handled
    handle_time_window: int = Field(default=20, ge=1, le=10_000)  # recent handle times used for the estimate
    final_history: int = Field(default=10_000, ge=1)  # final states remembered (late hang-ups are recognised)


def _reached(value: float, threshold: float) -> bool:
    return value >= threshold - EPS


class Acd:
    """The agent queue. Not thread-safe: one owner calls it (the server's queue task)."""

    def __init__(self, *, settings: AcdSettings, state: AcdState | None = None) -> None:
        self.settings = settings
        self.state = state if state is not None else AcdState()

    # --- agents --------------------------------------------------------------------------------------------------

    def agent_login(self, agent_id: str, languages: Iterable[str], now: float, *, available: bool = True) -> list[Action]:
        self._check(now, mutating=True)
        if not isinstance(agent_id, str) or not agent_id:
            raise AcdError("agent_id must be a non-empty string")
        if isinstance(languages, str):
            raise AcdError(f"languages must be a collection of codes such as {{'en', 'zh'}}, not the string {languages!r}")
        try:
            langs = frozenset(languages)
        except TypeError:
            raise AcdError(f"agent {agent_id!r}: languages must be a collection of codes such as {{'en', 'zh'}}") from None
        if not langs or not langs <= LANGUAGES:
            raise AcdError(f"agent {agent_id!r}: languages must be a non-empty subset of {sorted(LANGUAGES)}, got {sorted(map(str, langs))}")
        agent = self.state.agents.get(agent_id)
        if agent is not None and agent.state is not _S.OFFLINE:
            raise IllegalTransition(agent_id=agent_id, state=agent.state, event="login", hint="already signed in")
        if agent is None:
            agent = AgentRecord(agent_id=agent_id, languages=langs, state=_S.OFFLINE, state_since=now)
            self.state.agents[agent_id] = agent
        agent.languages = langs
        agent.missed_offers = 0
        actions: list[Action] = []
        self._move(agent, _S.AVAILABLE if available else _S.AWAY, "login", now, actions)
        return self._step(now, actions)

    def agent_logout(self, agent_id: str, now: float) -> list[Action]:
        agent = self._agent_for(agent_id, now)
        if agent.state is _S.ON_CALL:
            raise IllegalTransition(agent_id=agent_id, state=agent.state, event="logout", hint="end the call or hand it back first")
        self._require(agent, _S.OFFLINE, "logout")
        actions: list[Action] = []
        if agent.state is _S.OFFERED:
            self._withdraw(agent, "agent_logout", _S.OFFLINE, now, actions)
        else:
            self._move(agent, _S.OFFLINE, "logout", now, actions)
        return self._step(now, actions)

    def agent_disconnect(self, agent_id: str, now: float) -> list[Action]:
        """The agent's console went away (any state). Its offered or connected call goes to the front of the queue."""
        agent = self._agent_for(agent_id, now)
        actions: list[Action] = []
        if agent.state is _S.OFFLINE:
            return actions  # a late disconnect after logout: nothing to do
        if agent.state is _S.OFFERED:
            call = self.state.calls[agent.call_id]
            self._withdraw(agent, "agent_disconnected", _S.OFFLINE, now, actions)
            call.requeued = True
        elif agent.state is _S.ON_CALL:
            call = self.state.calls[agent.call_id]
            call.agent_id = None
            call.connected_at = None
            call.waiting_since = now
            call.requeued = True
            call.next_announce_at = now
            agent.call_id = None
            actions.append(CallRequeued(call_id=call.call_id, agent_id=agent_id, at=now))
            self._move(agent, _S.OFFLINE, "disconnected", now, actions)
        else:
            self._move(agent, _S.OFFLINE, "disconnected", now, actions)
        return self._step(now, actions)

    def set_available(self, agent_id: str, now: float) -> list[Action]:
        agent = self._agent_for(agent_id, now)
        if agent.state is _S.AVAILABLE:
            return []
        self._require(agent, _S.AVAILABLE, "set_available", allowed_from=(_S.AWAY, _S.WRAP_UP))
        actions: list[Action] = []
        agent.missed_offers = 0  # coming back is a fresh start, even after being set away for misses
        self._move(agent, _S.AVAILABLE, "set_available", now, actions)
        return self._step(now, actions)

    def set_away(self, agent_id: str, now: float) -> list[Action]:
        agent = self._agent_for(agent_id, now)
        if agent.state is _S.AWAY:
            return []
        self._require(agent, _S.AWAY, "set_away", allowed_from=(_S.AVAILABLE, _S.OFFERED, _S.WRAP_UP))
        actions: list[Action] = []
        if agent.state is _S.OFFERED:
            self._withdraw(agent, "agent_away", _S.AWAY, now, actions)
        else:
            self._move(agent, _S.AWAY, "set_away", now, actions)
        return self._step(now, actions)

    def finish_wrap_up(self, agent_id: str, now: float) -> list[Action]:
        agent = self._agent_for(agent_id, now)
        self._require(agent, _S.AVAILABLE, "finish_wrap_up", allowed_from=(_S.WRAP_UP,))
        actions: list[Action] = []
        self._move(agent, _S.AVAILABLE, "wrap_up_done", now, actions)
        return self._step(now, actions)

    def accept(self, agent_id: str, call_id: str, now: float) -> list[Action]:
        agent, call = self._offered(agent_id, call_id, now, "accept")
        if now >= agent.offer_expires_at - EPS:
            raise OfferExpired(f"agent {agent_id!r}: the offer of call {call_id!r} expired at {agent.offer_expires_at:.3f}")
        actions: list[Action] = []
        call.queued_before_s = call.waited(now)
        call.waiting_since = None
        call.offered_to = None
        call.agent_id = agent_id
        call.connected_at = now
        agent.offer_expires_at = None
        agent.missed_offers = 0
        agent.busy_since = now
        self._move(agent, _S.ON_CALL, "accepted", now, actions)
        actions.append(CallConnected(call_id=call_id, agent_id=agent_id, wait_s=call.queued_before_s, at=now))
        return self._step(now, actions)

    def decline(self, agent_id: str, call_id: str, now: float) -> list[Action]:
        agent, call = self._offered(agent_id, call_id, now, "decline")
        actions: list[Action] = []
        agent.missed_offers = 0  # an answer, not a miss
        call.tried.add(agent_id)
        self._withdraw(agent, "declined", _S.AVAILABLE, now, actions)
        return self._step(now, actions)

    def end_call(self, agent_id: str, call_id: str, now: float) -> list[Action]:
        return self._finish_connected(agent_id, call_id, now, CallOutcome.ANSWERED, "end_call")

    def hand_back_to_bot(self, agent_id: str, call_id: str, now: float) -> list[Action]:
        return self._finish_connected(agent_id, call_id, now, CallOutcome.TRANSFERRED_BACK_TO_BOT, "hand_back_to_bot")

    def complete_callback_task(self, task_id: str, agent_id: str, now: float) -> list[Action]:
        agent = self._agent_for(agent_id, now)
        if agent.state is _S.OFFLINE:
            raise IllegalTransition(agent_id=agent_id, state=agent.state, event="complete_callback_task", hint="sign in first")
        if task_id not in self.state.callback_tasks:
            raise AcdError(f"no open call-back task {task_id!r}")
        del self.state.callback_tasks[task_id]
        return self._step(now, [CallbackTaskCompleted(task_id=task_id, agent_id=agent_id, at=now)])

    # --- calls ---------------------------------------------------------------------------------------------------

    def enqueue(self, call_id: str, language: str, now: float) -> list[Action]:
        self._check(now, mutating=True)
        if not isinstance(call_id, str) or not call_id:
            raise AcdError("call_id must be a non-empty string")
        if not isinstance(language, str) or language not in LANGUAGES:
            raise AcdError(f"call {call_id!r}: language must be one of {sorted(LANGUAGES)}, got {language!r}")
        if call_id in self.state.calls or call_id in self.state.finals:
            raise CallStateError(f"call {call_id!r} was already queued (ids are never reused)")
        self.state.calls[call_id] = CallRecord(
            call_id=call_id, language=language, enqueued_at=now, seq=self.state.next_seq, waiting_since=now,
            next_announce_at=now,
        )
        self.state.next_seq += 1
        return self._step(now, [])

    def hangup(self, call_id: str, now: float) -> list[Action]:
        """The caller hung up. After a final state (call-back confirmed, closed, ...) this is a no-op."""
        self._check(now)
        if not isinstance(call_id, str):
            raise UnknownCall(f"call ids are strings, got {call_id!r}")
        if call_id in self.state.finals:
            return []
        call = self._call(call_id)
        actions: list[Action] = []
        if call.agent_id is not None:
            agent = self.state.agents[call.agent_id]
            self._finalize(call, CallOutcome.ANSWERED, now, actions, agent_id=agent.agent_id)
            agent.call_id = None
            self._move(agent, _S.WRAP_UP, "caller_hung_up", now, actions)
        else:
            self._drop_offer(call, now, actions)
            self._finalize(call, CallOutcome.ABANDONED, now, actions)
        return self._step(now, actions)

    def request_callback(self, call_id: str, now: float) -> list[Action]:
        """The caller confirmed a call-back (allowed any time while waiting; offered after max_wait_s)."""
        self._check(now)
        if not isinstance(call_id, str):
            raise UnknownCall(f"call ids are strings, got {call_id!r}")
        final = self.state.finals.get(call_id)
        if final is not None:
            if final.state is CallOutcome.CALLBACK_REQUESTED:
                return []  # pressed twice
            raise CallStateError(f"call {call_id!r} already ended as {final.state.value}")
        call = self._call(call_id)
        if call.agent_id is not None:
            raise CallStateError(f"call {call_id!r} is connected to an agent; a call-back is for waiting callers")
        actions: list[Action] = []
        self._drop_offer(call, now, actions)
        task = CallbackTask(task_id=f"cb-{call_id}", call_id=call_id, language=call.language, requested_at=now,
                            wait_s=call.waited(now))
        self.state.callback_tasks[task.task_id] = task
        actions.append(CallbackTaskCreated(task=task))
        self._finalize(call, CallOutcome.CALLBACK_REQUESTED, now, actions)
        return self._step(now, actions)

    # --- time and shutdown ---------------------------------------------------------------------------------------

    def tick(self, now: float) -> list[Action]:
        self._check(now)
        if self.state.closed:
            return []
        return self._step(now, [])

    def next_deadline(self) -> float | None:
        """The earliest time at which tick() would act (offer timeout, wrap-up end, announcement, call-back offer,
        a call reaching any_agent_after_s); None when nothing is scheduled. Events (enqueue, login, ...) can act sooner.
        """
        if self.state.closed:
            return None
        s = self.settings
        last = self.state.last_now
        times: list[float] = []
        for agent in self.state.agents.values():
            if agent.state is _S.OFFERED:
                times.append(agent.offer_expires_at)
            elif agent.state is _S.WRAP_UP and agent.wrap_up_until is not None:
                times.append(agent.wrap_up_until)
        for call in self.state.calls.values():
            if call.waiting_since is None or call.offered_to is not None:
                continue
            times.append(call.next_announce_at)
            if not call.callback_offered:
                times.append(call.waiting_since + s.max_wait_s - call.queued_before_s)
            # Reaching any_agent_after_s widens the pool of agents: a moment to distribute again (once).
            widen_at = call.waiting_since + s.any_agent_after_s - call.queued_before_s
            if last is None or widen_at > last + EPS:
                times.append(widen_at)
        return min(times) if times else None

    def close(self, now: float) -> list[Action]:
        """Shut the queue down: every live call ends CLOSED, every agent goes offline. Further events raise AcdClosed
        (except hang-ups of finished calls, which stay no-ops)."""
        self._check(now)
        if self.state.closed:
            return []
        actions: list[Action] = []
        for agent in sorted(self.state.agents.values(), key=lambda a: a.agent_id):
            if agent.state is _S.OFFERED:
                self._withdraw(agent, "closed", _S.OFFLINE, now, actions)
        for call in self._queue_order() + [c for c in self.state.calls.values() if c.agent_id is not None]:
            self._finalize(call, CallOutcome.CLOSED, now, actions, agent_id=call.agent_id)
        for agent in sorted(self.state.agents.values(), key=lambda a: a.agent_id):
            agent.call_id = None
            if agent.state is not _S.OFFLINE:
                self._move(agent, _S.OFFLINE, "closed", now, actions)
        self.state.closed = True
        self.state.last_now = max(now, self.state.last_now or now)
        return actions

    # --- reading -------------------------------------------------------------------------------------------------

    def outcome(self, call_id: str) -> CallFinal | None:
        return self.state.finals.get(call_id)

    def snapshot(self, now: float) -> AcdSnapshot:
        """What the consoles show: the queue in distribution order, calls with agents, agents, open call-back tasks."""
        if isinstance(now, bool) or not isinstance(now, (int, float)) or not math.isfinite(now):
            raise ClockError(f"now must be a finite number, got {now!r}")
        return build_snapshot(self.state, now)

    # --- internals: validation -----------------------------------------------------------------------------------

    def _check(self, now: float, *, mutating: bool = False) -> None:
        if isinstance(now, bool) or not isinstance(now, (int, float)) or not math.isfinite(now):
            raise ClockError(f"now must be a finite number, got {now!r}")
        last = self.state.last_now
        if last is not None and now < last - EPS:
            raise ClockError(f"now went backwards: {now!r} < {last!r}")
        if mutating and self.state.closed:
            raise AcdClosed("the agent queue is closed")

    def _agent_for(self, agent_id: str, now: float) -> AgentRecord:
        self._check(now, mutating=True)
        agent = self.state.agents.get(agent_id) if isinstance(agent_id, str) else None
        if agent is None:
            raise UnknownAgent(f"unknown agent {agent_id!r} (sign in first)")
        return agent

    def _call(self, call_id: str) -> CallRecord:
        call = self.state.calls.get(call_id) if isinstance(call_id, str) else None
        if call is None:
            raise UnknownCall(f"unknown call {call_id!r}")
        return call

    def _require(self, agent: AgentRecord, target: AgentState, event: str,
                 allowed_from: tuple[AgentState, ...] | None = None) -> None:
        if target not in ALLOWED_TRANSITIONS[agent.state] or (allowed_from is not None and agent.state not in allowed_from):
            raise IllegalTransition(agent_id=agent.agent_id, state=agent.state, event=event)

    def _offered(self, agent_id: str, call_id: str, now: float, event: str) -> tuple[AgentRecord, CallRecord]:
        agent = self._agent_for(agent_id, now)
        if agent.state is not _S.OFFERED:
            raise IllegalTransition(agent_id=agent_id, state=agent.state, event=event, hint="no offer is ringing")
        if agent.call_id != call_id:
            raise CallStateError(f"agent {agent_id!r}: call {call_id!r} is not the call offered (that is {agent.call_id!r})")
        return agent, self.state.calls[call_id]

    def _finish_connected(self, agent_id: str, call_id: str, now: float, outcome: CallOutcome, event: str) -> list[Action]:
        agent = self._agent_for(agent_id, now)
        if agent.state is not _S.ON_CALL:
            raise IllegalTransition(agent_id=agent_id, state=agent.state, event=event, hint="not on a call")
        if agent.call_id != call_id:
            raise CallStateError(f"agent {agent_id!r} is on call {agent.call_id!r}, not {call_id!r}")
        actions: list[Action] = []
        self._finalize(self.state.calls[call_id], outcome, now, actions, agent_id=agent_id)
        agent.call_id = None
        self._move(agent, _S.WRAP_UP, "call_finished", now, actions)
        return self._step(now, actions)

    # --- internals: changes --------------------------------------------------------------------------------------

    def _move(self, agent: AgentRecord, target: AgentState, reason: str, now: float, actions: list[Action],
              *, keep_idle: bool = False) -> None:
        if target not in ALLOWED_TRANSITIONS[agent.state]:  # a bug guard: public methods check before changing
            raise IllegalTransition(agent_id=agent.agent_id, state=agent.state, event=reason)
        previous = agent.state
        if previous is _S.WRAP_UP and agent.busy_since is not None:
            self._record_handle_time(now - agent.busy_since)
        if target is not _S.ON_CALL and target is not _S.WRAP_UP:
            agent.busy_since = None
        agent.state = target
        agent.state_since = now
        if target is _S.AVAILABLE:
            agent.idle_since = agent.idle_since if keep_idle and agent.idle_since is not None else now
        elif target is not _S.OFFERED:
            agent.idle_since = None
        agent.wrap_up_until = None
        if target is _S.WRAP_UP and self.settings.wrap_up_s is not None:
            agent.wrap_up_until = now + self.settings.wrap_up_s
        actions.append(AgentStateChanged(agent_id=agent.agent_id, previous=previous, state=target, reason=reason, at=now))

    def _record_handle_time(self, seconds: float) -> None:
        times = self.state.handle_times
        times.append(max(0.0, seconds))
        del times[: max(0, len(times) - self.settings.handle_time_window)]

    def _withdraw(self, agent: AgentRecord, reason: WithdrawReason, target: AgentState, now: float,
                  actions: list[Action], *, keep_idle: bool = False) -> None:
        call = self.state.calls[agent.call_id]
        call.offered_to = None
        agent.call_id = None
        agent.offer_expires_at = None
        actions.append(OfferWithdrawn(agent_id=agent.agent_id, call_id=call.call_id, reason=reason, at=now))
        self._move(agent, target, reason, now, actions, keep_idle=keep_idle)

    def _drop_offer(self, call: CallRecord, now: float, actions: list[Action]) -> None:
        if call.offered_to is not None:
            # The caller left: not the agent's fault, so they keep their place in the idle order.
            self._withdraw(self.state.agents[call.offered_to], "call_ended", _S.AVAILABLE, now, actions, keep_idle=True)

    def _finalize(self, call: CallRecord, outcome: CallOutcome, now: float, actions: list[Action],
                  *, agent_id: str | None = None) -> None:
        final = CallFinal(call_id=call.call_id, language=call.language, state=outcome, wait_s=call.waited(now),
                          agent_id=agent_id, at=now)
        del self.state.calls[call.call_id]
        finals = self.state.finals
        finals[call.call_id] = final
        while len(finals) > self.settings.final_history:
            finals.popitem(last=False)
        actions.append(final)

    # --- internals: time -----------------------------------------------------------------------------------------

    def _step(self, now: float, actions: list[Action]) -> list[Action]:
        """After an event: expire what is due, distribute, then announce. Returns all actions in order."""
        self.state.last_now = max(now, self.state.last_now if self.state.last_now is not None else now)
        self._expire(now, actions)
        self._distribute(now, actions)
        self._announce(now, actions)
        return actions

    def _expire(self, now: float, actions: list[Action]) -> None:
        s = self.settings
        due = sorted((a for a in self.state.agents.values()
                      if a.state is _S.OFFERED and _reached(now, a.offer_expires_at)),
                     key=lambda a: (a.offer_expires_at, a.agent_id))
        for agent in due:
            self.state.calls[agent.call_id].tried.add(agent.agent_id)
            agent.missed_offers += 1
            if agent.missed_offers >= s.max_missed_offers:
                self._withdraw(agent, "timeout", _S.AWAY, now, actions)
                actions.append(AgentSetAway(agent_id=agent.agent_id, missed_offers=agent.missed_offers, at=now))
            else:
                self._withdraw(agent, "timeout", _S.AVAILABLE, now, actions)
        for agent in sorted(self.state.agents.values(), key=lambda a: a.agent_id):
            if agent.state is _S.WRAP_UP and agent.wrap_up_until is not None and _reached(now, agent.wrap_up_until):
                self._move(agent, _S.AVAILABLE, "wrap_up_timeout", now, actions)

    def _queue_order(self) -> list[CallRecord]:
        return queue_order(self.state)

    def _distribute(self, now: float, actions: list[Action]) -> None:
        available = [a for a in self.state.agents.values() if a.state is _S.AVAILABLE]
        for call in self._queue_order():
            if not available:
                return
            if call.offered_to is not None:
                continue
            pool = [a for a in available if call.language in a.languages]
            if not pool and _reached(call.waited(now), self.settings.any_agent_after_s):
                pool = available
            if not pool:
                continue  # skipped, not blocking: later calls in other languages may still be served
            agent = min(pool, key=lambda a: (a.agent_id in call.tried, a.idle_since, a.agent_id))
            available.remove(agent)
            call.offered_to = agent.agent_id
            agent.call_id = call.call_id
            agent.offer_expires_at = now + self.settings.offer_timeout_s
            actions.append(Offer(agent_id=agent.agent_id, call_id=call.call_id, language=call.language, at=now,
                                 expires_at=agent.offer_expires_at, wait_s=call.waited(now),
                                 language_match=call.language in agent.languages))
            self._move(agent, _S.OFFERED, "offer", now, actions)

    def _announce(self, now: float, actions: list[Action]) -> None:
        s = self.settings
        positions: dict[str, int] = {}
        for call in self._queue_order():
            position = positions[call.language] = positions.get(call.language, 0) + 1
            if call.offered_to is not None:
                continue  # ringing an agent: about to be connected, announcements wait
            if _reached(now, call.next_announce_at):
                actions.append(Announce(call_id=call.call_id, language=call.language, position=position,
                                        estimated_wait_s=self._estimate(call.language, position), at=now))
                call.next_announce_at = now + s.announce_interval_s
            if not call.callback_offered and _reached(call.waited(now), s.max_wait_s):
                call.callback_offered = True
                actions.append(OfferCallback(call_id=call.call_id, language=call.language, wait_s=call.waited(now), at=now))

    def _estimate(self, language: str, position: int) -> float | None:
        """Rough wait: the calls ahead that free agents cannot take at once, served at the pace of the staffed agents
        (mean of recent handle times, wrap-up included). None when nobody with the language is signed in."""
        staffed = [a for a in self.state.agents.values() if a.state in _SERVING and language in a.languages]
        if not staffed:
            return None
        free = sum(1 for a in staffed if a.state is _S.AVAILABLE)
        times = self.state.handle_times
        mean_handle = sum(times) / len(times) if times else self.settings.default_handle_s
        return max(0, position - free) * mean_handle / len(staffed)
