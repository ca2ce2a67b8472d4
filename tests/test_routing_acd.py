"""Unit tests of the agent queue (routing/queue/decisions.py), one rule at a time, on a virtual clock."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from routing.queue import Acd, AcdSettings
from routing.queue import AcdState
from routing.queue import (
    AcdClosed,
    AcdError,
    AgentSetAway,
    AgentState,
    AgentStateChanged,
    Announce,
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
)

S = AgentState
BASE = dict(offer_timeout_s=10, max_missed_offers=2, any_agent_after_s=60, announce_interval_s=30, max_wait_s=300,
            wrap_up_s=20, default_handle_s=120)


def make(**overrides) -> Acd:
    return Acd(settings=AcdSettings(**{**BASE, **overrides}))


def of(actions, kind):
    return [a for a in actions if isinstance(a, kind)]


def offers(actions) -> list[tuple[str, str]]:
    return [(o.agent_id, o.call_id) for o in of(actions, Offer)]


def state(acd: Acd, agent_id: str, now: float = 0.0) -> AgentState:
    return next(a.state for a in acd.snapshot(now).agents if a.agent_id == agent_id)


def final(actions) -> CallFinal:
    (f,) = of(actions, CallFinal)
    return f


# --- settings --------------------------------------------------------------------------------------------------------


def test_settings_are_validated_frozen_and_closed():
    with pytest.raises(ValidationError):
        AcdSettings(offer_timeout_s=0)
    with pytest.raises(ValidationError):
        AcdSettings(max_wait_s=float("inf"))
    with pytest.raises(ValidationError):
        AcdSettings(unknown_option=1)
    settings = AcdSettings()
    with pytest.raises(ValidationError):
        settings.offer_timeout_s = 5
    assert settings.max_missed_offers == 2  # an agent who misses two offers in a row is set away


# --- agent state machine ---------------------------------------------------------------------------------------------


def test_login_validates_languages_and_refuses_double_login():
    acd = make()
    for bad in (set(), {"fr"}, "en", {"en", "ja"}):
        with pytest.raises(AcdError):
            acd.agent_login("a", bad, 0)
    with pytest.raises(AcdError):
        acd.agent_login("", {"en"}, 0)
    acts = acd.agent_login("a", ["en", "zh"], 0)
    assert of(acts, AgentStateChanged)[0].state is S.AVAILABLE
    with pytest.raises(IllegalTransition, match="already signed in"):
        acd.agent_login("a", {"en"}, 1)
    acd.agent_login("b", {"zh"}, 1, available=False)
    assert state(acd, "b") is S.AWAY


@pytest.mark.parametrize("method,args,from_state", [
    ("finish_wrap_up", (), "available"),
    ("set_available", (), "offline"),
    ("set_away", (), "offline"),
    ("agent_logout", (), "offline"),
    ("accept", ("c1",), "available"),
    ("decline", ("c1",), "available"),
    ("end_call", ("c1",), "available"),
    ("hand_back_to_bot", ("c1",), "away"),
])
def test_illegal_transitions_raise_and_change_nothing(method, args, from_state):
    acd = make()
    acd.agent_login("a", {"en"}, 0, available=from_state != "away")
    if from_state == "offline":
        acd.agent_logout("a", 0)
    before = acd.snapshot(1)
    with pytest.raises(IllegalTransition, match=f"state '{from_state}'"):
        getattr(acd, method)("a", *args, 1)
    assert acd.snapshot(1) == before


def test_logout_during_a_call_is_refused_but_disconnect_is_not():
    acd = make()
    acd.agent_login("a", {"en"}, 0)
    acd.enqueue("c1", "en", 0)
    acd.accept("a", "c1", 1)
    with pytest.raises(IllegalTransition, match="end the call"):
        acd.agent_logout("a", 2)
    acts = acd.agent_disconnect("a", 2)
    assert of(acts, CallRequeued) and state(acd, "a", 2) is S.OFFLINE
    assert acd.agent_disconnect("a", 3) == []  # a late second disconnect is harmless


def test_unknown_agent_and_call_are_clear_errors():
    acd = make()
    with pytest.raises(UnknownAgent):
        acd.set_available("ghost", 0)
    with pytest.raises(UnknownCall):
        acd.hangup("nope", 0)
    with pytest.raises(AcdError, match="language"):
        acd.enqueue("c1", "fr", 0)


@pytest.mark.parametrize("method,args", [
    ("agent_login", ("a", None)), ("agent_login", ("a", [["en"]])), ("agent_login", (None, {"en"})),
    ("enqueue", ("c", ["en"])), ("enqueue", (["c"], "en")), ("hangup", (["c"],)), ("request_callback", ({},)),
    ("set_available", (["a"],)), ("accept", ("a", ["c"])), ("tick", ()),
])
def test_junk_input_is_a_clear_error_never_a_crash(method, args):
    acd = make()
    with pytest.raises(AcdError):
        getattr(acd, method)(*args, "not a time" if method == "tick" else 0)


def test_clock_must_not_go_backwards_or_be_nan():
    acd = make()
    acd.enqueue("c1", "en", 10)
    with pytest.raises(ClockError):
        acd.tick(9)
    with pytest.raises(ClockError):
        acd.tick(float("nan"))
    assert acd.tick(10) == []


# --- distribution ----------------------------------------------------------------------------------------------------


def test_call_goes_to_longest_idle_agent_with_its_language():
    acd = make()
    acd.agent_login("en_only", {"en"}, 0)  # idle longest, but no Mandarin
    acd.agent_login("zh_early", {"zh", "en"}, 2)
    acd.agent_login("zh_late", {"zh"}, 5)
    acts = acd.enqueue("c1", "zh", 10)
    assert offers(acts) == [("zh_early", "c1")]
    assert of(acts, Offer)[0].language_match


def test_no_agent_with_language_then_any_agent_after_the_set_wait():
    acd = make(any_agent_after_s=60)
    acd.agent_login("en", {"en"}, 0)
    assert offers(acd.enqueue("c1", "zh", 0)) == []
    assert acd.next_deadline() == 30  # first repeat of the announcement
    acd.tick(30)
    assert acd.next_deadline() == 60  # the call reaches any_agent_after_s
    acts = acd.tick(60)
    assert offers(acts) == [("en", "c1")]
    assert not of(acts, Offer)[0].language_match


def test_any_agent_rule_never_beats_an_available_agent_with_the_language():
    acd = make(any_agent_after_s=0)  # even with no grace period at all
    acd.agent_login("en", {"en"}, 0)
    acd.agent_login("zh", {"zh"}, 5)
    assert offers(acd.enqueue("c1", "zh", 10)) == [("zh", "c1")]


def test_oldest_call_first_and_a_call_without_agent_does_not_block():
    acd = make()
    acd.enqueue("zh_old", "zh", 0)
    acd.enqueue("en_1", "en", 1)
    acd.enqueue("en_2", "en", 2)
    acts = acd.agent_login("en", {"en"}, 3)
    assert offers(acts) == [("en", "en_1")]  # zh_old waits (no Mandarin agent) without blocking en_1
    acts = acd.agent_login("both", {"en", "zh"}, 4)
    assert offers(acts) == [("both", "zh_old")]  # the oldest call first
    assert [q.call_id for q in acd.snapshot(4).queue] == ["zh_old", "en_1", "en_2"]


def test_offer_timeout_moves_to_the_next_agent_and_two_misses_set_away():
    acd = make(offer_timeout_s=10)
    acd.agent_login("a", {"en"}, 0)
    acd.agent_login("b", {"en"}, 1)
    assert offers(acd.enqueue("c1", "en", 2)) == [("a", "c1")]
    assert acd.next_deadline() == 12
    acts = acd.tick(12)
    assert [(w.agent_id, w.reason) for w in of(acts, OfferWithdrawn)] == [("a", "timeout")]
    assert offers(acts) == [("b", "c1")]  # next agent, not the one who missed
    acts = acd.enqueue("c2", "en", 13)
    assert offers(acts) == [("a", "c2")]
    acts = acd.tick(23)  # a misses again: away; c2 goes to... nobody else free
    assert of(acts, AgentSetAway) == [AgentSetAway(agent_id="a", missed_offers=2, at=23)]
    assert state(acd, "a", 23) is S.AWAY
    acd.set_available("a", 24)
    assert next(v.missed_offers for v in acd.snapshot(24).agents if v.agent_id == "a") == 0


def test_misses_must_be_consecutive():
    acd = make(offer_timeout_s=10, wrap_up_s=0)
    acd.agent_login("a", {"en"}, 0)
    acd.enqueue("c1", "en", 0)
    acd.tick(10)  # miss 1, re-offered at once (the only agent)
    acd.accept("a", "c1", 11)  # resets the count
    acd.end_call("a", "c1", 12)
    acd.enqueue("c2", "en", 13)
    acts = acd.tick(23)  # a single miss again
    assert not of(acts, AgentSetAway) and state(acd, "a", 23) is S.OFFERED


def test_lone_agent_who_missed_gets_the_call_again():
    acd = make(offer_timeout_s=10)
    acd.agent_login("a", {"zh"}, 0)
    acd.agent_login("en", {"en"}, 0)
    acd.enqueue("c1", "zh", 0)
    acts = acd.tick(10)
    assert offers(acts) == [("a", "c1")]  # the Mandarin agent again, not the English-only one


def test_accept_at_the_deadline_is_refused_without_change():
    acd = make(offer_timeout_s=10)
    acd.agent_login("a", {"en"}, 0)
    acd.enqueue("c1", "en", 0)
    before = acd.snapshot(10)
    with pytest.raises(OfferExpired):
        acd.accept("a", "c1", 10)
    assert acd.snapshot(10) == before
    with pytest.raises(CallStateError):
        acd.accept("a", "other", 5)


def test_decline_is_not_a_miss_and_moves_on():
    acd = make()
    acd.agent_login("a", {"en"}, 0)
    acd.agent_login("b", {"en"}, 1)
    acd.enqueue("c1", "en", 2)
    acts = acd.decline("a", "c1", 3)
    assert [w.reason for w in of(acts, OfferWithdrawn)] == ["declined"]
    assert offers(acts) == [("b", "c1")]
    assert next(v.missed_offers for v in acd.snapshot(3).agents if v.agent_id == "a") == 0


# --- calls with agents, wrap-up --------------------------------------------------------------------------------------


def test_accept_end_wrap_up_then_available_after_the_set_time():
    acd = make(wrap_up_s=20)
    acd.agent_login("a", {"en"}, 0)
    acd.enqueue("c1", "en", 5)
    acts = acd.accept("a", "c1", 8)
    assert of(acts, CallConnected) == [CallConnected(call_id="c1", agent_id="a", wait_s=3, at=8)]
    acts = acd.end_call("a", "c1", 100)
    assert final(acts) == CallFinal(call_id="c1", language="en", state=CallOutcome.ANSWERED, wait_s=3, agent_id="a",
                                    at=100)
    assert state(acd, "a", 100) is S.WRAP_UP and acd.next_deadline() == 120
    acd.enqueue("c2", "en", 110)
    assert state(acd, "a", 110) is S.WRAP_UP  # no offers during wrap-up
    acts = acd.tick(120)
    assert offers(acts) == [("a", "c2")]


def test_explicit_wrap_up_when_no_wrap_up_time_is_set():
    acd = make(wrap_up_s=None)
    acd.agent_login("a", {"en"}, 0)
    acd.enqueue("c1", "en", 0)
    acd.accept("a", "c1", 1)
    acd.end_call("a", "c1", 2)
    assert acd.tick(10_000) == [] and state(acd, "a", 10_000) is S.WRAP_UP
    acts = acd.finish_wrap_up("a", 10_001)
    assert of(acts, AgentStateChanged)[0].state is S.AVAILABLE


def test_hand_back_to_bot_is_its_own_final_state():
    acd = make()
    acd.agent_login("a", {"zh"}, 0)
    acd.enqueue("c1", "zh", 0)
    acd.accept("a", "c1", 4)
    f = final(acd.hand_back_to_bot("a", "c1", 50))
    assert (f.state, f.agent_id, f.wait_s) == (CallOutcome.TRANSFERRED_BACK_TO_BOT, "a", 4)
    assert state(acd, "a", 50) is S.WRAP_UP


def test_caller_hangup_while_connected_counts_as_answered():
    acd = make()
    acd.agent_login("a", {"en"}, 0)
    acd.enqueue("c1", "en", 0)
    acd.accept("a", "c1", 2)
    f = final(acd.hangup("c1", 30))
    assert (f.state, f.agent_id, f.wait_s) == (CallOutcome.ANSWERED, "a", 2)
    assert state(acd, "a", 30) is S.WRAP_UP


# --- disconnects -----------------------------------------------------------------------------------------------------


def test_disconnect_during_a_call_puts_it_at_the_front_keeping_its_arrival_time():
    acd = make(wrap_up_s=None)
    acd.agent_login("a", {"en"}, 0)
    acd.enqueue("c1", "en", 10)
    acd.accept("a", "c1", 15)  # waited 5 s
    acd.enqueue("c0_later", "en", 20)
    acts = acd.agent_disconnect("a", 100)
    assert of(acts, CallRequeued) == [CallRequeued(call_id="c1", agent_id="a", at=100)]
    queue = acd.snapshot(100).queue
    assert [q.call_id for q in queue] == ["c1", "c0_later"]
    assert queue[0].requeued and queue[0].enqueued_at == 10 and queue[0].wait_s == 5  # talk time is not waiting
    assert of(acts, Announce)[0].call_id == "c1"  # back on hold: hears its position at once
    acd.agent_login("b", {"en"}, 110)
    acd.accept("b", "c1", 111)
    f = final(acd.end_call("b", "c1", 200))
    assert (f.state, f.agent_id, f.wait_s) == (CallOutcome.ANSWERED, "b", 16)


def test_requeued_call_goes_ahead_of_older_waiting_calls():
    acd = make(any_agent_after_s=1000)
    acd.agent_login("a", {"en"}, 0)
    acd.enqueue("old_zh", "zh", 5)  # no Mandarin agent: keeps waiting
    acd.enqueue("c1", "en", 10)
    acd.accept("a", "c1", 11)
    acd.agent_disconnect("a", 13)
    assert [q.call_id for q in acd.snapshot(13).queue] == ["c1", "old_zh"]
    acd.agent_login("both", {"en", "zh"}, 14)
    assert offers(acd.agent_login("b", {"en", "zh"}, 15)) == [("b", "old_zh")]  # "both" took c1 first


def test_disconnect_during_offer_keeps_the_call_and_puts_it_in_front():
    acd = make()
    acd.agent_login("a", {"en"}, 0)
    acd.enqueue("c2", "zh", 1)
    acd.enqueue("c1", "en", 2)
    acts = acd.agent_disconnect("a", 3)
    assert [w.reason for w in of(acts, OfferWithdrawn)] == ["agent_disconnected"]
    assert [q.call_id for q in acd.snapshot(3).queue] == ["c1", "c2"]
    assert acd.outcome("c1") is None


def test_hangup_during_offer_frees_the_agent_keeping_their_idle_position():
    acd = make()
    acd.agent_login("a", {"en"}, 0)
    acd.agent_login("b", {"en"}, 1)
    acd.enqueue("c1", "en", 2)  # offered to a
    acts = acd.hangup("c1", 5)
    assert [w.reason for w in of(acts, OfferWithdrawn)] == ["call_ended"]
    assert final(acts).state is CallOutcome.ABANDONED and final(acts).wait_s == 3
    assert offers(acd.enqueue("c2", "en", 6)) == [("a", "c2")]  # still the longest idle


# --- announcements and call-backs ------------------------------------------------------------------------------------


def test_announcements_at_enqueue_and_every_interval_with_positions_per_language():
    acd = make(announce_interval_s=30)
    a1 = of(acd.enqueue("e1", "en", 0), Announce)
    a2 = of(acd.enqueue("z1", "zh", 1), Announce)
    a3 = of(acd.enqueue("e2", "en", 2), Announce)
    assert [(a.call_id, a.position, a.estimated_wait_s) for a in a1 + a2 + a3] == [
        ("e1", 1, None), ("z1", 1, None), ("e2", 2, None)]  # nobody signed in: no estimate
    assert of(acd.tick(29), Announce) == []
    assert [a.call_id for a in of(acd.tick(30), Announce)] == ["e1"]
    assert [a.call_id for a in of(acd.tick(32), Announce)] == ["z1", "e2"]


def test_estimated_wait_uses_recent_handle_times_and_staffed_agents():
    acd = make(default_handle_s=120, wrap_up_s=0, announce_interval_s=30)
    acd.agent_login("a", {"en"}, 0)
    acd.agent_login("b", {"en"}, 0)
    for i, (start, end) in enumerate([(0, 60), (100, 160)]):
        acd.enqueue(f"h{i}", "en", start)
        acd.accept("a" if i == 0 else "b", f"h{i}", start)
        acd.end_call("a" if i == 0 else "b", f"h{i}", end)
    acd.enqueue("busy_a", "en", 200)
    acd.accept("a", "busy_a", 200)
    acd.enqueue("busy_b", "en", 200)
    acd.accept("b", "busy_b", 200)
    acts = acd.enqueue("w1", "en", 201) + acd.enqueue("w2", "en", 202)
    # Two agents busy, mean handle 60 s: 1st waiter ~ 60/2 s, 2nd ~ 2*60/2 s.
    assert [(a.position, a.estimated_wait_s) for a in of(acts, Announce)] == [(1, 30.0), (2, 60.0)]


def test_no_announcement_while_the_call_rings_an_agent():
    acd = make(offer_timeout_s=10)
    acd.agent_login("a", {"en"}, 0)
    assert of(acd.enqueue("c1", "en", 0), Announce) == []
    acts = acd.tick(10)  # missed: re-offered at once, still no announcement while it rings
    assert of(acts, Announce) == [] and offers(acts) == [("a", "c1")]


def test_callback_offered_once_after_max_wait_then_confirmed_as_task():
    acd = make(max_wait_s=300, announce_interval_s=1000, any_agent_after_s=1000)
    acd.enqueue("c1", "zh", 0)
    assert acd.next_deadline() == 300
    acts = acd.tick(300)
    assert of(acts, OfferCallback) == [OfferCallback(call_id="c1", language="zh", wait_s=300, at=300)]
    assert of(acd.tick(600), OfferCallback) == []  # once
    acts = acd.request_callback("c1", 610)
    (created,) = of(acts, CallbackTaskCreated)
    assert (created.task.call_id, created.task.language, created.task.wait_s) == ("c1", "zh", 610)
    assert final(acts).state is CallOutcome.CALLBACK_REQUESTED
    assert acd.snapshot(610).callback_tasks == (created.task,)
    assert acd.request_callback("c1", 611) == []  # pressed twice
    assert acd.hangup("c1", 612) == []  # the caller hangs up after confirming: still callback_requested
    assert acd.outcome("c1").state is CallOutcome.CALLBACK_REQUESTED
    acd.agent_login("a", {"zh"}, 700)
    acts = acd.complete_callback_task(created.task.task_id, "a", 701)
    assert of(acts, CallbackTaskCompleted) and acd.snapshot(701).callback_tasks == ()
    with pytest.raises(AcdError):
        acd.complete_callback_task(created.task.task_id, "a", 702)


def test_callback_cannot_be_requested_by_a_connected_call():
    acd = make()
    acd.agent_login("a", {"en"}, 0)
    acd.enqueue("c1", "en", 0)
    acd.accept("a", "c1", 1)
    with pytest.raises(CallStateError):
        acd.request_callback("c1", 2)


# --- final states ----------------------------------------------------------------------------------------------------


def test_abandoned_with_wait_time_and_final_states_are_immutable():
    acd = make()
    acd.enqueue("c1", "en", 10)
    f = final(acd.hangup("c1", 55))
    assert (f.state, f.wait_s, f.agent_id) == (CallOutcome.ABANDONED, 45, None)
    assert acd.hangup("c1", 60) == []
    with pytest.raises(CallStateError):
        acd.request_callback("c1", 61)
    with pytest.raises(CallStateError):
        acd.enqueue("c1", "en", 62)  # ids are never reused
    assert acd.outcome("c1") == f


def test_close_ends_every_live_call_once_as_closed():
    acd = make()
    acd.agent_login("a", {"en"}, 0)
    acd.agent_login("b", {"zh"}, 0)
    acd.enqueue("talking", "en", 0)
    acd.accept("a", "talking", 1)
    acd.enqueue("ringing", "zh", 2)
    acd.enqueue("waiting", "en", 3)
    acd.enqueue("done", "en", 3)
    acd.hangup("done", 4)
    acts = acd.close(10)
    finals = {f.call_id: (f.state, f.agent_id) for f in of(acts, CallFinal)}
    assert finals == {"talking": (CallOutcome.CLOSED, "a"), "ringing": (CallOutcome.CLOSED, None),
                      "waiting": (CallOutcome.CLOSED, None)}
    assert [w.reason for w in of(acts, OfferWithdrawn)] == ["closed"]
    snap = acd.snapshot(10)
    assert snap.closed and not snap.queue and not snap.active
    assert all(a.state is S.OFFLINE for a in snap.agents)
    assert acd.outcome("done").state is CallOutcome.ABANDONED
    assert acd.close(11) == [] and acd.tick(11) == [] and acd.next_deadline() is None
    assert acd.hangup("waiting", 12) == []
    with pytest.raises(AcdClosed):
        acd.enqueue("new", "en", 12)
    with pytest.raises(AcdClosed):
        acd.agent_login("c", {"en"}, 12)


def test_final_history_is_bounded():
    acd = make(final_history=2)
    for i in range(3):
        acd.enqueue(f"c{i}", "en", i)
        acd.hangup(f"c{i}", i)
    assert acd.outcome("c0") is None and acd.outcome("c2").state is CallOutcome.ABANDONED
    with pytest.raises(UnknownCall):
        acd.hangup("c0", 10)


# --- snapshot and state seam -----------------------------------------------------------------------------------------


def test_snapshot_shows_queue_languages_waits_and_agents():
    acd = make()
    acd.agent_login("a", {"en"}, 0)
    acd.agent_login("b", {"zh", "en"}, 0, available=False)
    acd.enqueue("c1", "zh", 10)
    acd.enqueue("c2", "en", 12)
    snap = acd.snapshot(20)
    assert [(q.call_id, q.language, q.position, q.wait_s, q.offered_to) for q in snap.queue] == [
        ("c1", "zh", 1, 10, None), ("c2", "en", 2, 8, "a")]
    assert [(v.agent_id, v.state, v.call_id) for v in snap.agents] == [("a", S.OFFERED, "c2"), ("b", S.AWAY, None)]


def test_state_can_be_handed_to_a_new_acd():
    # The Redis seam: all knowledge is in AcdState, so a second Acd over the same state continues the work.
    shared = AcdState()
    first = Acd(settings=AcdSettings(**BASE), state=shared)
    first.agent_login("a", {"en"}, 0)
    first.enqueue("c1", "en", 1)
    second = Acd(settings=AcdSettings(**BASE), state=shared)
    assert of(second.accept("a", "c1", 2), CallConnected)
    with pytest.raises(ClockError):
        second.tick(1)
