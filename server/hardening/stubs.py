"""Stand-in models for the hardening runs (fuzzing, kill -9 durability, soak): the call service, its store and its
websockets are real, the models answer at once. These runs measure the service's handling of its inputs, its
storage and its memory, not recognition; restarts take seconds instead of minutes of model loading.

`python -m server.hardening.stubs --port P --db URL` serves the real app with these models (what the runs start);
`--memory-probe FILE` adds the soak's memory probe (server/hardening/memprobe.py).
"""
from __future__ import annotations

import argparse
import math
import struct
from typing import Any, Iterator

from routing.prompts import Prompts
from routing.router import Decision
from server.call.wiring import Components
from voice.streaming import FinalRequest
from voice.types import SAMPLE_RATE, LanguageVerdict, SpeechChunk, SpeechStarted, Transcript

ENGLISH = LanguageVerdict("en", "en", 0.99, "audio")
_QUIET_TONE = b"".join(struct.pack("<h", int(600 * math.sin(2 * math.pi * 440 * i / SAMPLE_RATE)))
                       for i in range(SAMPLE_RATE // 5))  # 0.2 s


class _EnglishCall:
    """The call language the session reads (`transcriber.call_language.current`): always English. A class of its
    own, not one made per call: a class is a reference cycle, garbage the collector would see from every call."""

    current = ENGLISH


class LoudnessListener:
    """Speech = frames with a peak over 0.05 of full scale; 0.3 s below it ends an utterance. Each utterance is
    'heard' as "utterance N", so a run can find every answered turn in the store by its text."""

    def __init__(self) -> None:
        self.samples = 0
        self.began: float | None = None
        self.last_loud = 0.0
        self.count = 0
        self.call_language = _EnglishCall()

    @property
    def stream_s(self) -> float:
        return self.samples / SAMPLE_RATE

    def accept(self, pcm16: bytes, now: float | None = None) -> list[Any]:
        n = len(pcm16) // 2
        peak = max((abs(v) for (v,) in struct.iter_unpack("<h", pcm16[: n * 2])), default=0)
        self.samples += n
        if peak > 1600:
            self.last_loud = self.stream_s
            if self.began is None:
                self.began = self.stream_s - n / SAMPLE_RATE
                return [SpeechStarted(at_s=self.began)]
        elif self.began is not None and self.stream_s - self.last_loud >= 0.3:
            began, self.began = self.began, None
            self.count += 1
            return [FinalRequest(None, began, self.last_loud, "silence", self.count)]  # type: ignore[arg-type]
        return []

    def partial(self, request: Any) -> None:
        return None

    def final(self, request: Any) -> Transcript:
        return Transcript(text=f"utterance {request.utterance}", language=ENGLISH, start_s=request.start_s,
                          end_s=request.end_s, engine="stub", model="stub", recognition_s=0.0)


class ToneVoice:
    name = "stub"

    def warm_up(self) -> None:
        pass

    def synthesize(self, text: str, language: str) -> Iterator[SpeechChunk]:
        yield SpeechChunk(pcm16=_QUIET_TONE, text=text, language=language, index=0, last=True, voice="stub")  # type: ignore[arg-type]


class FixedAnswers:
    def __init__(self, prompts: Prompts) -> None:
        self.prompts = prompts

    def new_dialog(self) -> dict[str, Any]:
        return {}

    def warm_up(self) -> None:
        pass

    def decide(self, text: str, *, language: str, state: Any = None, now: float = 0.0) -> Decision:
        return Decision("answer", "stub", None, "en", "Here is the answer.", 0.9, 0.5, "stub")


def stub_components(_settings: Any = None) -> Components:
    prompts = Prompts.load()
    return Components(make_transcriber=lambda hint: LoudnessListener(), router=FixedAnswers(prompts), prompts=prompts,
                      synthesizer=ToneVoice())


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    from server.app import create_app
    from server.commands import uvicorn_config
    from server.settings import Settings

    parser = argparse.ArgumentParser(description="the hotline app with stand-in models (hardening runs)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--memory-probe", help="append a memory sample to this file at each SIGUSR1 (memprobe.py)")
    parser.add_argument("--trace-frames", type=int, default=0, help="with --memory-probe: tracemalloc snapshots too")
    args = parser.parse_args(argv)
    if args.memory_probe:
        from server.hardening.memprobe import install

        install(args.memory_probe, trace_frames=args.trace_frames)
    settings = Settings.load(None, db_url=args.db, port=args.port)  # the rest from HOTLINE_* (the run's choices)
    server = uvicorn.Server(uvicorn_config(create_app(settings, components=stub_components), settings))
    server.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
