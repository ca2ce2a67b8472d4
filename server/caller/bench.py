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
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Any, Iterator, Sequence

import numpy as np

from server.caller.client import CallOptions, call_url, CallReport, Utterance, load_utterance, run_call, utterance_from_audio
from server.metrics import percentile

@dataclass(frozen=True, slots=True)
class Expect:
    """What the hotline should do with a question: its language, and the routes and topics that are right."""

    language: str
    routes: tuple[str, ...]
    topics: tuple[str, ...]

    def met_by(self, answer: dict[str, Any] | None) -> bool:
        a = answer or {}
        if a.get("language") != self.language or a.get("route") not in self.routes:
            return False
        # A request to rephrase says the same words whatever the router guessed (the `repeat` prompt); the topic it
        # carries is that guess (or hotline_info), never one of an off-topic label's, so it is not checked.
        return a.get("route") == "clarify" or a.get("topic") in self.topics


# Real human recordings (recordings_fixtures/ or the shared recordings folder): public corpora hold no hotline
# questions, so most are labelled with what the hotline should do with speech that is not about its topics: the
# polite out-of-scope answer, or a request to rephrase (clarify). "What's the weather like?" is a caller's question
# the hotline does not cover; speechocean762 is English read by native Mandarin speakers.
OFF_TOPIC = (("answer", "clarify"), ("out_of_scope", "", "none"))
RECORDINGS: dict[str, Expect] = {
    "en_azure_whatstheweatherlike.wav": Expect("en", ("answer",), ("out_of_scope",)),
    "zh_aishell_BAC009S0002W0123.wav": Expect("zh", *OFF_TOPIC),
    "en_speechocean762_011090334.wav": Expect("en", *OFF_TOPIC),
    "zh_funasr_asr_example_zh.wav": Expect("zh", *OFF_TOPIC),
    "en_librispeech_1089-134686-0001.wav": Expect("en", *OFF_TOPIC),
}
# Hotline questions spoken by the hotline's own voice: they take the path a real question takes, to a real topic.
SYNTHESIZED: tuple[tuple[str, Expect], ...] = (
    ("How do I apply for a work permit?", Expect("en", ("answer",), ("work_permit_apply",))),
    ("居留许可在哪里办理？", Expect("zh", ("answer",), ("residence_permit",))),
    ("What documents do I need for a residence permit?", Expect("en", ("answer",), ("residence_permit",))),
    ("外国人工作许可需要哪些材料？", Expect("zh", ("answer",), ("work_permit_apply",))),
    ("How do I pay individual income tax as a foreigner?", Expect("en", ("answer",), ("income_tax",))),
    ("我的工资怎么换成外汇汇到国外？", Expect("zh", ("answer",), ("salary_fx",))),
)


def recording_dirs() -> list[Path]:
    root = Path(__file__).resolve().parent.parent.parent
    return [d for d in (root / "recordings_fixtures",) if d.is_dir()]


def load_questions(*, synthesize: bool = True, out: Any = sys.stderr) -> tuple[list[Utterance], dict[str, Expect]]:
    """The bench's questions (recordings and synthesized, interleaved) and what is right for each, by name."""
    questions: list[Utterance] = []
    expected: dict[str, Expect] = {}
    folders = recording_dirs()
    for name, expect in RECORDINGS.items():
        path = next((d / name for d in folders if (d / name).is_file()), None)
        if path is not None:
            questions.append(load_utterance(path))
            expected[name] = expect
    if synthesize:
        try:
            from voice.settings import VoiceSettings
            from voice.tts import build_synthesizer

            synth = build_synthesizer(VoiceSettings())
            for text, expect in SYNTHESIZED:
                pcm = b"".join(chunk.pcm16 for chunk in synth.synthesize(text, expect.language))
                audio = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
                questions.append(utterance_from_audio(f"tts:{text}", audio, expected_language=expect.language))
                expected[f"tts:{text}"] = expect
        except Exception as exc:  # the bench still runs on recordings; say why the synthesized half is missing
            print(f"bench call: synthesized questions skipped ({type(exc).__name__}: {exc})", file=out)
    # Interleave recordings and synthesized questions so every caller gets both kinds.
    real = [q for q in questions if not q.name.startswith("tts:")]
    synth_q = [q for q in questions if q.name.startswith("tts:")]
    mixed: list[Utterance] = []
    for i in range(max(len(real), len(synth_q))):
        mixed.extend(q[i] for q in (synth_q, real) if i < len(q))
    return mixed, expected


# The server's `timings` keys in pipeline order ("response_ms" is its own end-to-end figure, printed last).
FLAG_TIMINGS = frozenset({"speculative", "early", "preempted"})  # per-turn flags among the server's timings
STAGE_ORDER = ("endpoint_ms", "asr_ms", "route_ms", "store_ms", "tts_first_chunk_ms", "synthesis_ms", "response_ms")


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
                stdout=log, stderr=subprocess.STDOUT, env=child_env, cwd=Path(__file__).resolve().parent.parent.parent,
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
        return await run_call(mine, url, protocol, "realtime",
                              options=CallOptions(turn_timeout_s=60.0, stop_after_transfer=True))

    return await asyncio.gather(*(one(i) for i in range(calls)), return_exceptions=True)


def summarize(calls: int, results: Sequence[CallReport | BaseException], seen_answers: set[str],
              expected: dict[str, Expect] | None = None, *, label: str = "") -> dict[str, Any]:
    """Figures for one round. `seen_answers` (answer texts heard earlier in this bench) is updated: a repeated answer
    may come from the synthesizer's cache, so first-time and repeated answers are reported apart. `expected`: what
    is right for each question (route, topic, language), checked on every turn."""
    reports = [r for r in results if isinstance(r, CallReport)]
    failures = [f"{type(r).__name__}: {r}" for r in results if not isinstance(r, CallReport)]
    turns = [t for r in reports for t in r.turns]
    latencies = [t.latency_s for t in turns if t.latency_s is not None]
    acks = [t.ack_s for t in turns if t.ack_s is not None]
    # A turn the hotline could not answer (clarify) counts as a miss; the escalation policy (routing/escalation.py,
    # misses_before_agent) sends the next miss in the same call to a person. So where a question may rightly be
    # met with a clarify, a transfer to an agent right after a clarify in the same call is right too.
    after_miss = {id(t) for r in reports for prev, t in zip(r.turns, r.turns[1:])
                  if (prev.answer or {}).get("route") == "clarify"}

    def right(t: Any, e: Expect) -> bool:
        a = t.answer or {}
        if id(t) in after_miss and "clarify" in e.routes and a.get("route") == "agent" \
                and a.get("topic") == "human_agent" and a.get("language") == e.language:
            return True
        return e.met_by(t.answer)

    checked = [(t, expected[t.name]) for t in turns if expected and t.name in expected]
    # What was heard is printed with a wrong turn: a bench run is not caller data, and without it a misroute
    # cannot be told from a misrecognition.
    wrong = [f"{t.name}: {(t.answer or {}).get('route')}/{(t.answer or {}).get('topic')}/"
             f"{(t.answer or {}).get('language')} (recognized {str((t.transcript or {}).get('text', ''))[:60]!r})" for t, e in checked
             if not right(t, e)]
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
        "mode": label,
        "calls": calls,
        "turns": len(turns),
        "right": len(checked) - len(wrong),
        "checked": len(checked),
        "wrong": wrong,
        "ack_turns": len(acks),
        "ack_median_s": percentile(acks, 50),
        "answered": len(latencies),
        "median_s": percentile(latencies, 50),
        "p95_s": percentile(latencies, 95),
        "max_s": max(latencies) if latencies else None,
        "first_answer_median_s": percentile(first, 50),
        "first_answer_turns": len(first),
        "repeated_answer_median_s": percentile(repeat, 50),
        "repeated_answer_turns": len(repeat),
        "line_stages_median_s": {k: percentile(v, 50) for k, v in line.items()},
        # Flags (0/1 per turn) are reported as the share of turns that had them, not as a median.
        "server_timings_median_ms": {k: (sum(v) / len(v) if k in FLAG_TIMINGS else percentile(v, 50))
                                     for k, v in server.items() if v},
        "errors": failures + [e for r in reports for e in r.errors],
    }


def _f(value: float | None, scale: float = 1.0, unit: str = "") -> str:
    return "—" if value is None else f"{value * scale:.0f}{unit}" if scale != 1.0 else f"{value:.2f}{unit}"


def print_table(rows: Sequence[dict[str, Any]], out: Any) -> None:
    print("\nend of caller's speech -> first byte of the answer's own audio (real-time paced callers); "
          "right = route, topic and language as labelled; ack = a 'one moment' heard first", file=out)
    print(f"{'mode':>9} {'calls':>5} {'turns':>5} {'answered':>8} {'median':>8} {'p95':>8} {'max':>8} {'right':>9} "
          f"{'ack':>12}   where the time goes (median ms)", file=out)
    for row in rows:
        right = f"{row['right'] / row['checked']:.0%}" if row.get("checked") else "—"
        ack = f"{row['ack_turns']}x {_f(row['ack_median_s'], unit=' s')}" if row.get("ack_turns") else "—"
        stages = row["server_timings_median_ms"]
        if stages:
            order = {k: i for i, k in enumerate(STAGE_ORDER)}
            keys = sorted(stages, key=lambda k: (order.get(k, len(order)), k))
            where = "  ".join(f"{k} {stages[k]:.0%}" if k in FLAG_TIMINGS else f"{k.removesuffix('_ms')} {stages[k]:.0f}"
                              for k in keys)
            where += "   [server's timings]"
        else:
            where = "  ".join(f"{k} {v * 1000:.0f}" for k, v in row["line_stages_median_s"].items())
            where += "   [seen on the line]"
        print(f"{row.get('mode', ''):>9} {row['calls']:>5} {row['turns']:>5} {row['answered']:>8} "
              f"{_f(row['median_s'], unit=' s'):>8} {_f(row['p95_s'], unit=' s'):>8} {_f(row['max_s'], unit=' s'):>8} "
              f"{right:>4} {row.get('right', 0):>2}/{row.get('checked', 0):<2} {ack:>12}   {where}", file=out)
        for miss in row.get("wrong", [])[:5]:
            print(f"{'':>43}   wrong: {miss}", file=out)
        print(f"{'':>43}   answers new to this bench: median {_f(row['first_answer_median_s'], unit=' s')} "
              f"over {row['first_answer_turns']}; repeated (TTS cache may apply): median "
              f"{_f(row['repeated_answer_median_s'], unit=' s')} over {row['repeated_answer_turns']}", file=out)
        if stages and row["line_stages_median_s"]:
            seen = "  ".join(f"{k} {v * 1000:.0f}" for k, v in row["line_stages_median_s"].items())
            print(f"{'':>43}   {seen}   [seen on the line]", file=out)
        for err in row["errors"][:5]:
            print(f"{'':>7}! {err}", file=out)


MODES = ("cached", "uncached", "fresh")
FRESH_CALLS = 10  # a fresh install is measured on its first calls after /readyz


def fresh_cache_dir(tmp: Path, models: Path) -> Path:
    """A model folder like `models` (links to every assembled model) without its synthesis cache: the server
    starts as a fresh install does, every prompt and answer still to be synthesized."""
    folder = tmp / "models"
    folder.mkdir()
    for entry in models.iterdir():
        if entry.name != "tts":
            (folder / entry.name).symlink_to(entry.resolve())
    return folder


def main(args: argparse.Namespace) -> int:

    try:
        rounds = [int(x) for x in str(args.calls).split(",") if x.strip()]
        if not rounds or any(n < 1 or n > 64 for n in rounds):
            raise ValueError
    except ValueError:
        print("bench call: --calls takes numbers of simultaneous calls between 1 and 64, e.g. 1,4,8", file=sys.stderr)
        return 2
    modes = [m.strip() for m in str(args.modes).split(",") if m.strip()]
    if args.no_tts_cache:
        modes = ["uncached"]
    if not modes or any(m not in MODES for m in modes):
        print(f"bench call: --modes takes {', '.join(MODES)} (comma separated)", file=sys.stderr)
        return 2
    if args.turns < 1:
        print("bench call: --turns must be at least 1", file=sys.stderr)
        return 2
    out = sys.stdout
    questions, expected = load_questions(synthesize=not args.no_synth)
    if not questions:
        print("bench call: no recordings found (recordings_fixtures/) and no synthesizer", file=sys.stderr)
        return 2
    print(f"bench call: {len(questions)} questions: " + ", ".join(q.name for q in questions), file=sys.stderr)

    def measure(base: str, mode: str) -> list[dict[str, Any]]:
        url = call_url(base, args.protocol)
        rows: list[dict[str, Any]] = []
        seen: set[str] = set()
        # A fresh install: its first calls after /readyz, one after the other (each a new caller, one question).
        plan = [(1, 1)] * FRESH_CALLS if mode == "fresh" else [(n, args.turns) for n in rounds]
        results_all: list[Any] = []
        if mode == "cached" and getattr(args, "cache_fill", "all") == "questions":
            # One unmeasured call asks every question once: its answers are synthesized into the cache, so the
            # measured rounds hear cached answers as a caller does once the server has warmed them.
            print("bench call: cached: one unmeasured call fills the cache with the questions' answers ...",
                  file=sys.stderr, flush=True)
            asyncio.run(run_round(url, args.protocol, questions, calls=1, turns=len(questions)))
        for i, (n, turns) in enumerate(plan):
            t0 = time.monotonic()
            print(f"bench call: {mode}: {n} simultaneous call(s) ...", file=sys.stderr, flush=True)
            qs = questions[i % len(questions):] + questions[: i % len(questions)] if mode == "fresh" else questions
            results = asyncio.run(run_round(url, args.protocol, qs, calls=n, turns=turns))
            if mode == "fresh":
                results_all.extend(results)
                continue
            row = summarize(n, results, seen, expected, label=mode)
            row["wall_s"] = round(time.monotonic() - t0, 1)
            rows.append(row)
            print(f"bench call: {mode}, {n} call(s): median {_f(row['median_s'], unit=' s')}, "
                  f"p95 {_f(row['p95_s'], unit=' s')} over {row['answered']}/{row['turns']} turns "
                  f"({row['wall_s']} s)", file=sys.stderr, flush=True)
        if mode == "fresh":
            row = summarize(1, results_all, seen, expected, label="fresh")
            row["calls"] = f"{FRESH_CALLS}x1"
            rows.append(row)
        return rows

    rows: list[dict[str, Any]] = []
    if args.url:
        rows = measure(args.url, "given")
        where = args.url
    else:
        from server.settings import Settings

        settings = Settings.load(getattr(args, "config", None))
        for mode in modes:
            env: dict[str, str] = {}
            with tempfile.TemporaryDirectory(prefix="hotline-bench-models-") as tmp:
                if mode == "uncached":
                    # Every prompt and answer synthesized afresh, every time (the acknowledgement too).
                    env = {"HOTLINE_VOICE__TTS_CACHE_SIZE": "0", "HOTLINE_VOICE__TTS_DISK_CACHE": "false"}
                elif mode == "fresh":
                    env = {"HOTLINE_VOICE__CACHE_DIR": str(fresh_cache_dir(Path(tmp), settings.voice.cache_dir))}
                else:
                    # As in production after the first start: every knowledge-base answer is already synthesized
                    # (the server fills the cache in the background between calls; here before measuring).
                    if getattr(args, "cache_fill", "all") == "all":
                        from server.commands import warm_caches

                        warm_caches(settings)
                print(f"bench call: starting a server for {mode} answers ...", file=sys.stderr, flush=True)
                with launch_server(ready_timeout_s=args.ready_timeout, env=env) as base:
                    rows += measure(base, mode)
        where = "servers started by the bench (cached: synthesis cache filled first; uncached: cache off; " \
                "fresh: empty synthesis cache, first calls after /readyz)"
    if args.json:
        print(json.dumps({"server": where, "protocol": args.protocol, "cpus": os.cpu_count(), "rounds": rows},
                         ensure_ascii=False, indent=1, default=str), file=out)
    else:
        print(f"server: {where}; protocol {args.protocol}; {os.cpu_count()} CPU(s)", file=out)
        print_table(rows, out)
        checked = sum(r.get("checked", 0) for r in rows)
        if checked:
            print(f"route, topic and language right in {sum(r['right'] for r in rows) / checked:.1%} of "
                  f"{checked} checked turns", file=out)
    return 0 if all(r["answered"] == r["turns"] and r["turns"] > 0 for r in rows) else 1
