"""Fuzzing of the four websockets: the two call protocols (/ws/call, /ws/twilio) and the two consoles (/ws/agent,
/ws/supervisor), with generated and mutated messages, binary and text, valid and broken, in any order.

The server runs in a child process (stand-in models, server/hardening/stubs.py). A connection sends a random
number of messages, then closes or waits for the server to. Verdicts:
- crash: a close with 1011 (internal error), an ERROR line in the server's log, or the server process gone;
- hang: a connection that does not finish within `hang_s`, or /healthz slower than 2 s between connections;
- memory: the server's RSS after the first tenth of the run (warm) and at the end.

`hotline bench fuzz --messages 10000` prints the figures; tests/test_hardening_measure.py runs a bounded one.
"""
from __future__ import annotations

import asyncio
import base64
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from server.hardening.harness import ACCOUNTS, logged_errors, make_accounts, sign_in, start_server, stop_server, temporary_db, ticket

TARGETS = ("/ws/call", "/ws/twilio", "/ws/agent", "/ws/supervisor")
_JUNK = ["", " ", "null", "[]", "{}", "[1,2", '{"event":', "\x00\x01", "🙂" * 50, "a" * 5000, "[" * 5000,
         '{"a":' * 3000, "NaN", "1e999", '"event"', "\ud7ff", "{\"type\": null}"]
_VALUES: list[Any] = [None, True, 0, -1, 1.5, 10**30, "", "x" * 3000, [], {}, [1, [2, [3]]], {"a": {"b": None}},
                      "en", "zh", "9", "#", "🙂", "../../etc/passwd", "'; DROP TABLE calls; --", "\u0000"]


def _native(rng: random.Random) -> Any:
    return rng.choice([
        {"event": "call.start", "language": rng.choice(["en", "zh", None, "fr", 7]), "sample_rate": rng.choice([16000, 8000, "x"]),
         "caller_id": rng.choice(["+8613800000000", "x" * 100, None, 5])},
        {"event": "dtmf", "digit": rng.choice(["1", "#", "A", "x", "12", 3, None])},
        {"event": "hangup"}, {"event": "nope"}, {"event": None},
    ])


def _twilio(rng: random.Random) -> Any:
    payload = base64.b64encode(bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 160, 161])))).decode()
    return rng.choice([
        {"event": "connected", "protocol": "Call", "version": "1.0.0"},
        {"event": "start", "streamSid": "MZ1", "start": {"callSid": "CA1", "customParameters": {"caller_id": "+86138"},
                                                          "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}},
        {"event": "media", "streamSid": "MZ1", "media": {"track": "inbound", "payload": payload}},
        {"event": "media", "media": {"payload": "!!not base64!!"}},
        {"event": "dtmf", "dtmf": {"digit": rng.choice(["1", "*", "zz", None])}},
        {"event": "mark", "mark": {"name": "turn-1"}}, {"event": "stop", "stop": {}},
    ])


def _console(rng: random.Random, path: str) -> Any:
    kinds = (["availability", "accept", "decline", "end", "hand_back", "reply", "wrap_up", "complete_callback",
              "audio.format", "ping"] if path == "/ws/agent" else ["watch", "unwatch", "listen", "unlisten", "ping"])
    return {"type": rng.choice(kinds + ["drop_tables", ""]), "call_id": rng.choice(["c" * 32, "", None, 1]),
            "state": rng.choice(["available", "away", "x"]), "text": rng.choice(["hello.", "好的。", "x" * 2000, None]),
            "sample_rate": rng.choice([8000, 48000, 1, "x"]), "disposition": "resolved", "task_id": "t"}


def mutate(obj: Any, rng: random.Random) -> Any:
    """A few random edits of a message: keys dropped, added, or given values of the wrong type."""
    if not isinstance(obj, dict):
        return obj
    obj = json.loads(json.dumps(obj))
    for _ in range(rng.randint(1, 3)):
        keys = list(obj)
        op = rng.random()
        if keys and op < 0.3:
            del obj[rng.choice(keys)]
        elif keys and op < 0.7:
            key = rng.choice(keys)
            obj[key] = mutate(obj[key], rng) if isinstance(obj[key], dict) and rng.random() < 0.5 else rng.choice(_VALUES)
        else:
            obj[rng.choice(["event", "type", "extra", "media", "start", "x" * 40])] = rng.choice(_VALUES)
    return obj


def message(path: str, rng: random.Random) -> str | bytes:
    r = rng.random()
    if r < 0.15:
        return rng.choice(_JUNK)
    if r < 0.35:
        size = rng.choice([0, 1, 639, 640, 641, 4096, 65536, 70000])
        return bytes(rng.randrange(256) for _ in range(min(size, 256))) * (size // 256 + 1) if size else b""
    base = (_native(rng) if path == "/ws/call" else _twilio(rng) if path == "/ws/twilio" else _console(rng, path))
    return json.dumps(mutate(base, rng) if r < 0.7 else base, ensure_ascii=rng.random() < 0.5)


@dataclass
class FuzzReport:
    messages: int = 0
    connections: int = 0
    close_codes: Counter[str] = field(default_factory=Counter)
    refused: int = 0  # upgrades answered 403 (e.g. Twilio without a token) or 1013
    crashes: list[str] = field(default_factory=list)
    hangs: list[str] = field(default_factory=list)
    rss_warm_mb: float = 0.0
    rss_end_mb: float = 0.0
    seconds: float = 0.0

    def summary(self) -> str:
        codes = ", ".join(f"{k}: {v}" for k, v in sorted(self.close_codes.items()))
        return (f"fuzz: {self.messages} messages over {self.connections} connections in {self.seconds:.0f} s; "
                f"crashes {len(self.crashes)}, hangs {len(self.hangs)}, 1011 closes {self.close_codes.get('1011', 0)}; "
                f"server memory {self.rss_warm_mb:.1f} MB warm -> {self.rss_end_mb:.1f} MB at the end "
                f"({self.rss_end_mb - self.rss_warm_mb:+.1f} MB); upgrades refused {self.refused}; close codes {{{codes}}}")


async def _connection(ws_base: str, path: str, query: str, rng: random.Random, report: FuzzReport, hang_s: float) -> None:
    import websockets

    count = rng.randint(1, 40)
    try:
        async with asyncio.timeout(hang_s):
            try:
                ws = await websockets.connect(ws_base + path + query, max_size=None, open_timeout=10)
            except websockets.InvalidStatus:
                report.refused += 1
                return
            drain = asyncio.create_task(_drain(ws))
            try:
                for _ in range(count):
                    report.messages += 1
                    try:
                        await ws.send(message(path, rng))
                    except websockets.ConnectionClosed:
                        break
                    if rng.random() < 0.3:
                        await asyncio.sleep(rng.random() * 0.01)
                if rng.random() < 0.5:
                    await ws.close()
                else:
                    await asyncio.wait({drain}, timeout=1.0)
                    await ws.close()
            finally:
                drain.cancel()
                await asyncio.gather(drain, return_exceptions=True)
            code = ws.close_code
            report.close_codes[str(code)] += 1
            if code == 1011:
                report.crashes.append(f"1011 on {path}")
    except TimeoutError:
        report.hangs.append(f"{path}: no end within {hang_s} s")


async def _drain(ws: Any) -> None:
    try:
        async for _ in ws:
            pass
    except Exception:
        pass


async def fuzz(ws_base: str, base: str, *, messages: int, seed: int, concurrency: int = 4, hang_s: float = 30.0,
               on_progress: Any = None) -> FuzzReport:
    rng = random.Random(seed)
    report = FuzzReport()
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        tokens = {role: await sign_in(client, name) for name, role, _ in ACCOUNTS}

        async def worker(k: int) -> None:
            local = random.Random(rng.random())
            while report.messages < messages:
                path = local.choice(TARGETS)
                query = ""
                if path in ("/ws/agent", "/ws/supervisor"):
                    role = "agent" if path == "/ws/agent" else "supervisor"
                    query = "?ticket=" + (await ticket(client, tokens[role]) if local.random() < 0.95 else "forged")
                report.connections += 1
                await _connection(ws_base, path, query, local, report, hang_s)
                if report.connections % 25 == 0:
                    t0 = time.monotonic()
                    try:
                        (await client.get("/healthz", timeout=2.0)).raise_for_status()
                    except Exception as exc:
                        report.hangs.append(f"/healthz: {type(exc).__name__} after {time.monotonic() - t0:.1f} s")
                    if on_progress is not None:
                        on_progress(report)

        await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return report


def run_fuzz(*, messages: int = 10_000, seed: int = 9, concurrency: int = 4) -> FuzzReport:
    """Start a stand-in server, fuzz it, stop it; the report includes the server's memory and crashes."""
    with temporary_db() as (db_url, tmp):
        make_accounts(db_url)
        server = start_server(db_url, tmp / "server.log")
        warm: list[float] = []
        t0 = time.monotonic()

        def progress(report: FuzzReport) -> None:
            if not warm and report.messages >= messages // 10:
                warm.append(server.rss_mb())

        try:
            report = asyncio.run(fuzz(server.ws, server.base, messages=messages, seed=seed, concurrency=concurrency,
                                      on_progress=progress))
            report.seconds = time.monotonic() - t0
            report.rss_end_mb = server.rss_mb()
            report.rss_warm_mb = warm[0] if warm else report.rss_end_mb
            if server.proc.poll() is not None:
                report.crashes.append(f"the server exited with {server.proc.returncode}")
        finally:
            stop_server(server)
        report.crashes.extend(logged_errors(server))
    return report


def add_bench(bench_sub: Any) -> None:
    p = bench_sub.add_parser("fuzz", help="fuzz the call and console websockets (crashes, hangs, 1011s, memory)")
    p.add_argument("--messages", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=9)
    p.add_argument("--concurrency", type=int, default=4)

    def run(args: Any) -> int:
        report = run_fuzz(messages=args.messages, seed=args.seed, concurrency=args.concurrency)
        print(report.summary())
        for line in (report.crashes + report.hangs)[:20]:
            print(f"  {line}")
        return 1 if report.crashes or report.hangs else 0

    p.set_defaults(func=run)
