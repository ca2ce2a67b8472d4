"""The queue's state and actions as JSON-ready dicts, for a store that several processes share.

Plain values only (str, float, int, bool, None, lists, dicts); Python's json writes floats with repr, so every time
survives the round trip exactly (the simulation compares action times with ==). Final states are coded one by one
(`final_to_dict`): a shared store keeps them apart from the live state, because a decision reads at most one of
the up to `final_history` finals and the live state must stay small to load on every decision.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import fields
from enum import Enum
from typing import Any

from .state import AcdState, AgentRecord, CallRecord
from .types import (
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
    Offer,
    OfferCallback,
    OfferWithdrawn,
)

ACTION_TYPES: dict[str, type] = {cls.__name__: cls for cls in (
    Offer, OfferWithdrawn, CallConnected, CallRequeued, AgentStateChanged, AgentSetAway, Announce, OfferCallback,
    CallbackTaskCreated, CallbackTaskCompleted, CallFinal)}
# Fields that are not plain values, by (action type, field name).
_TYPED_FIELDS: dict[tuple[type, str], Any] = {
    (AgentStateChanged, "previous"): AgentState,
    (AgentStateChanged, "state"): AgentState,
    (CallFinal, "state"): CallOutcome,
    (CallbackTaskCreated, "task"): lambda d: CallbackTask(**d),
}


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, CallbackTask):
        return {f.name: getattr(value, f.name) for f in fields(value)}
    return value


def action_to_dict(action: Action) -> dict[str, Any]:
    out = {"type": type(action).__name__}
    out.update({f.name: _plain(getattr(action, f.name)) for f in fields(action)})
    return out


def action_from_dict(data: dict[str, Any]) -> Action:
    cls = ACTION_TYPES[data["type"]]
    kwargs = {}
    for f in fields(cls):
        value = data[f.name]
        convert = _TYPED_FIELDS.get((cls, f.name))
        kwargs[f.name] = convert(value) if convert is not None and value is not None else value
    return cls(**kwargs)


def final_to_dict(final: CallFinal) -> dict[str, Any]:
    return action_to_dict(final)


def final_from_dict(data: dict[str, Any]) -> CallFinal:
    final = action_from_dict(data)
    assert isinstance(final, CallFinal)
    return final


# Field names read once: a shared store codes the whole live state on every decision (`hotline bench queue`).
_AGENT_FIELDS = tuple(f.name for f in fields(AgentRecord))
_CALL_FIELDS = tuple(f.name for f in fields(CallRecord))


def _agent(agent: AgentRecord) -> dict[str, Any]:
    out = {name: getattr(agent, name) for name in _AGENT_FIELDS}
    out["languages"] = sorted(agent.languages)
    out["state"] = agent.state.value
    return out


def _call(call: CallRecord) -> dict[str, Any]:
    out = {name: getattr(call, name) for name in _CALL_FIELDS}
    out["tried"] = sorted(call.tried)
    return out


def state_to_dict(state: AcdState) -> dict[str, Any]:
    """The live state without its final states (see the module doc)."""
    return {
        "agents": [_agent(a) for a in state.agents.values()],  # a list keeps the insertion order explicit
        "calls": [_call(c) for c in state.calls.values()],
        "handle_times": list(state.handle_times),
        "callback_tasks": [_plain(t) for t in state.callback_tasks.values()],
        "last_now": state.last_now,
        "next_seq": state.next_seq,
        "closed": state.closed,
    }


def state_from_dict(data: dict[str, Any], finals: dict[str, CallFinal] | None = None) -> AcdState:
    agents = {}
    for a in data["agents"]:
        agents[a["agent_id"]] = AgentRecord(**{**a, "languages": frozenset(a["languages"]),
                                               "state": AgentState(a["state"])})
    calls = {c["call_id"]: CallRecord(**{**c, "tried": set(c["tried"])}) for c in data["calls"]}
    return AcdState(
        agents=agents,
        calls=calls,
        finals=OrderedDict(finals or {}),
        handle_times=list(data["handle_times"]),
        callback_tasks={t["task_id"]: CallbackTask(**t) for t in data["callback_tasks"]},
        last_now=data["last_now"],
        next_seq=data["next_seq"],
        closed=data["closed"],
    )
