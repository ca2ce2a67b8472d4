"""Presence in Redis (server/cluster/presence.py): heartbeats with an expiry, and survivors closing a dead process's
calls as `dropped` (exactly once, within 10 s) and handing its agents to the lost-process hooks."""
from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis

from cluster_helpers import REDIS_URL, delete_prefix, migrated_store, unique_prefix
from server.cluster.presence import Presence
from server.settings import ClusterSettings
from server.store import Store
from server.store.models import utcnow

pytestmark = pytest.mark.redis

# A 2 s expiry: short for the test, long enough that a loaded machine does not miss a whole expiry of beats.
FAST = dict(heartbeat_interval_s=0.2, heartbeat_ttl_s=2.0, sweep_interval_s=0.2)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(request, tmp_path):
    s = await migrated_store(request, tmp_path, request.param)
    yield s
    await s.close()


@pytest.fixture
async def prefix():
    p = unique_prefix()
    yield p
    delete_prefix(REDIS_URL, p)


async def _presence(store: Store, prefix: str, process_id: str, **overrides) -> Presence:
    client = aioredis.Redis.from_url(REDIS_URL)
    return Presence(redis=client, store=store, process_id=process_id,
                    settings=ClusterSettings(**{**FAST, **overrides}), prefix=prefix + ":cluster:")


async def _die(p: Presence) -> None:
    """kill -9 as the others see it: the loops stop, nothing is cleaned up."""
    for task in p._tasks:
        task.cancel()
    await asyncio.gather(*p._tasks, return_exceptions=True)
    await p.redis.aclose()


async def test_a_dead_process_calls_are_dropped_once_and_its_agents_handed_back(store, prefix):
    a = await _presence(store, prefix, "proc-a")
    b = await _presence(store, prefix, "proc-b")
    c = await _presence(store, prefix, "proc-c")
    lost: list[tuple[str, str, list[str]]] = []
    for p in (b, c):
        async def hook(dead, agents, who=p.process_id):
            lost.append((who, dead, sorted(agents)))
        p.on_process_lost.append(hook)
    for p in (a, b, c):
        await p.start()
    await a.agent_connected("mei")
    await a.agent_connected("li")
    assert await b.agent_process("mei") == "proc-a"
    assert await b.live_processes() >= {"proc-a", "proc-b", "proc-c"}
    # Calls held by A: one talking, one queued, one already over; and one held by B.
    store.process_id = "proc-a"
    for cid in ("a-talking", "a-queued", "a-over"):
        await store.create_call(call_id=cid, protocol="native")
    await store.update_call("a-queued", state="queued", queued_at=utcnow())
    await store.end_call("a-over", state="completed", reason="hangup")
    store.process_id = "proc-b"
    await store.create_call(call_id="b-talking", protocol="native")

    await asyncio.sleep(2.1)  # B and C have been healthy for a full expiry: they may sweep
    t0 = time.monotonic()
    await _die(a)
    while not lost and time.monotonic() - t0 < 10:
        await asyncio.sleep(0.05)
    took = time.monotonic() - t0
    assert lost, "no survivor noticed the dead process within 10 s"
    assert took < 10
    await asyncio.sleep(0.6)  # both survivors have swept at least twice more
    assert [x[1:] for x in lost] == [("proc-a", ["li", "mei"])], "exactly one survivor claims a dead process"
    for cid in ("a-talking", "a-queued"):
        call = await store.get_call(cid)
        assert (call.state, call.reason) == ("dropped", "process_lost") and call.ended_at is not None
    over = await store.get_call("a-over")
    assert (over.state, over.reason) == ("completed", "hangup"), "a finished call keeps its one final state"
    assert (await store.get_call("b-talking")).ended_at is None, "a live process's call is left alone"
    assert await b.agent_process("mei") is None  # the dead console's heartbeat expired
    assert "proc-a" not in await b.live_processes()
    # The process's own late write cannot give a second final state.
    assert await store.end_call("a-talking", state="completed", reason="hangup") is False
    for p in (b, c):
        await p.stop()
        await p.redis.aclose()


async def test_no_sweeping_until_healthy_for_a_full_expiry(store, prefix):
    """Back from a Redis outage every heartbeat has lapsed: sweeping at once would take live processes for dead."""
    a = await _presence(store, prefix, "proc-a")
    b = await _presence(store, prefix, "proc-b")
    store.process_id = "proc-a"
    await store.create_call(call_id="a-call", protocol="native")
    await a.start()  # A is alive and keeps beating
    await b.beat()
    await a.redis.delete(f"{prefix}:cluster:proc:proc-a")  # as if A's key had expired during the outage
    assert await b.sweep() == [], "B only just became healthy: it must not sweep yet"
    await asyncio.sleep(2.05)  # A has beaten again meanwhile
    await b.beat()
    assert await b.sweep() == []
    assert (await store.get_call("a-call")).ended_at is None
    await a.stop()
    for p in (a, b):
        await p.redis.aclose()


async def test_a_clean_stop_leaves_nothing_to_sweep(store, prefix):
    a = await _presence(store, prefix, "proc-a")
    await a.start()
    await a.agent_connected("mei")
    await a.stop()
    await a.redis.aclose()
    check = aioredis.Redis.from_url(REDIS_URL)
    assert [k async for k in check.scan_iter(match=prefix + "*")] == []
    await check.aclose()


async def test_orphans_of_processes_gone_before_start_are_closed(store, prefix):
    a = await _presence(store, prefix, "proc-new")
    await a.beat()
    store.process_id = "proc-gone"
    await store.create_call(call_id="orphan", protocol="native")
    started = utcnow()
    store.process_id = "proc-other-new"
    await store.create_call(call_id="fresh", protocol="native")  # created after this process started: not touched
    assert await a.close_orphans(started_at=started) >= 1
    assert (await store.get_call("orphan")).state == "dropped"
    assert (await store.get_call("fresh")).ended_at is None
    await a.redis.aclose()


def test_heartbeat_expiry_must_cover_two_beats():
    with pytest.raises(ValueError, match="twice"):
        ClusterSettings(heartbeat_interval_s=1.0, heartbeat_ttl_s=1.5)
