"""The agent queue shared through Redis (server/people/queue_redis.py) by competing clients, each with its own
connection, as several `hotline serve` processes would be.

- The 1,000-call simulation of tests/test_routing_acd_sim.py, with its independent Observer and every invariant,
  runs against the Redis store with 3 clients: each event goes to the next client while the other two tick at the
  same moment, and at every deadline all 3 tick at once (a barrier starts them together), so exactly one must
  claim it. The same simulation FAILS with a store whose commit skips the version check (a plain write).
- Concurrent enqueues from 3 clients lose no call and offer no agent twice; the broken store does both.
- Two runtimes (two "processes") on one queue: an offer reaches the console on the other process, accept and
  hang-up are carried out on both sides, and a time-out set by a process that died is fired by the survivor.
"""
from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from routing.queue import EPS, AcdSettings, CallConnected, Decision, Offer, Party
from routing.queue.codec import final_to_dict
from server.people.queue_redis import RedisQueueStore
from test_routing_acd_sim import SETTINGS, simulate

pytestmark = pytest.mark.redis


class PlainWriteStore(RedisQueueStore):
    """Deliberately broken: writes the decision without checking that the state is still the one it read."""

    def _commit(self, version, doc, due, finals, entry, absent=(), *, claim_turn=False):  # type: ignore[no-untyped-def]
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(self.keys[0], mapping={"version": version + 1, "doc": doc, "due": "" if due is None else repr(due)})
        for final in finals:
            pipe.hset(self.keys[1], final.call_id, json.dumps(final_to_dict(final)))
        pipe.execute()
        return version + 1


def clients(cls: type[RedisQueueStore], url: str, prefix: str, n: int = 3, settings: AcdSettings = SETTINGS):
    return [cls(url=url, prefix=prefix, settings=settings, process_id=f"p{i}") for i in range(n)]


class CompetingClients:
    """The Acd's interface (what simulate() calls) over several store clients that race each other."""

    def __init__(self, stores: list[RedisQueueStore]) -> None:
        self.stores = stores
        self.turn = 0
        self.pool = ThreadPoolExecutor(len(stores))
        self.state = type("LastNow", (), {"last_now": None})()
        self.concurrent_ticks = 0

    def _race(self, jobs: list[Any]) -> list[Any]:
        """Run the jobs at once (a barrier starts them together); results in job order, errors re-raised."""
        barrier = threading.Barrier(len(jobs))

        def run(job: Any) -> Any:
            barrier.wait()
            return job()

        return [f.result() for f in [self.pool.submit(run, job) for job in jobs]]

    def _seen(self, decisions: list[Decision | None]) -> list[Any]:
        """The actions of the decisions, in the order they were committed."""
        done = sorted((d for d in decisions if d is not None and d.actions), key=lambda d: d.version)
        for d in done:
            self.state.last_now = d.at if self.state.last_now is None else max(self.state.last_now, d.at)
        return [a for d in done for a in d.actions]

    def __getattr__(self, method: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> list[Any]:
            *args, now = args
            store = self.stores[self.turn % len(self.stores)]
            others = [s for s in self.stores if s is not store]
            self.turn += 1
            deadline = store.next_deadline()
            if deadline is not None and now >= deadline - EPS:
                # Something is due at this very moment: the event itself must act on it, alone (the simulation
                # expects e.g. an accept exactly at the deadline to be refused as expired, not as withdrawn).
                return self._seen([store.decide(method, *args, now=now, **kwargs)])
            results = self._race([lambda: store.decide(method, *args, now=now, **kwargs)]
                                 + [lambda s=s: s.tick(now) for s in others])
            return self._seen(results)

        return call

    def tick(self, now: float) -> list[Any]:
        self.concurrent_ticks += 1
        return self._seen(self._race([lambda s=s: s.tick(now) for s in self.stores]))

    def close(self, now: float) -> list[Any]:
        return self._seen([self.stores[0].decide("close", now=now)])

    def snapshot(self, now: float) -> Any:
        return self.stores[self.turn % len(self.stores)].view(now).snapshot

    def next_deadline(self) -> float | None:
        return self.stores[0].next_deadline()

    def outcome(self, call_id: str) -> Any:
        return self.stores[1].outcome(call_id)

    def shutdown(self) -> None:
        self.pool.shutdown()
        for s in self.stores:
            s.close()


def test_the_simulation_holds_with_three_competing_clients(redis_url, redis_prefix):
    queue = CompetingClients(clients(RedisQueueStore, redis_url, redis_prefix))
    try:
        obs = simulate(1, queue=queue)
    finally:
        queue.shutdown()
    stats = obs.stats
    for key in ("answered", "abandoned", "transferred_back_to_bot", "timeouts", "set_away_for_misses",
                "offers_other_language", "announcements", "late_hangups", "refused", "requeued", "late_accepts"):
        assert stats.get(key, 0) > 0, (key, stats)
    assert len(obs.finals) == 1000
    assert queue.concurrent_ticks > 1000  # deadlines really were raced for
    assert sum(s.conflicts for s in queue.stores) > 0, "the clients never collided: the race was not exercised"


def test_the_simulation_catches_a_store_without_the_atomic_step(redis_url, redis_prefix):
    queue = CompetingClients(clients(PlainWriteStore, redis_url, redis_prefix))
    try:
        with pytest.raises(AssertionError):
            simulate(1, queue=queue)
    finally:
        queue.shutdown()


def enqueue_race(stores: list[RedisQueueStore], calls_each: int = 60) -> list[str]:
    """4 agents, then every client enqueues its own calls at once. Returns the problems found."""
    now = time.time()
    for i in range(4):
        stores[0].decide("agent_login", f"a{i}", ["en", "zh"], now=now)
    decisions: list[Decision] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(stores))

    def run(k: int, store: RedisQueueStore) -> None:
        barrier.wait()
        for j in range(calls_each):
            d = store.decide("enqueue", f"c{k}-{j}", "en" if j % 2 else "zh", now=time.time(),
                             info=Party(process=store.process_id))
            with lock:
                decisions.append(d)

    threads = [threading.Thread(target=run, args=(k, s)) for k, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    problems = []
    view = stores[0].view(time.time())
    queued = {v.call_id for v in view.snapshot.queue}
    expected = {f"c{k}-{j}" for k in range(len(stores)) for j in range(calls_each)}
    if queued != expected:
        problems.append(f"{len(expected - queued)} calls lost")
    offers = [a for d in decisions for a in d.actions if isinstance(a, Offer)]
    if len(offers) != 4 or len({o.agent_id for o in offers}) != 4:
        problems.append(f"{len(offers)} offers to {len({o.agent_id for o in offers})} agents")
    versions = sorted(d.version for d in decisions)
    if versions != list(range(5, 5 + len(expected))):
        problems.append("versions not consecutive: a decision was written over another")
    return problems


def test_concurrent_decisions_lose_nothing(redis_url, redis_prefix):
    stores = clients(RedisQueueStore, redis_url, redis_prefix)
    assert enqueue_race(stores) == []
    assert sum(s.conflicts for s in stores) > 0  # they did collide, and the version check resolved it


def test_concurrent_decisions_without_the_atomic_step_lose_calls(redis_url, redis_prefix):
    assert enqueue_race(clients(PlainWriteStore, redis_url, redis_prefix))


def test_final_states_are_kept_apart_and_bounded(redis_url, redis_prefix):
    settings = AcdSettings(final_history=5)
    store = RedisQueueStore(url=redis_url, prefix=redis_prefix, settings=settings, process_id="p")
    now = time.time()
    for i in range(8):
        store.decide("enqueue", f"c{i}", "en", now=now)
        store.decide("hangup", f"c{i}", now=now)
    assert store.outcome("c0") is None and store.outcome("c7").state.value == "abandoned"
    assert store.client.llen(store.keys[2]) == 5
    # A late hang-up of a remembered call changes nothing and writes nothing.
    version = store.version()
    assert store.decide("hangup", "c7", now=now).actions == () and store.version() == version


# --- two runtimes, one queue ----------------------------------------------------------------------------------


class Recorded:
    def __init__(self) -> None:
        self.connected: list[tuple[str, bool, bool]] = []
        self.ended: list[str] = []

    def connected_(self, action: CallConnected, *, caller_here: bool, agent_here: bool) -> None:
        self.connected.append((action.call_id, caller_here, agent_here))

    def ended_(self, call_id: str, agent_id: str | None) -> None:
        self.ended.append(call_id)


def runtime(url: str, prefix: str, name: str, acd: AcdSettings, remote: Any) -> Any:
    from server.people.live import LiveRegistry
    from server.people.queue_runtime import QueueRuntime
    from server.settings import PeopleSettings

    live = LiveRegistry(recordings_dir=None)
    store = RedisQueueStore(url=url, prefix=prefix, settings=acd, process_id=name)
    remote_calls = type("R", (), {"connected": remote.connected_, "ended": remote.ended_})()
    return QueueRuntime(settings=PeopleSettings(acd=acd, recordings=False, agent_transcription=False), live=live,
                        queue_store=store, queue_clock=time.time, remote=remote_calls), live


async def until(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_offer_accept_and_hangup_across_two_processes(redis_url, redis_prefix):
    from server.people.live import Subscriber
    from test_people_queue_runtime import FakeSession, events

    acd = AcdSettings(offer_timeout_s=30)
    rec_a, rec_b = Recorded(), Recorded()
    rt_a, live_a = runtime(redis_url, redis_prefix, "A", acd, rec_a)
    rt_b, live_b = runtime(redis_url, redis_prefix, "B", acd, rec_b)
    rt_a.start()
    rt_b.start()
    seen: list[dict[str, Any]] = []
    try:
        console = Subscriber()
        rt_b.connect_agent(name="mei", languages=("zh",), sub=console)
        rt_b.set_availability("mei", "available")
        session = FakeSession("c1")
        live_a.attach(session)
        rt_a.enqueue(call_id="c1", language="zh", topic="work_permit")  # the caller is on A

        def offered() -> bool:
            seen.extend(events(console))
            return any(e["event"] == "offer" for e in seen)

        await until(offered)
        offer = next(e for e in seen if e["event"] == "offer")
        assert offer["call_id"] == "c1" and offer["topic"] == "work_permit" and offer["language"] == "zh"
        rt_b.accept("mei", "c1")  # on B
        await until(lambda: ("c1", True, False) in rec_a.connected)  # A: the caller's side
        assert ("c1", False, True) in rec_b.connected  # B: the console's side
        assert ("agent_connected", {"agent": "mei", "wait_s": pytest.approx(0, abs=5)}) in session.recorder.events
        rt_a.leave("c1")  # the caller hangs up on A
        await until(lambda: any(e["event"] == "call.ended" for e in (seen.extend(events(console)) or seen)))
        await until(lambda: "c1" in rec_b.ended and "c1" in rec_a.ended)
        assert rt_b.agent_state("mei") == "wrap_up"
        assert rt_a.queue_store.outcome("c1").state.value == "answered"
    finally:
        await rt_a.stop()
        await rt_b.stop()
        rt_a.queue_store.close()
        rt_b.queue_store.close()


async def test_a_timeout_set_by_a_dead_process_fires_on_the_survivor(redis_url, redis_prefix):
    from server.people.live import Subscriber
    from test_people_queue_runtime import FakeSession, events

    acd = AcdSettings(offer_timeout_s=0.3, max_missed_offers=5)
    rt_a, live_a = runtime(redis_url, redis_prefix, "A", acd, Recorded())
    rt_b, _ = runtime(redis_url, redis_prefix, "B", acd, Recorded())
    console = Subscriber()
    # A is never started (no ticker, no log follower): it decides, then is as good as dead.
    rt_a.connect_agent(name="ann", languages=("en",), sub=console)
    rt_a.set_availability("ann", "available")
    live_a.attach(FakeSession("c1"))
    rt_a.enqueue(call_id="c1", language="en", topic="t")
    assert [e["event"] for e in events(console)].count("offer") == 1
    rt_b.start()  # B's ticker claims the deadline A set
    try:
        await until(lambda: rt_b.queue_store.view(time.time()).snapshot.agents[0].missed_offers >= 1, timeout=3.0)
    finally:
        await rt_b.stop()
        rt_a.queue_store.close()
        rt_b.queue_store.close()


async def test_a_survivor_takes_over_a_dead_process(redis_url, redis_prefix):
    from server.people.live import Subscriber
    from test_people_queue_runtime import FakeSession

    acd = AcdSettings(offer_timeout_s=30)
    rt_a, live_a = runtime(redis_url, redis_prefix, "A", acd, Recorded())
    rt_b, _ = runtime(redis_url, redis_prefix, "B", acd, Recorded())
    try:
        rt_a.connect_agent(name="ann", languages=("en",), sub=Subscriber())
        rt_a.set_availability("ann", "available")
        for call_id in ("c1", "c2"):
            live_a.attach(FakeSession(call_id))
            rt_a.enqueue(call_id=call_id, language="en", topic="t")  # c1 rings ann, c2 waits
        assert rt_b.take_over("A") == (["c1", "c2"], ["ann"])
        store = rt_b.queue_store
        assert [store.outcome(c).state.value for c in ("c1", "c2")] == ["abandoned", "abandoned"]
        assert rt_b.agent_state("ann") == "offline"
        assert rt_b.take_over("A") == ([], ["ann"])  # again (another survivor): changes nothing
    finally:
        await rt_a.stop()
        await rt_b.stop()
        rt_a.queue_store.close()
        rt_b.queue_store.close()


async def test_an_app_with_redis_url_shares_its_queue(redis_url, redis_prefix, tmp_path):
    from fakes import fake_components
    from server.app import create_app
    from server.settings import Settings

    settings = Settings(db_url=f"sqlite+aiosqlite:///{tmp_path / 'h.db'}", redis_url=redis_url, redis_prefix=redis_prefix)
    app = create_app(settings, components=fake_components(), configure_logs=False)
    runtime = app.state.people.queue
    assert isinstance(runtime.queue_store, RedisQueueStore) and runtime.shared
    other = RedisQueueStore(url=redis_url, prefix=redis_prefix, settings=AcdSettings(), process_id="other")
    async with app.router.lifespan_context(app):
        await until(lambda: app.state.context is not None, timeout=10)
        assert app.state.context.queue is runtime and runtime._follower is not None
        other.decide("agent_login", "zoe", ["zh"], now=time.time())  # another process signs an agent in
        await until(lambda: any(a["name"] == "zoe" for a in runtime.queue_view()["agents"]))
    other.close()
