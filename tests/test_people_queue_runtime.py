"""The queue runtime (server/people/queue_runtime.py) with the real ACD on a virtual clock and scripted call sessions:
offers and their time-outs reach the right consoles, callers hear their place in the queue in their language,
call-backs are confirmed by key or by voice, a console that drops puts its caller back at the front, and every
queued call ends in exactly one final state."""
from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from routing.queue import AcdError, AcdSettings
from server.call.messages import AudioIn, DtmfIn, FinalOut
from server.people.live import LiveRegistry, Subscriber
from server.people.queue_runtime import QueueRuntime
from server.settings import PeopleSettings


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class FakeConn:
    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.inbound: asyncio.Queue[list[Any]] = asyncio.Queue()

    async def receive(self) -> list[Any]:
        return await self.inbound.get()

    def send(self, message: Any) -> bool:
        self.sent.append(message)
        return True

    async def close(self, code: int = 1000, **kw: Any) -> None:
        pass


class FakeRecorder:
    def __init__(self) -> None:
        self.seq = 0
        self.events: list[tuple[str, Any]] = []

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def event(self, kind: str, data: Any = None) -> None:
        self.events.append((kind, data))


class FakeSession:
    """The surface of a CallSession that server/people/port.py (CallPort) uses — nothing else is touched."""

    def __init__(self, call_id: str) -> None:
        self.call_id = call_id
        self.conn = FakeConn()
        self.recorder = FakeRecorder()
        self.said: list[tuple[str, str, dict[str, Any]]] = []
        self.controls: list[Any] = []
        self._queued = True
        self.no_input = type("NI", (), {"enabled": False})()
        self._speak_q: asyncio.Queue[Any] = asyncio.Queue()

    def _say(self, key: str, language: str, **params: Any) -> None:
        self.said.append((key, language, params))

    def _control_now(self, message: Any) -> None:
        self.controls.append(message)

    def _is_playing(self, now: float) -> bool:
        return False


def make(**acd: Any) -> tuple[QueueRuntime, LiveRegistry, Clock]:
    clock = Clock()
    live = LiveRegistry(recordings_dir=None, clock=clock)
    settings = PeopleSettings(acd=AcdSettings(**{"offer_timeout_s": 10, "announce_interval_s": 30, "max_wait_s": 120,
                                                 "wrap_up_s": 5, **acd}), recordings=False,
                              agent_transcription=False)
    return QueueRuntime(settings=settings, live=live, store=None, clock=clock), live, clock


def call(runtime: QueueRuntime, live: LiveRegistry, call_id: str, language: str) -> FakeSession:
    session = FakeSession(call_id)
    live.attach(session)
    runtime.enqueue(call_id=call_id, language=language, topic="human_agent", now=0.0)
    return session


def events(sub: Subscriber) -> list[dict[str, Any]]:
    out = []
    while not sub.queue.empty():
        out.append(sub.queue.get_nowait())
    return [e for e in out if isinstance(e, dict)]


async def test_offer_goes_to_the_agent_with_the_language_then_times_out_to_the_next():
    rt, live, clock = make(any_agent_after_s=1000)
    en, zh1, zh2 = Subscriber(), Subscriber(), Subscriber()
    rt.connect_agent(name="alice", languages=("en",), sub=en)
    rt.connect_agent(name="mei", languages=("zh",), sub=zh1)
    rt.set_availability("alice", "available")
    clock.t += 1
    rt.set_availability("mei", "available")
    clock.t += 1
    rt.connect_agent(name="li", languages=("zh", "en"), sub=zh2)
    rt.set_availability("li", "available")  # idle for less time than mei
    call(rt, live, "c1", "zh")
    assert [e["call_id"] for e in events(zh1) if e["event"] == "offer"] == ["c1"]
    assert not [e for e in events(en) if e["event"] == "offer"]
    assert not [e for e in events(zh2) if e["event"] == "offer"]
    clock.t += 10  # mei misses the offer
    rt.tick()
    mei = events(zh1)
    assert any(e["event"] == "offer.withdrawn" and e["reason"] == "timeout" for e in mei)
    offers = [e for e in events(zh2) if e["event"] == "offer"]
    assert [o["call_id"] for o in offers] == ["c1"] and offers[0]["language"] == "zh"
    rt.accept("li", "c1")
    assert live.get("c1").state == "with_agent"


async def test_two_missed_offers_set_the_agent_away():
    rt, live, clock = make()
    sub = Subscriber()
    rt.connect_agent(name="mei", languages=("zh",), sub=sub)
    rt.set_availability("mei", "available")
    call(rt, live, "c1", "zh")
    for _ in range(2):
        clock.t += 10
        rt.tick()
    got = events(sub)
    assert any(e["event"] == "agent.set_away" and e["missed_offers"] == 2 for e in got)
    assert rt.agent_state("mei") == "away"


async def test_callers_hear_position_and_wait_in_their_language_and_confirm_a_callback_by_key():
    rt, live, clock = make()
    rt.connect_agent(name="mei", languages=("zh",), sub=Subscriber())
    rt.set_availability("mei", "available")
    call(rt, live, "c0", "zh")
    rt.accept("mei", "c0")  # mei is busy: the next callers wait, with an estimate (she will be free)
    s1 = call(rt, live, "c1", "zh")
    s2 = call(rt, live, "c2", "zh")
    s3 = call(rt, live, "c3", "other:ja")  # not served: waits for English-speaking agents, hears English
    assert s1.said[0][:2] == ("queue_position", "zh") and s1.said[0][2]["position"] == 1
    assert s2.said[0][:2] == ("queue_position", "zh") and s2.said[0][2]["position"] == 2
    assert s2.said[0][2]["wait_minutes"] >= s1.said[0][2]["wait_minutes"] >= 1
    assert s3.said[0][:2] == ("agent_unavailable", "en")  # no English agent signed in: no honest estimate
    clock.t += 30
    rt.tick()
    assert [k for k, _, _ in s1.said].count("queue_position") == 2  # repeated at the interval
    clock.t += 90
    rt.tick()
    assert ("callback_offer", "zh") in [(k, lang) for k, lang, _ in s1.said]
    await s1.conn.inbound.put([DtmfIn("1")])
    await s1.conn.receive()  # the tap sees the key press as the session reads it
    await asyncio.sleep(0.3)
    assert rt.finals["c1"].state.value == "callback_requested"
    assert ("callback_confirmed", "zh") in [(k, lang) for k, lang, _ in s1.said]
    assert [c.reason for c in s1.controls if hasattr(c, "reason")] == ["callback_requested"]
    assert "c1" in {t["call_id"] for t in rt.queue_view()["callback_tasks"]}


async def test_callback_confirmed_by_voice():
    rt, live, clock = make(max_wait_s=5)
    s = call(rt, live, "c1", "en")
    clock.t += 5
    rt.tick()
    assert s.said[-1][:2] == ("callback_offer", "en")
    live._outbound(live.get("c1"), FinalOut("Yes please, call me back", "en", "en", 0.9, "audio", False, 0, 1))
    assert rt.finals["c1"].state.value == "callback_requested"


async def test_a_console_that_drops_puts_its_caller_back_at_the_front():
    rt, live, clock = make()
    mei = Subscriber()
    rt.connect_agent(name="mei", languages=("zh",), sub=mei)
    rt.set_availability("mei", "available")
    s1 = call(rt, live, "c1", "zh")
    rt.accept("mei", "c1")
    # The bridge: caller audio reaches the agent's console.
    await s1.conn.inbound.put([AudioIn(b"\x01\x00" * 320)])
    await s1.conn.receive()
    assert any(isinstance(x, bytes) for x in [mei.queue.get_nowait() for _ in range(mei.queue.qsize())])
    call(rt, live, "c2", "zh")
    clock.t += 1
    said_before = len(s1.said)
    rt.disconnect_agent("mei")
    assert ("please_hold", "zh") in [(k, lang) for k, lang, _ in s1.said[said_before:]]
    queue = rt.queue_view()["queue"]
    assert [q["call_id"] for q in queue] == ["c1", "c2"] and queue[0]["requeued"]
    assert not live.get("c1").on_caller_audio  # the bridge is cut


async def test_hand_back_to_the_bot_and_end_by_the_agent():
    from server.call.session import EndCall

    rt, live, clock = make()
    rt.connect_agent(name="mei", languages=("zh",), sub=Subscriber())
    rt.set_availability("mei", "available")
    s1 = call(rt, live, "c1", "zh")
    rt.accept("mei", "c1")
    rt.hand_back("mei", "c1")
    assert rt.finals["c1"].state.value == "transferred_back_to_bot"
    assert s1._queued is False and s1.no_input.enabled is True
    clock.t += 5
    rt.tick()  # wrap-up over
    s2 = call(rt, live, "c2", "zh")
    rt.accept("mei", "c2")
    with pytest.raises(ValueError):
        rt.end_call("alice", "c2")
    rt.end_call("mei", "c2")
    assert rt.finals["c2"].state.value == "answered"
    assert isinstance(s2.controls[-1], EndCall) and s2.controls[-1].reason == "agent_ended"


async def test_random_traffic_every_call_ends_in_exactly_one_final_state():
    rng = random.Random(11)
    rt, live, clock = make(any_agent_after_s=20, max_wait_s=60)
    subs = {n: Subscriber(maxsize=100000) for n in ("a", "b", "c", "d")}
    langs = {"a": ("en",), "b": ("zh",), "c": ("en", "zh"), "d": ("zh",)}
    sessions: dict[str, FakeSession] = {}
    for i in range(400):
        clock.t += rng.expovariate(1 / 3)
        r = rng.random()
        if r < 0.3:
            cid = f"c{i}"
            sessions[cid] = call(rt, live, cid, rng.choice(["en", "zh", "other:fr"]))
        elif r < 0.45 and sessions:
            rt.leave(rng.choice(list(sessions)), reason="hangup")
        elif r < 0.6:
            name = rng.choice(list(subs))
            if name in rt.agents:
                if rng.random() < 0.2:
                    rt.disconnect_agent(name)
                else:
                    try:
                        rt.set_availability(name, "available")
                    except ValueError:
                        pass
            else:
                rt.connect_agent(name=name, languages=langs[name], sub=subs[name])
        elif r < 0.85:
            for name, link in list(rt.agents.items()):
                try:
                    if link.offered and rng.random() < 0.7:
                        rt.accept(name, link.offered)
                    elif link.call_id and rng.random() < 0.5:
                        (rt.end_call if rng.random() < 0.8 else rt.hand_back)(name, link.call_id)
                except ValueError:
                    pass
        rt.tick()
    for cid in list(sessions):
        rt.leave(cid, reason="hangup")
    clock.t += 1
    rt.tick()
    for cid in sessions:
        assert cid in rt.finals, cid
    assert not rt.calls  # nothing left waiting
    finals_seen: dict[str, int] = {}
    for sub in subs.values():
        for e in events(sub):
            if e["event"] == "call.ended":
                finals_seen[e["call_id"]] = finals_seen.get(e["call_id"], 0) + 1
    assert all(n == 1 for n in finals_seen.values())  # an agent is told once that a call ended


async def test_the_ticker_acts_on_deadlines_by_itself():
    """On the real clock: nobody calls tick(); the ticker wakes at acd.next_deadline() and moves the offer on."""
    import time

    live = LiveRegistry(recordings_dir=None)
    rt = QueueRuntime(settings=PeopleSettings(acd=AcdSettings(offer_timeout_s=0.2), recordings=False,
                                              agent_transcription=False), live=live, clock=time.monotonic)
    rt.start()
    try:
        a, b = Subscriber(), Subscriber()
        rt.connect_agent(name="a", languages=("en",), sub=a)
        rt.set_availability("a", "available")
        await asyncio.sleep(0.05)
        rt.connect_agent(name="b", languages=("en",), sub=b)
        rt.set_availability("b", "available")
        call(rt, live, "c1", "en")
        assert [e["event"] for e in events(a)].count("offer") == 1
        await asyncio.sleep(0.5)
        assert any(e["event"] == "offer" for e in events(b))  # timed out on a, offered to b, with no tick() by us
    finally:
        await rt.stop()
    assert rt.finals["c1"].state.value == "closed"  # stop() closes the queue: the call still gets its one state


async def test_a_typed_reply_is_held_to_the_configured_length_not_a_fixed_one():
    clock = Clock()
    live = LiveRegistry(recordings_dir=None, clock=clock)
    settings = PeopleSettings(acd=AcdSettings(), recordings=False, agent_transcription=False, reply_max_chars=40)
    rt = QueueRuntime(settings=settings, live=live, store=None, clock=clock)
    with pytest.raises(AcdError, match="40 characters"):
        await rt.reply("alice", "x" * 41)
    # Within the limit the length check passes and the next check speaks: this agent is on no call.
    with pytest.raises(AcdError, match="not on a call"):
        await rt.reply("alice", "x" * 40)


async def test_the_runtime_remembers_the_latest_outcomes_only():
    """A service that runs for months queues calls without end: the outcomes it keeps in memory are bounded (as
    many as the queue remembers, acd.final_history), the latest ones."""
    rt, live, clock = make(final_history=5)
    for i in range(12):
        call(rt, live, f"c{i}", "en")
        clock.t += 1
        rt.leave(f"c{i}", reason="hangup")
    assert list(rt.finals) == [f"c{i}" for i in range(7, 12)]
    assert all(rt.finals[c].state.value == "abandoned" for c in rt.finals)
