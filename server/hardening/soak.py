"""Soak: `callers` simultaneous calls for `duration_s` (each caller makes call after call of a few turns, speaking
in real time), the server's memory sampled all along. Verdicts: memory growth from warm (the first sample after
the first call of every caller) to the end, and errors (calls without an answer, error events, closes other than
1000, ERROR lines in the server's log).

`hotline bench soak --minutes 60` is the hour; tests/test_hardening_measure.py runs a bounded one. The models are
stand-ins (server/hardening/stubs.py): the run measures the service (sessions, store, consoles' taps, pools), not
model memory.
"""
from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

from server.hardening.harness import CallResult, logged_errors, realtime_call, start_server, stop_server, temporary_db


@dataclass
class SoakReport:
    seconds: float = 0.0
    calls: int = 0
    turns: int = 0
    errors: list[str] = field(default_factory=list)
    rss_mb: list[tuple[float, float]] = field(default_factory=list)  # (seconds since start, MB)
    warm_at_s: float = 0.0

    @property
    def growth_mb(self) -> float:
        warm = [mb for t, mb in self.rss_mb if t >= self.warm_at_s]
        return (warm[-1] - warm[0]) if len(warm) >= 2 else 0.0

    def summary(self) -> str:
        warm = [mb for t, mb in self.rss_mb if t >= self.warm_at_s] or [0.0]
        return (f"soak: {self.calls} calls, {self.turns} answered turns over {self.seconds:.0f} s; errors "
                f"{len(self.errors)}; server memory warm {warm[0]:.1f} MB -> end {warm[-1]:.1f} MB "
                f"(growth {self.growth_mb:+.1f} MB, max {max(warm):.1f} MB, {len(self.rss_mb)} samples)")


def run_soak(*, duration_s: float = 3600.0, callers: int = 4, sample_s: float = 10.0, seed: int = 4) -> SoakReport:
    rng = random.Random(seed)
    report = SoakReport()
    with temporary_db() as (db_url, tmp):
        server = start_server(db_url, tmp / "server.log")
        t0 = time.monotonic()
        first_done: set[int] = set()

        async def caller(k: int) -> None:
            while time.monotonic() - t0 < duration_s:
                result = CallResult()
                try:
                    await realtime_call(server.ws + "/ws/call", turns=rng.randint(2, 5), result=result)
                except Exception as exc:
                    report.errors.append(f"caller {k}: {type(exc).__name__}: {str(exc)[:120]}")
                report.calls += 1
                report.turns += len(result.answered)
                report.errors += [f"call {result.call_id}: {e}" for e in result.errors]
                if result.close_code != 1000:
                    report.errors.append(f"call {result.call_id}: closed with {result.close_code}")
                first_done.add(k)
                if len(first_done) == callers and not report.warm_at_s:
                    report.warm_at_s = time.monotonic() - t0

        async def sampler() -> None:
            while True:
                report.rss_mb.append((time.monotonic() - t0, server.rss_mb()))
                await asyncio.sleep(sample_s)

        async def main() -> None:
            sampling = asyncio.create_task(sampler())
            await asyncio.gather(*(caller(k) for k in range(callers)))
            report.rss_mb.append((time.monotonic() - t0, server.rss_mb()))
            sampling.cancel()
            await asyncio.gather(sampling, return_exceptions=True)

        try:
            asyncio.run(main())
        finally:
            report.seconds = time.monotonic() - t0
            stop_server(server)
        report.errors.extend(logged_errors(server))
    return report


def add_bench(bench_sub: Any) -> None:
    p = bench_sub.add_parser("soak", help="simultaneous calls for a long time: memory growth and errors")
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--callers", type=int, default=4)
    p.add_argument("--sample-s", type=float, default=10.0)

    def run(args: Any) -> int:
        report = run_soak(duration_s=args.minutes * 60, callers=args.callers, sample_s=args.sample_s)
        print(report.summary())
        for line in report.errors[:20]:
            print(f"  {line}")
        return 0 if not report.errors and report.growth_mb <= 50 else 1

    p.set_defaults(func=run)
