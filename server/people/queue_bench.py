"""`hotline bench queue`: agent-queue decisions per second and decision time, in-process vs Redis, side by side.

Each worker plays callers and agents on the queue: it signs in two agents, keeps a few calls of its own waiting
(enqueue, hang up the oldest), accepts the offers it sees for its agents, ends those calls and finishes wrap-up,
and ticks now and then; every one of these is one decision (load, decide, save). Rows:
    in-process   one worker on InProcessQueueStore: the baseline, the same decision code without Redis
    redis x1     one worker process on RedisQueueStore
    redis xN     N worker processes (own connections) deciding on the same queue at once: conflicts are retried
Figures are per decision call, retries included; timing on a busy machine is noisy: compare rows of one run.
"""
from __future__ import annotations

import argparse
import multiprocessing
import random
import time
import uuid
from dataclasses import dataclass
from typing import Any

TARGET_RATE = 500.0  # decisions/s on Redis
TARGET_P95_MS = 10.0


@dataclass
class WorkerResult:
    latencies: list[float]
    started: float
    ended: float
    conflicts: int
    refused: int


def _work(make_store: Any, worker: int, decisions: int, seed: int) -> WorkerResult:
    from routing.queue import AcdError, CallConnected, Offer, Party

    store = make_store()
    rng = random.Random(seed)
    agents = [f"w{worker}-a0", f"w{worker}-a1"]
    waiting: list[str] = []
    offers: dict[str, str] = {}  # agent -> call offered to it (seen in this worker's decisions)
    on_call: dict[str, str] = {}
    wrap_up: list[str] = []
    latencies: list[float] = []
    refused = 0
    n = 0

    def decide(event: str, *args: Any, **kwargs: Any) -> None:
        nonlocal refused
        t0 = time.perf_counter()
        try:
            decision = store.tick(time.time()) if event == "tick" else store.decide(event, *args, now=time.time(), **kwargs)
        except AcdError:
            refused += 1
            decision = None
        latencies.append(time.perf_counter() - t0)
        for action in decision.actions if decision is not None else ():
            if isinstance(action, Offer) and action.agent_id in agents:
                offers[action.agent_id] = action.call_id
            elif isinstance(action, CallConnected) and action.agent_id in agents:
                on_call[action.agent_id] = action.call_id

    started = time.time()
    decide("agent_login", agents[0], ["en"])
    decide("agent_login", agents[1], ["en", "zh"])
    while len(latencies) < decisions:
        n += 1
        if offers:
            agent, call_id = offers.popitem()
            decide("accept", agent, call_id)
        elif on_call and rng.random() < 0.3:
            agent, call_id = on_call.popitem()
            if call_id in waiting:
                waiting.remove(call_id)
            decide("end_call", agent, call_id)
            wrap_up.append(agent)
        elif wrap_up and rng.random() < 0.5:
            decide("finish_wrap_up", wrap_up.pop())
        elif n % 7 == 0:
            decide("tick")
        elif len(waiting) < 6:
            call_id = f"w{worker}-c{n}-{seed}"
            waiting.append(call_id)
            decide("enqueue", call_id, rng.choice(["en", "zh"]), info=Party(process=store.process_id, topic="bench"))
        else:
            decide("hangup", waiting.pop(0))
    ended = time.time()
    conflicts = getattr(store, "conflicts", 0)
    store.close()
    return WorkerResult(latencies=latencies, started=started, ended=ended, conflicts=conflicts, refused=refused)


class _RedisFactory:
    """Picklable: each worker process builds its own store (its own connections)."""

    def __init__(self, url: str, prefix: str, worker: int) -> None:
        self.url, self.prefix, self.worker = url, prefix, worker

    def __call__(self) -> Any:
        from routing.queue import AcdSettings
        from server.people.queue_redis import RedisQueueStore

        return RedisQueueStore.connect(url=self.url, prefix=self.prefix, settings=AcdSettings(),
                                       process_id=f"bench-{self.worker}")


def _process_main(factory: Any, worker: int, decisions: int, barrier: Any, out: Any) -> None:
    barrier.wait()
    try:
        out.put(_work(factory, worker, decisions, seed=worker))
    except Exception as exc:  # reported by the parent, which would otherwise wait for this worker's figures
        out.put(f"worker {worker}: {type(exc).__name__}: {exc}")


def _row(name: str, processes: int, results: list[WorkerResult]) -> dict[str, Any]:
    from server.metrics import percentile

    latencies = [x for r in results for x in r.latencies]
    wall = max(r.ended for r in results) - min(r.started for r in results)
    return {"mode": name, "processes": processes, "decisions": len(latencies),
            "rate": len(latencies) / wall if wall > 0 else float("inf"),
            "p50_ms": percentile(latencies, 50) * 1000, "p95_ms": percentile(latencies, 95) * 1000,
            "conflicts": sum(r.conflicts for r in results), "refused": sum(r.refused for r in results)}


def run_bench(*, redis_url: str | None, processes: int, decisions: int) -> list[dict[str, Any]]:
    from routing.queue import AcdSettings, InProcessQueueStore

    rows = [_row("in-process", 1, [_work(lambda: InProcessQueueStore(settings=AcdSettings()), 0, decisions, 0)])]
    if redis_url is None:
        return rows
    from server.people.queue_redis import RedisQueueStore

    ctx = multiprocessing.get_context("spawn")
    for n in sorted({1, processes}):
        prefix = f"hotline-bench-{uuid.uuid4().hex[:8]}"
        barrier, out = ctx.Barrier(n), ctx.Queue()
        procs = [ctx.Process(target=_process_main, args=(_RedisFactory(redis_url, prefix, w), w, decisions // n,
                                                          barrier, out)) for w in range(n)]
        try:
            for p in procs:
                p.start()
            results = [out.get(timeout=600) for _ in procs]
            failed = [r for r in results if isinstance(r, str)]
            if failed:
                raise RuntimeError("; ".join(failed))
        finally:
            for p in procs:
                p.join(timeout=10)
            RedisQueueStore(url=redis_url, prefix=prefix, settings=AcdSettings(), process_id="bench").delete_all()
        rows.append(_row("redis", n, results))
    return rows


def print_rows(rows: list[dict[str, Any]], out: Any) -> None:
    print(f"{'store':<11} {'processes':>9} {'decisions':>9} {'decisions/s':>11} {'p50 ms':>7} {'p95 ms':>7} "
          f"{'conflicts':>9} {'refused':>7}", file=out)
    for r in rows:
        print(f"{r['mode']:<11} {r['processes']:>9} {r['decisions']:>9} {r['rate']:>11.0f} {r['p50_ms']:>7.2f} "
              f"{r['p95_ms']:>7.2f} {r['conflicts']:>9} {r['refused']:>7}", file=out)
    redis_rows = [r for r in rows if r["mode"] == "redis"]
    if not redis_rows:
        print("redis: not measured (give --redis redis://HOST:6379/N or set HOTLINE_REDIS_URL)", file=out)
        return
    ok = all(r["rate"] >= TARGET_RATE and r["p95_ms"] <= TARGET_P95_MS for r in redis_rows)
    print(f"target on Redis: >= {TARGET_RATE:.0f} decisions/s and p95 <= {TARGET_P95_MS:.0f} ms: "
          f"{'met' if ok else 'NOT met'} (refused = errors the queue raised, e.g. an offer withdrawn before accept)",
          file=out)


def _bench_queue(args: argparse.Namespace) -> int:
    import sys

    url = args.redis
    if url is None:
        url = args.load_settings().redis_url
    rows = run_bench(redis_url=url, processes=args.processes, decisions=args.decisions)
    print_rows(rows, sys.stdout)
    return 0


def add_commands(sub: Any, bench_sub: Any) -> None:
    bench = bench_sub.add_parser("queue", help="agent-queue decisions per second and p95 decision time: in-process vs "
                                              "Redis with 1 and N processes")
    bench.add_argument("--redis", help="Redis URL (default: settings redis_url / HOTLINE_REDIS_URL); keys under a "
                                       "fresh prefix, deleted afterwards")
    bench.add_argument("--processes", type=int, default=3, help="competing processes for the last row (default 3)")
    bench.add_argument("--decisions", type=int, default=3000, help="decisions per row (default 3000)")
    bench.set_defaults(func=_bench_queue)
