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
import os
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from server.hardening.harness import CallResult, logged_errors, realtime_call, start_server, stop_server, temporary_db


@dataclass
class SoakReport:
    seconds: float = 0.0
    calls: int = 0
    turns: int = 0
    errors: list[str] = field(default_factory=list)
    rss_mb: list[tuple[float, float]] = field(default_factory=list)  # (seconds since start, MB)
    calls_at: list[int] = field(default_factory=list)  # calls finished at each sample of rss_mb
    warm_at_s: float = 0.0

    @property
    def growth_mb(self) -> float:
        warm = [mb for t, mb in self.rss_mb if t >= self.warm_at_s]
        return (warm[-1] - warm[0]) if len(warm) >= 2 else 0.0

    def _warm(self) -> list[tuple[float, float, int]]:
        return [(t, mb, n) for (t, mb), n in zip(self.rss_mb, self.calls_at) if t >= self.warm_at_s]

    @property
    def slope(self) -> tuple[float, float]:
        """Least-squares growth over the warm samples: (MB per call, MB per hour at this run's call rate)."""
        return self._fit(self._warm())

    @property
    def late_slope(self) -> tuple[float, float]:
        """The same over the second half of the warm samples: whether the growth goes on or levels off (caches and
        the allocator's free lists fill early; a leak grows at the same rate to the end)."""
        warm = self._warm()
        return self._fit(warm[len(warm) // 2:])

    @staticmethod
    def _fit(warm: list[tuple[float, float, int]]) -> tuple[float, float]:
        if len(warm) < 3 or warm[-1][2] == warm[0][2]:
            return 0.0, 0.0

        def fit(xs: list[float], ys: list[float]) -> float:
            mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
            den = sum((x - mx) ** 2 for x in xs)
            return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else 0.0

        per_call = fit([float(n) for _, _, n in warm], [mb for _, mb, _ in warm])
        per_s = fit([t for t, _, _ in warm], [mb for _, mb, _ in warm])
        return per_call, per_s * 3600

    def summary(self) -> str:
        warm = [mb for t, mb in self.rss_mb if t >= self.warm_at_s] or [0.0]
        per_call, per_hour = self.slope
        late_call, late_hour = self.late_slope
        return (f"soak: {self.calls} calls, {self.turns} answered turns over {self.seconds:.0f} s; errors "
                f"{len(self.errors)}; server memory warm {warm[0]:.1f} MB -> end {warm[-1]:.1f} MB "
                f"(growth {self.growth_mb:+.1f} MB, max {max(warm):.1f} MB, {len(self.rss_mb)} samples); "
                f"trend over the warm samples {per_call * 1024:+.1f} KB per call ({per_hour:+.1f} MB per hour at "
                f"this call rate), over their second half {late_call * 1024:+.1f} KB per call ({late_hour:+.1f} MB "
                f"per hour)")


def run_soak(*, duration_s: float = 3600.0, callers: int = 4, sample_s: float = 10.0, seed: int = 4,
             probe: Path | None = None, trace_frames: int = 0) -> SoakReport:
    """`probe`: the server appends a memory sample (server/hardening/memprobe.py) to this file at every sample."""
    rng = random.Random(seed)
    report = SoakReport()
    with temporary_db() as (db_url, tmp):
        extra = ["--memory-probe", str(Path(probe).resolve()), "--trace-frames", str(trace_frames)] if probe else []
        server = start_server(db_url, tmp / "server.log", extra_args=extra)
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

        def take_sample() -> None:
            report.rss_mb.append((time.monotonic() - t0, server.rss_mb()))
            report.calls_at.append(report.calls)
            if probe:
                os.kill(server.proc.pid, signal.SIGUSR1)

        async def sampler() -> None:
            while True:
                take_sample()
                await asyncio.sleep(sample_s)

        async def main() -> None:
            sampling = asyncio.create_task(sampler())
            await asyncio.gather(*(caller(k) for k in range(callers)))
            sampling.cancel()
            take_sample()
            await asyncio.gather(sampling, return_exceptions=True)
            if probe:  # the last sample is written before the server is stopped
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and _lines(probe) < len(report.rss_mb):
                    await asyncio.sleep(0.2)

        try:
            asyncio.run(main())
        finally:
            report.seconds = time.monotonic() - t0
            stop_server(server)
        report.errors.extend(logged_errors(server))
    return report


def _lines(path: Path) -> int:
    try:
        return len(Path(path).read_text().splitlines())
    except FileNotFoundError:
        return 0


def add_bench(bench_sub: Any) -> None:
    p = bench_sub.add_parser("soak", help="simultaneous calls for a long time: memory growth and errors")
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--callers", type=int, default=4)
    p.add_argument("--sample-s", type=float, default=10.0)
    p.add_argument("--probe", type=Path, help="where the server writes a memory sample at every sample (a JSON "
                   "line: Python objects, SQLite, the C allocator; server/hardening/memprobe.py)")
    p.add_argument("--trace-frames", type=int, default=0, help="with --probe: tracemalloc snapshots with this "
                   "many frames beside the probe file (slows the server)")

    def run(args: Any) -> int:
        report = run_soak(duration_s=args.minutes * 60, callers=args.callers, sample_s=args.sample_s,
                          probe=args.probe, trace_frames=args.trace_frames)
        print(report.summary())
        if args.probe:
            from server.hardening.memprobe import growth, read

            samples = read(args.probe)
            warm = next((i for i, (t, _) in enumerate(report.rss_mb) if t >= report.warm_at_s), 0)
            if len(samples) > warm + 1:
                print(f"  probe, warm sample to the last: {growth(samples, first=warm)}")
        for line in report.errors[:20]:
            print(f"  {line}")
        return 0 if not report.errors and report.growth_mb <= 50 else 1

    p.set_defaults(func=run)
