"""Durability: the server is killed with SIGKILL (kill -9) at random moments of calls, then restarted, `kills` times.

Callers speak in real time and note every turn that was answered (they got the `answer` event). After each restart
and at the end the store must hold:
- every answered caller turn (the session stores the turn before it answers: server/call/session.py);
- exactly one final state for every call: calls cut by a kill are closed as `dropped` (reason `server_restart`)
  when the server starts again (server/store/db.py, close_abandoned);
- a database that passes `PRAGMA integrity_check`.

`hotline bench durability --kills 50` prints the figures; tests/test_hardening_measure.py runs a bounded one.
"""
from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any

from server.hardening.harness import CallResult, realtime_call, start_server, stop_server, temporary_db
from server.store.models import FINAL_STATES


@dataclass
class DurabilityReport:
    kills: int = 0
    calls: int = 0
    answered_turns: int = 0
    missing_turns: list[str] = field(default_factory=list)
    calls_without_final_state: int = 0
    dropped_at_restart: int = 0
    integrity: list[str] = field(default_factory=list)  # each check's result ("ok" when sound)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return (not self.missing_turns and self.calls_without_final_state == 0
                and all(r == "ok" for r in self.integrity))

    def summary(self) -> str:
        bad = [r for r in self.integrity if r != "ok"]
        return (f"durability: {self.kills} kill -9 over {self.calls} calls in {self.seconds:.0f} s; "
                f"answered turns {self.answered_turns}, missing from the store {len(self.missing_turns)}; "
                f"calls without exactly one final state {self.calls_without_final_state}; "
                f"closed as dropped at restart {self.dropped_at_restart}; "
                f"integrity_check ok {len(self.integrity) - len(bad)}/{len(self.integrity)}")


def _check(db_path: str, results: list[CallResult], report: DurabilityReport) -> None:
    with sqlite3.connect(db_path) as db:
        report.integrity.append(db.execute("PRAGMA integrity_check").fetchone()[0])
        rows = db.execute("SELECT id, state, ended_at, reason FROM calls").fetchall()
        states = {call_id: (state, ended, reason) for call_id, state, ended, reason in rows}
        twice = db.execute("SELECT call_id FROM call_events WHERE kind = 'ended' GROUP BY call_id "
                           "HAVING count(*) > 1").fetchall()
        report.calls_without_final_state = len(twice) + sum(1 for s, ended, _ in states.values()
                                                             if s not in FINAL_STATES or ended is None)
        report.dropped_at_restart = sum(1 for s, _, reason in states.values()
                                        if s == "dropped" and reason == "server_restart")
        stored = set(db.execute("SELECT call_id, text FROM turns WHERE speaker = 'caller'").fetchall())
    report.missing_turns = [f"{r.call_id}: {text}" for r in results if r.call_id for text in r.answered
                            if (r.call_id, text) not in stored]
    report.answered_turns = sum(len(r.answered) for r in results if r.call_id)
    report.calls = len(states)


async def _calls_until_killed(ws: str, results: list[CallResult], *, callers: int, rng: random.Random) -> None:
    async def caller() -> None:
        while True:
            result = CallResult()
            results.append(result)
            try:
                await realtime_call(ws + "/ws/call", turns=rng.randint(1, 4), result=result)
            except Exception:  # the server was killed under this call
                return

    await asyncio.gather(*(caller() for _ in range(callers)))


def run_durability(*, kills: int = 50, seed: int = 11, callers: int = 3, min_s: float = 1.0,
                   max_s: float = 6.0) -> DurabilityReport:
    rng = random.Random(seed)
    report = DurabilityReport()
    results: list[CallResult] = []
    t0 = time.monotonic()
    with temporary_db() as (db_url, tmp):
        db_path = db_url.split("///", 1)[1]
        port = None
        for _ in range(kills):
            server = start_server(db_url, tmp / "server.log", port=port)
            port = server.port

            async def round_() -> None:
                task = asyncio.create_task(_calls_until_killed(server.ws, results, callers=callers, rng=rng))
                await asyncio.sleep(rng.uniform(min_s, max_s))
                server.proc.kill()  # SIGKILL: no shutdown, no flush, mid-write for all we know
                await asyncio.to_thread(server.proc.wait)
                try:
                    async with asyncio.timeout(15):
                        await task
                except TimeoutError:
                    task.cancel()

            asyncio.run(round_())
            report.kills += 1
            with sqlite3.connect(db_path) as db:  # the database as the kill left it, before any recovery
                report.integrity.append(db.execute("PRAGMA integrity_check").fetchone()[0])
        # One clean start closes what the last kill cut off; then the store is checked.
        server = start_server(db_url, tmp / "server.log", port=port)
        stop_server(server)
        _check(db_path, results, report)
    report.seconds = time.monotonic() - t0
    return report


def add_bench(bench_sub: Any) -> None:
    p = bench_sub.add_parser("durability", help="kill -9 the server at random moments of calls; check the store")
    p.add_argument("--kills", type=int, default=50)
    p.add_argument("--callers", type=int, default=3)
    p.add_argument("--seed", type=int, default=11)

    def run(args: Any) -> int:
        report = run_durability(kills=args.kills, seed=args.seed, callers=args.callers)
        print(report.summary())
        for line in report.missing_turns[:10]:
            print(f"  missing: {line}")
        return 0 if report.ok else 1

    p.set_defaults(func=run)
