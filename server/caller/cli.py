"""`hotline call` (the test caller) and `hotline bench call` (end-of-speech -> first answer byte, under load)."""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO

def _compact(data: dict[str, Any], limit: int = 160) -> str:
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 1] + "…"


ARROWS = {"sent": "→", "received": "←", "local": "·"}


def print_event(event: Any, out: TextIO) -> None:
    print(f"{event.t:9.3f}s {ARROWS[event.direction]} {event.type:<20} {_compact(event.data)}", file=out, flush=True)


def _fmt_s(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f} s"


def print_summary(report: Any, out: TextIO) -> None:
    from server.metrics import percentile

    print("", file=out)
    print(f"call {report.call_id or '(no call id)'} over {report.protocol}, {report.pacing} pacing, "
          f"{report.duration_s:.1f} s; ended: {report.ended_reason or report.close_code}", file=out)
    greet = report.greeting_text or "(no text on this protocol)"
    print(f"  greeting: {report.greeting_heard_s:.2f} s of audio — {greet}", file=out)
    for turn in report.turns:
        print(f"  turn {turn.index}: {turn.name} ({turn.speech_s:.1f} s of speech)", file=out)
        if turn.transcript:
            t = turn.transcript
            lang = t.get("language_code") or t.get("language")
            print(f"    heard as  [{lang} {t.get('language_probability', 0):.2f}] {t.get('text', '')}", file=out)
        if turn.answer:
            a = turn.answer
            print(f"    answer    [{a.get('language')}] {a.get('route')} / {a.get('topic')}: {a.get('text', '')}",
                  file=out)
        stages = ", ".join(f"{k} {v:.2f}" for k, v in turn.stages_s.items())
        print(f"    end of speech -> first answer audio: {_fmt_s(turn.latency_s)}"
              + (f"  ({stages})" if stages else "") + f"; heard {turn.heard_s:.1f} s", file=out)
        if turn.timings:
            print(f"    server timings: {_compact(turn.timings)}", file=out)
        if turn.audio_path:
            print(f"    saved {turn.audio_path}", file=out)
        if turn.error:
            print(f"    ERROR: {turn.error}", file=out)
    lat = report.latencies_s
    if lat:
        print(f"  latency over {len(lat)} turn(s): median {percentile(lat, 50):.2f} s, max {max(lat):.2f} s", file=out)
    for err in report.errors:
        print(f"  error: {err}", file=out)


def _call(args: argparse.Namespace) -> int:
    from server.caller.client import CallerError, CallOptions, call_url, run_call
    from voice.audio import AudioFormatError

    try:
        url = call_url(args.url, args.protocol)
    except ValueError as exc:
        print(f"hotline call: {exc}", file=sys.stderr)
        return 2
    options = CallOptions(
        language=args.language, caller_id=args.caller_id, pause_s=args.pause, turn_timeout_s=args.timeout,
        save_audio=Path(args.save_audio) if args.save_audio else None,
        twilio_auth_token=args.twilio_auth_token or os.environ.get("HOTLINE_TWILIO_AUTH_TOKEN") or None,
    )
    out = sys.stdout

    def on_event(event: Any) -> None:
        if args.json:
            print(json.dumps(event.to_dict(), ensure_ascii=False), file=out, flush=True)
        else:
            print_event(event, out)

    try:
        report = asyncio.run(run_call(args.audio, url, args.protocol, "fast" if args.fast else "realtime",
                                      options=options, on_event=on_event))
    except (AudioFormatError, CallerError) as exc:
        print(f"hotline call: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"type": "report", **report.to_dict()}, ensure_ascii=False), file=out, flush=True)
    else:
        print_summary(report, out)
    complete = all(turn.latency_s is not None and not turn.error for turn in report.turns)
    return 0 if complete and report.greeting_heard_s > 0 else 1


def _bench(args: argparse.Namespace) -> int:
    from server.caller.bench import main as bench_main

    return bench_main(args)


def add_commands(sub: Any, bench_sub: Any) -> None:
    call = sub.add_parser(
        "call",
        help="test caller: speak recordings into a running server and measure end-of-speech -> answer audio",
        description="Dials a running hotline, waits for the greeting, says each recording with natural pauses "
        "(trailing silence lets the server's VAD end the utterance), waits for each answer to be heard, prints every "
        "event with its time and reports per turn the time from the end of speech to the first byte of answer audio.",
    )
    call.add_argument("audio", nargs="+", help="recordings to say, in order (WAV, FLAC, MP3, ...)")
    call.add_argument("--url", help="server URL: ws://HOST:PORT[/ws/call|/ws/twilio] or http://HOST:PORT "
                      "(default ws://127.0.0.1:8000 + the protocol's path)")
    call.add_argument("--protocol", choices=("native", "twilio"), default="native",
                      help="native PCM16 websocket (/ws/call) or the carrier side of Twilio Media Streams (/ws/twilio)")
    pacing = call.add_mutually_exclusive_group()
    pacing.add_argument("--realtime", action="store_true", default=True,
                        help="send 20 ms frames every 20 ms, like a phone (default)")
    pacing.add_argument("--fast", action="store_true", help="send speech as fast as the socket takes it")
    call.add_argument("--json", action="store_true", help="one JSON object per line: every event, then the report")
    call.add_argument("--save-audio", metavar="DIR", help="save what was heard, one WAV per greeting / turn")
    call.add_argument("--language", choices=("en", "zh"), help="language hint sent with the call start")
    call.add_argument("--caller-id", help="caller id sent with the call start")
    call.add_argument("--pause", type=float, default=0.8, help="seconds between the bot's last word and the next question")
    call.add_argument("--timeout", type=float, default=45.0, help="seconds to wait for each answer")
    call.add_argument("--twilio-auth-token", help="sign the stream like Twilio (default: $HOTLINE_TWILIO_AUTH_TOKEN)")
    call.set_defaults(func=_call)

    bench = bench_sub.add_parser(
        "call",
        help="end-of-speech -> first answer byte for 1-16 simultaneous callers, cached / uncached / fresh install, "
             "with every turn's route, topic and language checked",
        description="Starts a server (embedded defaults, temporary SQLite) unless --url is given, then runs the given "
        "numbers of simultaneous test callers, real-time paced, with real recordings and synthesized questions.",
    )
    bench.add_argument("--calls", default="1,4,8,12,16",
                       help="simultaneous callers per round, comma separated (default 1,4,8,12,16)")
    bench.add_argument("--modes", default="cached,uncached,fresh",
                       help="rows to measure: cached answers, uncached answers (synthesis cache off), fresh install "
                            "(empty synthesis cache, first 10 calls after /readyz); default all three")
    bench.add_argument("--url", help="a running server to measure instead of starting one (ws:// or http://)")
    bench.add_argument("--protocol", choices=("native", "twilio"), default="native")
    bench.add_argument("--turns", type=int, default=4, help="questions per caller (default 4)")
    bench.add_argument("--no-synth", action="store_true", help="recordings only (skip synthesized questions)")
    bench.add_argument("--no-tts-cache", action="store_true",
                       help="only the uncached row: the server's synthesis cache off (every answer synthesized afresh)")
    bench.add_argument("--cache-fill", choices=("all", "questions"), default="all",
                       help="cached row: fill the synthesis cache with every prompt and answer first (all, as "
                            "`hotline warm`; about 35 min of both cores when empty) or with what this bench's "
                            "questions are answered, by one unmeasured call that asks them all (questions)")
    bench.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    bench.add_argument("--ready-timeout", type=float, default=600.0, help="seconds to wait for the server's models")
    bench.set_defaults(func=_bench)
