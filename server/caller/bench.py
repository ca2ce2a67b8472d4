"""`hotline bench call`: end of the caller's speech -> first byte of answer audio, for 1, 4, 8 simultaneous calls.

The server runs in its own process (as `hotline serve` does in production), so the callers' own work never
competes with it for the interpreter lock; on a 2-core machine the callers still share the CPU, which is
why their part is kept small (pre-decoded audio, no printing while measuring).

Where the time goes comes from two places: what the line shows (speech end -> transcript.final -> answer -> first
audio byte: "endpoint+recognition", "routing", "synthesis") and, when the server includes it in the `answer` event,
its own split `timings` {endpoint_ms, asr_ms, route_ms, tts_first_chunk_ms}.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Any, Iterator, Sequence

import numpy as np

from server.caller.client import CallOptions, call_url, CallReport, Utterance, load_utterance, run_call, utterance_from_audio
from server.metrics import percentile

# Short questions in both languages. Real recordings are not hotline questions (they are what public corpora hold),
# so synthesized questions are added: they take the path a real question takes, to a real topic.
RECORDINGS = (
    "en_librispeech_1089-134686-0001.wav",
    "zh_aishell_BAC009S0002W0123.wav",
    "en_ljspeech_LJ001-0004.wav",
    "zh_funasr_asr_example_zh.wav",
)
SYNTHESIZED = (
    ("How do I apply for a work permit?", "en"),
    ("居留许可在哪里办理？", "zh"),
    ("What documents do I need for a residence permit?", "en"),
    ("外国人工作许可需要哪些材料？", "zh"),
)


def recordings_dir() -> Path | None:
    root = Path(__file__).resolve().parent.parent
    for candidate in (root / "recordings_fixtures", Path("/work/shared/recordings")):
        if any((candidate / name).is_file() for name in RECORDINGS):
            return candidate
    return None


def load_questions(*, synthesize: bool = True, out: Any = sys.stderr) -> list[Utterance]:
    questions: list[Utterance] = []
    folder = recordings_dir()
    if folder is not None:
        for name in RECORDINGS:
            if (folder / name).is_file():
                questions.append(load_utterance(folder / name))
    if synthesize:
        try:
            from voice.settings import VoiceSettings
            from voice.tts import build_synthesizer

            synth = build_synthesizer(VoiceSettings())
            for text, language in SYNTHESIZED:
                pcm = b"".join(chunk.pcm16 for chunk in synth.synthesize(text, language))
                audio = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
                questions.append(utterance_from_audio(f"tts:{text}", audio, expected_language=language))
        except Exception as exc:  # the bench still runs on recordings; say why the synthesized half is missing
            print(f"bench call: synthesized questions skipped ({type(exc).__name__}: {exc})", file=out)
    # Interleave recordings and synthesized questions so every caller gets both kinds.
    real = [q for q in questions if not q.name.startswith("tts:")]
    synth_q = [q for q in questions if q.name.startswith("tts:")]
    mixed: list[Utterance] = []
    for i in range(max(len(real), len(synth_q))):
        mixed.extend(q[i] for q in (synth_q, real) if i < len(q))
    return mixed


# The server's `timings` keys in pipeline order ("response_ms" is its own end-to-end figure, printed last).
STAGE_ORDER = ("endpoint_ms", "asr_ms", "route_ms", "tts_first_chunk_ms", "synthesis_ms", "response_ms")


# ---------------------------------------------------------------- the server under test

def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(base: str, *, timeout_s: float, died: Callable[[], str | None], poll_s: float = 0.1) -> None:
    """Poll `base`/readyz until it says 200. `died()` returns why the server is gone (or None while it runs).

    Raises RuntimeError when the server died or reports a failed model load, TimeoutError after `timeout_s`.
    """
    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        reason = died()
        if reason is not None:
            raise RuntimeError(reason)
        try:
            r = httpx.get(f"{base}/readyz", timeout=2)
            if r.status_code == 200:
                return
            if r.json().get("status") == "error":
                raise RuntimeError(f"the server failed to load its models: {r.json().get('error')}")
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"the server was not ready within {timeout_s:.0f} s")
        time.sleep(poll_s)


@contextlib.contextmanager
def launch_server(*, ready_timeout_s: float = 600.0, env: dict[str, str] | None = None) -> Iterator[str]:
    """`hotline serve` in a child process on a free port with a temporary SQLite database; yields http://HOST:PORT."""
    with tempfile.TemporaryDirectory(prefix="hotline-bench-") as tmp:
        port = free_port()
        db = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        log_path = Path(tmp) / "server.log"
        # Every bench caller comes from this machine, and the bench plays Twilio itself: the per-address call limit
        # and the unsigned-Twilio refusal would refuse the load it is there to measure.
        child_env = {**os.environ, "HOTLINE_LOG_LEVEL": "WARNING", "HOTLINE_TWILIO_ALLOW_UNSIGNED": "true",
                     "HOTLINE_MAX_CALLS_PER_ADDRESS": "1000", "HOTLINE_MAX_CALLS": "1000", **(env or {})}
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "server.cli", "serve", "--host", "127.0.0.1", "--port", str(port), "--db", db],
                stdout=log, stderr=subprocess.STDOUT, env=child_env, cwd=Path(__file__).resolve().parent.parent,
            )
            base = f"http://127.0.0.1:{port}"
            try:
                def died() -> str | None:
                    if proc.poll() is None:
                        return None
                    tail = log_path.read_text(errors="replace")[-2000:]
                    return f"the server exited with {proc.returncode} during start-up:\n{tail}"

                wait_ready(base, timeout_s=ready_timeout_s, died=died, poll_s=0.25)
                yield base
            finally:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT)  # uvicorn's graceful shutdown: calls end, the store closes
                    try:
                        proc.wait(timeout=20)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait(timeout=5)


# ---------------------------------------------------------------- one round

async def run_round(url: str, protocol: str, questions: Sequence[Utterance], *, calls: int, turns: int,
                    stagger_s: float = 0.3) -> list[CallReport | BaseException]:
    """`calls` simultaneous callers, each asking `turns` questions (rotated so callers ask different things)."""

    async def one(i: int) -> CallReport:
        await asyncio.sleep(i * stagger_s)  # real callers do not dial on the same millisecond
        mine = [questions[(i + k) % len(questions)] for k in range(turns)]
        return await run_call(mine, url, protocol, "realtime", options=CallOptions(turn_timeout_s=60.0))

    return await asyncio.gather(*(one(i) for i in range(calls)), return_exceptions=True)


def summarize(calls: int, results: Sequence[CallReport | BaseException], seen_answers: set[str]) -> dict[str, Any]:
    """Figures for one round. `seen_answers` (answer texts heard earlier in this bench) is updated: a repeated answer
    may come from the synthesizer's cache, so first-time and repeated answers are reported apart."""
    reports = [r for r in results if isinstance(r, CallReport)]
    failures = [f"{type(r).__name__}: {r}" for r in results if not isinstance(r, CallReport)]
    turns = [t for r in reports for t in r.turns]
    latencies = [t.latency_s for t in turns if t.latency_s is not None]
    first, repeat = [], []
    timed = sorted(((r.started_at + t.answer_t, t) for r in reports for t in r.turns
                    if t.answer_t is not None and t.latency_s is not None), key=lambda x: x[0])
    for _, t in timed:
        text = str((t.answer or {}).get("text", ""))
        (repeat if text in seen_answers else first).append(t.latency_s)
        seen_answers.add(text)
    line: dict[str, list[float]] = {}
    for t in turns:
        if t.latency_s is None:
            continue
        for stage, value in t.stages_s.items():
            line.setdefault(stage, []).append(value)
    server: dict[str, list[float]] = {}
    for t in turns:
        for key, value in (t.timings or {}).items():
            if isinstance(value, (int, float)):
                server.setdefault(key, []).append(float(value))
    return {
        "calls": calls,
        "turns": len(turns),
        "answered": len(latencies),
        "median_s": percentile(latencies, 50),
        "p95_s": percentile(latencies, 95),
        "max_s": max(latencies) if latencies else None,
        "first_answer_median_s": percentile(first, 50),
        "first_answer_turns": len(first),
        "repeated_answer_median_s": percentile(repeat, 50),
        "repeated_answer_turns": len(repeat),
        "line_stages_median_s": {k: percentile(v, 50) for k, v in line.items()},
        "server_timings_median_ms": {k: percentile(v, 50) for k, v in server.items()},
        "errors": failures + [e for r in reports for e in r.errors],
    }


def _f(value: float | None, scale: float = 1.0, unit: str = "") -> str:
    return "—" if value is None else f"{value * scale:.0f}{unit}" if scale != 1.0 else f"{value:.2f}{unit}"


def print_table(rows: Sequence[dict[str, Any]], out: Any) -> None:
    print("\nend of caller's speech -> first byte of answer audio (real-time paced callers)", file=out)
    print(f"{'calls':>5} {'turns':>5} {'answered':>8} {'median':>8} {'p95':>8} {'max':>8}   "
          f"where the time goes (median ms)", file=out)
    for row in rows:
        stages = row["server_timings_median_ms"]
        if stages:
            order = {k: i for i, k in enumerate(STAGE_ORDER)}
            keys = sorted(stages, key=lambda k: (order.get(k, len(order)), k))
            where = "  ".join(f"{k.removesuffix('_ms')} {stages[k]:.0f}" for k in keys)
            where += "   [server's timings]"
        else:
            where = "  ".join(f"{k} {v * 1000:.0f}" for k, v in row["line_stages_median_s"].items())
            where += "   [seen on the line]"
        print(f"{row['calls']:>5} {row['turns']:>5} {row['answered']:>8} {_f(row['median_s'], unit=' s'):>8} "
              f"{_f(row['p95_s'], unit=' s'):>8} {_f(row['max_s'], unit=' s'):>8}   {where}", file=out)
        print(f"{'':>43}   answers new to this bench: median {_f(row['first_answer_median_s'], unit=' s')} "
              f"over {row['first_answer_turns']}; repeated (TTS cache may apply): median "
              f"{_f(row['repeated_answer_median_s'], unit=' s')} over {row['repeated_answer_turns']}", file=out)
        if stages and row["line_stages_median_s"]:
            seen = "  ".join(f"{k} {v * 1000:.0f}" for k, v in row["line_stages_median_s"].items())
            print(f"{'':>43}   {seen}   [seen on the line]", file=out)
        for err in row["errors"][:5]:
            print(f"{'':>7}! {err}", file=out)


def main(args: argparse.Namespace) -> int:

    try:
        rounds = [int(x) for x in str(args.calls).split(",") if x.strip()]
        if not rounds or any(n < 1 or n > 64 for n in rounds):
            raise ValueError
    except ValueError:
        print("bench call: --calls takes numbers of simultaneous calls between 1 and 64, e.g. 1,4,8", file=sys.stderr)
        return 2
    if args.turns < 1:
        print("bench call: --turns must be at least 1", file=sys.stderr)
        return 2
    out = sys.stdout
    questions = load_questions(synthesize=not args.no_synth)
    if not questions:
        print("bench call: no recordings found (recordings_fixtures/) and no synthesizer", file=sys.stderr)
        return 2
    print(f"bench call: {len(questions)} questions: " + ", ".join(q.name for q in questions), file=sys.stderr)

    def measure(base: str) -> list[dict[str, Any]]:
        url = call_url(base, args.protocol)
        rows: list[dict[str, Any]] = []
        seen: set[str] = set()
        for n in rounds:
            t0 = time.monotonic()
            print(f"bench call: {n} simultaneous call(s) ...", file=sys.stderr, flush=True)
            results = asyncio.run(run_round(url, args.protocol, questions, calls=n, turns=args.turns))
            row = summarize(n, results, seen)
            row["wall_s"] = round(time.monotonic() - t0, 1)
            rows.append(row)
            print(f"bench call: {n} call(s): median {_f(row['median_s'], unit=' s')}, p95 {_f(row['p95_s'], unit=' s')}"
                  f" over {row['answered']}/{row['turns']} turns ({row['wall_s']} s)", file=sys.stderr, flush=True)
        return rows

    if args.url:
        rows = measure(args.url)
        where = args.url
    else:
        print("bench call: starting a server (embedded defaults, temporary SQLite) ...", file=sys.stderr, flush=True)
        env = {"HOTLINE_VOICE__TTS_CACHE_SIZE": "0", "HOTLINE_VOICE__TTS_DISK_CACHE": "false"} if args.no_tts_cache else None
        if not args.no_tts_cache:
            # As in production after the first start: every knowledge-base answer is already synthesized (the
            # server fills the cache in the background between calls; here it is filled before measuring).
            from server.commands import warm_caches
            from server.settings import Settings

            warm_caches(Settings.load(getattr(args, "config", None)))
        with launch_server(ready_timeout_s=args.ready_timeout, env=env) as base:
            rows = measure(base)
        where = "a server started by the bench" + (" (synthesis cache off)" if args.no_tts_cache else "")
    if args.json:
        print(json.dumps({"server": where, "protocol": args.protocol, "cpus": os.cpu_count(), "rounds": rows},
                         ensure_ascii=False, indent=1), file=out)
    else:
        print(f"server: {where}; protocol {args.protocol}; {os.cpu_count()} CPU(s)", file=out)
        print_table(rows, out)
    return 0 if all(r["answered"] == r["turns"] and r["turns"] > 0 for r in rows) else 1
