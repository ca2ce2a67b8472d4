"""The queue's store seam (routing/queue/store.py) and codec (routing/queue/codec.py), without I/O: the in-process
store numbers decisions, records who holds each party, claims only due ticks, keeps the queue's time monotonic,
and the JSON codec gives back exactly the state and actions it was given."""
from __future__ import annotations

import json

import pytest

from routing.queue import Acd, AcdSettings, AgentState, CallOutcome, ClockError, InProcessQueueStore, Offer, Party
from routing.queue.codec import action_from_dict, action_to_dict, state_from_dict, state_to_dict

SETTINGS = AcdSettings(offer_timeout_s=10, wrap_up_s=5)


def busy_acd() -> tuple[Acd, list]:
    acd = Acd(settings=SETTINGS)
    actions = []
    actions += acd.agent_login("a", {"en", "zh"}, 0)
    actions += acd.agent_login("b", {"zh"}, 1, available=False)
    actions += acd.enqueue("c1", "en", 2)
    actions += acd.enqueue("c2", "zh", 3)
    actions += acd.accept("a", "c1", 4)
    actions += acd.end_call("a", "c1", 5)
    actions += acd.request_callback("c2", 6)
    actions += acd.tick(20)
    actions += acd.close(21)
    return acd, actions


def test_state_and_actions_survive_json_exactly():
    acd, actions = busy_acd()
    assert {type(a).__name__ for a in actions} >= {"Offer", "CallConnected", "CallFinal", "AgentStateChanged",
                                                    "CallbackTaskCreated", "Announce"}
    assert [action_from_dict(json.loads(json.dumps(action_to_dict(a)))) for a in actions] == actions
    state = Acd(settings=SETTINGS).state
    for event in (lambda x: x.agent_login("a", {"en"}, 0), lambda x: x.enqueue("c1", "en", 1.1),
                  lambda x: x.decline("a", "c1", 1.7)):
        acd2 = Acd(settings=SETTINGS, state=state)
        event(acd2)
        back = state_from_dict(json.loads(json.dumps(state_to_dict(acd2.state))), dict(acd2.state.finals))
        assert back == acd2.state
        state = back


def test_in_process_store_numbers_decisions_and_records_parties():
    store = InProcessQueueStore(settings=SETTINGS, process_id="p1")
    d1 = store.decide("agent_login", "a", ["en"], now=0)
    d2 = store.decide("enqueue", "c1", "en", now=1, info=Party(process="p1", language="en", topic="visa"))
    assert (d1.version, d2.version) == (1, 2)
    assert any(isinstance(a, Offer) for a in d2.actions)
    assert d2.parties["call:c1"] == Party(process="p1", language="en", topic="visa")
    assert d2.next_deadline == 11
    assert store.owned_by("p1") == (["c1"], ["a"])
    assert store.tick(5) is None and store.version() == 2  # nothing due: nothing decided
    d3 = store.tick(11)
    assert d3.version == 3 and d3.actions[0].reason == "timeout"
    d4 = store.decide("hangup", "c1", now=12)
    assert d4.actions[-1].state is CallOutcome.ABANDONED
    assert store.owned_by("p1") == ([], ["a"])  # a finished call needs nobody
    assert store.decide("hangup", "c1", now=13).actions == () and store.version() == 4  # a no-op writes nothing


def test_the_queue_time_never_goes_back_but_bad_clocks_are_refused():
    store = InProcessQueueStore(settings=SETTINGS)
    store.decide("agent_login", "a", ["en"], now=100)
    d = store.decide("set_away", "a", now=99.5)  # another process's clock read a moment earlier
    assert d.at == 100 and store.view(50).snapshot.agents[0].state is AgentState.AWAY
    with pytest.raises(ClockError):
        store.decide("set_available", "a", now=float("nan"))
    with pytest.raises(ValueError):
        store.decide("no_such_event", now=101)
