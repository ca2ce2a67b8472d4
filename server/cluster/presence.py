"""Presence: each process and each agent console it holds has a heartbeat key with an expiry in Redis; every
process sweeps for processes whose heartbeat has expired and closes what they held.

Keys (all under `<redis_prefix>:cluster:`):
    proc:<id>            heartbeat of a process (value: its start time), expires after heartbeat_ttl_s
    procs                set of process ids that registered: a member without its heartbeat key is dead
    agent:<user id>      heartbeat of an agent console: the id of the process that holds it, same expiry
    proc:<id>:agents     set of the agents a process holds (no expiry: read by whoever sweeps the process)

When a process dies, any survivor that notices first (1) records the dead process's open calls as `dropped`,
with a conditional UPDATE that only changes calls still open, so several sweepers (or the process itself, were it
only paused) still leave exactly one final state; (2) claims the death with SREM on `procs`, which exactly one
process wins; (3) the winner runs the lost-process hooks (the agent queue puts the dead process's agents' offers
back) and deletes its keys. The database write comes before the claim: a sweeper that dies in between leaves the
claim to the next one, and the calls are already closed.

A process that lost Redis for longer than the expiry must not, when Redis returns, take every other process for
dead (their heartbeats also lapsed): a process sweeps only after its own heartbeat has been healthy for a full
expiry, by which time every live process has beaten again.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
import time
from typing import Any, Awaitable, Callable

from server.store.db import Store
from server.tasks import cancel_and_wait

log = logging.getLogger("hotline.cluster")

LostHook = Callable[[str, list[str]], Awaitable[None]]  # (dead process id, ids of the agents it held)


class Presence:
    def __init__(self, *, redis: Any, store: Store, process_id: str, settings: Any, prefix: str,
                 clock: Callable[[], float] = time.monotonic, beat_url: str | None = None) -> None:
        self.redis = redis
        self.store = store
        self.process_id = process_id
        self.settings = settings  # ClusterSettings
        self.clock = clock
        self.prefix = prefix  # <redis_prefix>:cluster:
        self.agents: set[str] = set()  # agent consoles connected to this process
        self.on_process_lost: list[LostHook] = []
        self.redis_ok = False
        self.redis_error: str | None = "not started"
        self._healthy_since: float | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.swept: list[str] = []  # processes this one claimed (tests, logs)
        # With a URL the heartbeat runs in a thread of its own (a synchronous client): a busy event loop (model
        # loading, a burst of calls on 2 cores) must not make the others take this process for dead. Measured: with
        # the beat on the loop, two processes starting their models at a load average of 20 missed a 4 s expiry
        # and dropped each other's calls (tests/test_cluster_processes.py).
        self.beat_url = beat_url
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._failures = 0
        self._suspects: set[str] = set()  # processes whose heartbeat was missing at the last sweep

    # ------------------------------------------------------------ keys
    def _k(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    @property
    def _ttl_ms(self) -> int:
        return int(self.settings.heartbeat_ttl_s * 1000)

    # ------------------------------------------------------------ life
    async def start(self) -> None:
        """Beat once (if Redis answers) and start the heartbeat and sweeper loops; never raises for Redis."""
        await self.beat()
        self._tasks = [asyncio.create_task(self._loop(self.sweep, self.settings.sweep_interval_s), name="sweeper")]
        if self.beat_url is not None:
            self._thread = threading.Thread(target=self._beat_thread, name="cluster-heartbeat", daemon=True)
            self._thread.start()
        else:
            self._tasks.append(asyncio.create_task(self._loop(self.beat, self.settings.heartbeat_interval_s),
                                                   name="heartbeat"))

    async def stop(self) -> None:
        """A clean exit says so at once: the survivors need not wait for the expiry (nothing to sweep: this
        process closed its own calls)."""
        await cancel_and_wait(*self._tasks)
        self._stopping.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5)
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.srem(self._k("procs"), self.process_id)
                pipe.delete(self._k("proc", self.process_id), self._k("proc", self.process_id, "agents"))
                for agent in self.agents:
                    pipe.delete(self._k("agent", agent))
                await pipe.execute()
        except Exception:  # noqa: BLE001 - Redis gone: the keys expire by themselves
            pass

    async def _loop(self, step: Callable[[], Awaitable[Any]], interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await step()
            except asyncio.CancelledError:
                raise
            except Exception:  # a failed sweep is tried again next interval; the loop never dies
                log.exception("cluster step failed", extra={"step": getattr(step, "__name__", "?")})

    # ------------------------------------------------------------ heartbeats
    def _fill(self, pipe: Any) -> None:
        pipe.set(self._k("proc", self.process_id), str(time.time()), px=self._ttl_ms)
        pipe.sadd(self._k("procs"), self.process_id)
        for agent in list(self.agents):
            pipe.set(self._k("agent", agent), self.process_id, px=self._ttl_ms)

    def _beaten(self, error: BaseException | None) -> bool:
        """Record a heartbeat's result. Redis counts as unreachable after two failed beats in a row (one slow
        answer on a loaded machine is not an outage); sweeping waits a full expiry after any failure."""
        if error is not None:
            self._failures += 1
            self._healthy_since = None
            if self._failures >= 2 and self.redis_ok:
                log.error("redis unreachable", extra={"error": type(error).__name__})
            if self._failures >= 2 or not self.redis_ok:
                self.redis_ok, self.redis_error = False, type(error).__name__
            return False
        self._failures = 0
        if self._healthy_since is None:
            if not self.redis_ok:
                log.info("redis reachable")
            self._healthy_since = self.clock()
        self.redis_ok, self.redis_error = True, None
        return True

    async def beat(self) -> bool:
        """Refresh this process's heartbeat and its agents' (on the event loop); returns whether Redis answered."""
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                self._fill(pipe)
                await asyncio.wait_for(pipe.execute(), self.settings.probe_timeout_s)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - reported by /readyz; new calls are refused meanwhile
            return self._beaten(exc)
        return self._beaten(None)

    def _beat_thread(self) -> None:
        import redis as sync_redis

        timeout = self.settings.probe_timeout_s
        client = sync_redis.Redis.from_url(self.beat_url, socket_timeout=timeout, socket_connect_timeout=timeout)
        try:
            while not self._stopping.wait(self.settings.heartbeat_interval_s):
                try:
                    with client.pipeline(transaction=True) as pipe:
                        self._fill(pipe)
                        pipe.execute()
                except Exception as exc:  # noqa: BLE001
                    self._beaten(exc)
                else:
                    self._beaten(None)
        finally:
            client.close()

    async def agent_connected(self, agent_id: str) -> None:
        self.agents.add(agent_id)
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.set(self._k("agent", agent_id), self.process_id, px=self._ttl_ms)
                pipe.sadd(self._k("proc", self.process_id, "agents"), agent_id)
                await pipe.execute()
        except Exception:  # noqa: BLE001 - the next heartbeat writes it
            pass

    async def agent_disconnected(self, agent_id: str) -> None:
        self.agents.discard(agent_id)
        try:
            # Only this process's claim on the agent is removed: the console may already be on another process.
            if await self.redis.get(self._k("agent", agent_id)) in (self.process_id, self.process_id.encode()):
                await self.redis.delete(self._k("agent", agent_id))
            await self.redis.srem(self._k("proc", self.process_id, "agents"), agent_id)
        except Exception:  # noqa: BLE001 - the key expires by itself
            pass

    async def live_processes(self) -> set[str]:
        members = [m.decode() if isinstance(m, bytes) else m for m in await self.redis.smembers(self._k("procs"))]
        if not members:
            return set()
        alive = await self.redis.mget([self._k("proc", m) for m in members])
        return {m for m, beat in zip(members, alive) if beat is not None}

    async def agent_process(self, agent_id: str) -> str | None:
        """The process whose console heartbeat holds this agent now, or None."""
        value = await self.redis.get(self._k("agent", agent_id))
        return value.decode() if isinstance(value, bytes) else value

    # ------------------------------------------------------------ the sweeper
    def _may_sweep(self) -> bool:
        return (self.redis_ok and self._healthy_since is not None
                and self.clock() - self._healthy_since >= self.settings.heartbeat_ttl_s)

    async def sweep(self) -> list[str]:
        """Close what dead processes held; returns the processes this call claimed."""
        if not self._may_sweep():
            self._suspects = set()  # what was missing before this process's own outage proves nothing now
            return []
        members = [m.decode() if isinstance(m, bytes) else m for m in await self.redis.smembers(self._k("procs"))]
        others = [m for m in members if m != self.process_id]
        if not others:
            return []
        beats = await self.redis.mget([self._k("proc", m) for m in others])
        missing = {m for m, beat in zip(others, beats) if beat is None}
        # Dead only when missing at two sweeps in a row (a sweep interval apart): one more second against taking a
        # process that is merely slow for dead, which would drop calls that are still talking.
        confirmed, self._suspects = missing & self._suspects, missing - (missing & self._suspects)
        claimed: list[str] = []
        for dead in sorted(confirmed):
            dropped = await self.store.drop_calls_of(dead, reason="process_lost")
            if not await self.redis.srem(self._k("procs"), dead):
                continue  # another survivor claimed it
            agents = [a.decode() if isinstance(a, bytes) else a
                      for a in await self.redis.smembers(self._k("proc", dead, "agents"))]
            log.warning("process lost: its calls closed as dropped",
                        extra={"process_id": dead, "calls": len(dropped), "agents": len(agents)})
            for hook in self.on_process_lost:
                try:
                    await hook(dead, agents)
                except Exception:  # noqa: BLE001 - one hook's failure must not stop the others
                    log.exception("lost-process hook failed")
            await self.redis.delete(self._k("proc", dead, "agents"))
            claimed.append(dead)
            self.swept.append(dead)
        return claimed

    async def close_orphans(self, *, started_at: dt.datetime) -> int:
        """At start-up: calls left open by processes that are gone (all of them at once, or before Redis knew)."""
        return await self.store.close_orphans(live=await self.live_processes() | {self.process_id}, before=started_at)
