"""Scripted fakes of the models, for fast unit tests of the call service (no Whisper, no TTS, no embeddings).

They keep the real interfaces and types (voice.streaming requests, voice.types transcripts and chunks,
routing.router.Decision, routing.prompts.Prompts) so the session under test cannot tell them apart.

FakeStreamingTranscriber: an energy VAD on the real stream clock. Loud frames are speech; `end_silence_s` of quiet
closes the utterance. Each final pops the next scripted (text, language) — the test says what the caller "said".
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from routing.prompts import Prompts
from routing.router import Decision
from server.call.wiring import Components
from voice.streaming import FinalRequest, PartialRequest
from voice.types import SAMPLE_RATE, LanguageVerdict, PartialTranscript, SpeechChunk, SpeechStarted, Transcript

PROMPTS = {
    "prompts": {
        "greeting": {"en": "Welcome to the hotline.", "zh": "您好，欢迎致电热线。", "both": "Welcome. 您好。"},
        "please_hold": {"en": "Please hold.", "zh": "请稍候。"},
        "queue_position": {"en": "You are number {position}, about {wait_minutes} minutes.",
                           "zh": "您排在第{position}位，大约{wait_minutes}分钟。"},
        "transferring": {"en": "Transferring you to a colleague.", "zh": "正在为您转接人工服务。"},
        "no_answer_transfer": {"en": "No answer found; transferring you.", "zh": "没有找到答案，正在为您转接。"},
        "goodbye": {"en": "Goodbye.", "zh": "再见。"},
        "repeat": {"en": "Could you repeat that?", "zh": "请您再说一遍。"},
        "no_input_reprompt": {"en": "Are you still there?", "zh": "您还在吗？"},
        "language_not_served": {"en": "We serve English and Mandarin.", "zh": "我们提供英语和普通话服务。",
                                "both": "Sorry, we serve English and Mandarin. 抱歉，我们只提供英语和普通话服务。"},
        "callback_offer": {"en": "Shall we call you back?", "zh": "需要回电吗？"},
        "callback_confirmed": {"en": "We will call you back.", "zh": "我们会给您回电。"},
        "agent_unavailable": {"en": "No one is free.", "zh": "暂时没有空闲的坐席。"},
        "service_unavailable": {"en": "Sorry, we cannot take calls right now.", "zh": "抱歉，暂时无法接听。"},
    }
}


def fake_prompts() -> Prompts:
    return Prompts.parse(PROMPTS, where="tests")


def verdict(language: str, probability: float = 0.95) -> LanguageVerdict:
    if language.startswith("other:"):
        return LanguageVerdict("other", language.split(":", 1)[1], probability, "audio")
    return LanguageVerdict(language, language, probability, "audio")  # type: ignore[arg-type]


def tone(seconds: float, *, amplitude: float = 0.3, freq: float = 220.0) -> bytes:
    """Loud enough for the fake VAD: stands for caller speech."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (amplitude * np.sin(2 * np.pi * freq * t) * 32767).astype("<i2").tobytes()


def silence(seconds: float) -> bytes:
    return b"\x00\x00" * int(seconds * SAMPLE_RATE)


class FakeStreamingTranscriber:
    def __init__(self, *, script: deque[tuple[str, str]], end_silence_s: float = 0.3, partial_interval_s: float = 0.2,
                 recognition_delay_s: float = 0.0) -> None:
        self.script = script
        self.end_silence_s = end_silence_s
        self.partial_interval_s = partial_interval_s
        self.recognition_delay_s = recognition_delay_s
        self._samples = 0
        self._start: float | None = None
        self._last_voice = 0.0
        self._last_partial = 0.0
        self._utterance = 0
        self.call_language = type("CL", (), {"current": LanguageVerdict("unknown", "", 0.0, "none")})()

    @property
    def stream_s(self) -> float:
        return self._samples / SAMPLE_RATE

    def accept(self, pcm16: bytes, now: float | None = None) -> list[Any]:
        x = np.frombuffer(pcm16, dtype="<i2").astype(np.float32) / 32768
        self._samples += len(x)
        t = self.stream_s
        loud = bool(len(x)) and float(np.abs(x).max()) > 0.05
        events: list[Any] = []
        if loud:
            self._last_voice = t
            if self._start is None:
                self._start = t - len(x) / SAMPLE_RATE
                self._last_partial = t
                self._utterance += 1
                events.append(SpeechStarted(at_s=self._start))
            elif t - self._last_partial >= self.partial_interval_s:
                self._last_partial = t
                events.append(PartialRequest(np.zeros(1, np.float32), self._start, t, self._utterance))
        elif self._start is not None and t - self._last_voice >= self.end_silence_s:
            events.append(FinalRequest(np.zeros(1, np.float32), self._start, self._last_voice, "silence", self._utterance))
            self._start = None
        return events

    def partial(self, req: PartialRequest) -> PartialTranscript | None:
        text = self.script[0][0] if self.script else ""
        words = text.split()
        return PartialTranscript(stable=" ".join(words[:1]), unstable=" ".join(words[1:2]), start_s=req.start_s, now_s=req.now_s)

    def final(self, req: FinalRequest) -> Transcript | None:
        if self.recognition_delay_s:
            time.sleep(self.recognition_delay_s)
        if not self.script:
            return None  # noise: gated
        text, language = self.script.popleft()
        v = verdict(language)
        if v.served:
            self.call_language.current = v
        return Transcript(text=text, language=v, start_s=req.start_s, end_s=req.end_s, engine="fake", model="fake",
                          recognition_s=self.recognition_delay_s)


@dataclass
class FakeSynthesizer:
    """0.04 s of a quiet tone per character (capped), one chunk per call; counts what it was asked."""

    seconds_per_char: float = 0.01
    max_seconds: float = 3.0
    delay_s: float = 0.0
    name: str = "fake"
    calls: list[tuple[str, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def warm_up(self) -> None:
        pass

    def synthesize(self, text: str, language: str) -> Iterator[SpeechChunk]:
        with self._lock:
            self.calls.append((text, language))
        if self.delay_s:
            time.sleep(self.delay_s)
        seconds = min(self.max_seconds, max(0.1, len(text) * self.seconds_per_char))
        pcm = tone(seconds, amplitude=0.02, freq=440.0)
        yield SpeechChunk(pcm16=pcm, text=text, language=language, index=0, last=True, voice="fake")  # type: ignore[arg-type]


class FakeRouter:
    """Keyword routing: 'permit'/'工作许可' -> work_permit_apply; 'person'/'人工' -> agent; other:xx -> not served."""

    def __init__(self) -> None:
        self.prompts = fake_prompts()
        self.calls: list[tuple[str, str]] = []

    def new_dialog(self) -> dict[str, Any]:
        return {}

    def warm_up(self) -> None:
        pass

    def decide(self, text: str, *, language: str, state: Any = None, now: float = 0.0) -> Decision:
        self.calls.append((text, language))
        if language.startswith("other:"):
            return Decision("agent", "human_agent", None, "en", self.prompts.text("language_not_served", "both"),
                            0.0, 0.0, "language_not_served", language.split(":", 1)[1])
        lang = language if language in ("en", "zh") else "en"
        if "person" in text or "人工" in text:
            return Decision("agent", "human_agent", None, lang, self.prompts.text("transferring", lang), 1.0, 1.0,
                            "explicit_agent_request")
        if "permit" in text or "工作许可" in text:
            answer = "Apply online with your employer." if lang == "en" else "请用人单位在网上申请。"
            return Decision("answer", "work_permit_apply", "wp-apply-1", lang, answer, 0.9, 0.5, "fake")
        answer = "We answer questions about work permits." if lang == "en" else "我们解答工作许可相关问题。"
        return Decision("answer", "out_of_scope", None, lang, answer, 0.1, 0.0, "fake")


def fake_components(*, script: list[tuple[str, str]] | None = None, synthesizer: FakeSynthesizer | None = None,
                    router: FakeRouter | None = None, recognition_delay_s: float = 0.0) -> Components:
    """Every call takes its utterances from the shared `script` in order."""
    queue: deque[tuple[str, str]] = deque(script or [])
    router = router or FakeRouter()
    return Components(
        make_transcriber=lambda hint: FakeStreamingTranscriber(script=queue, recognition_delay_s=recognition_delay_s),
        router=router,
        prompts=fake_prompts(),
        synthesizer=synthesizer or FakeSynthesizer(),
    )
