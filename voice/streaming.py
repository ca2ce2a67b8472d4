"""Streaming transcription of a call: VAD endpointing, partial hypotheses, final transcripts.

Three pieces, as whisper_streaming separates them:
- `Endpointer`: pure policy over VAD probabilities; takes `now` (stream seconds), so it is tested on a virtual clock.
- `HypothesisBuffer`: LocalAgreement-2 — commit the longest common prefix of the last two hypotheses; the committed
  text never retracts.
- `StreamingTranscriber`: one per call; `accept()` is cheap (VAD only) and says when a partial or a final is due;
  `partial()` / `final()` run Whisper and are meant for the recognition pool, off the event loop.
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field, replace
from typing import Union

import numpy as np

from voice.asr import Recognizer
from voice.audio import AudioFormatError, pcm16_to_float
from voice.language import HAN, CallLanguage, heard_in_call_language
from voice.settings import VoiceSettings
from voice.types import SAMPLE_RATE, LanguageVerdict, PartialTranscript, SpeechStarted, Transcript
from voice.vad import Vad, speech_regions

# ---------------------------------------------------------------- endpointing (pure)


@dataclass(frozen=True, slots=True)
class UtteranceStart:
    at_s: float  # where the speech began (before the confirming windows)


@dataclass(frozen=True, slots=True)
class PartialDue:
    start_s: float
    now_s: float


@dataclass(frozen=True, slots=True)
class UtteranceEnd:
    start_s: float
    end_s: float  # end of the last voiced window (the trailing silence is not part of it)
    reason: str  # "silence" | "max_length" | "flush"


@dataclass(frozen=True, slots=True)
class PrefinalDue:
    """The caller has been silent for `prefinal_silence_s`: the utterance probably ended at `end_s`.

    Recognising it now, speculatively, hides recognition behind the rest of the end-of-utterance silence: if the
    caller stays silent, the final is exactly this audio and its result is reused (see StreamingTranscriber).
    """

    start_s: float
    end_s: float
    now_s: float
    # The early one (early_prefinal_silence_s): worth running only while the recognizer has nothing else to do,
    # since more of the short pauses inside an utterance reach it. The later one comes for the same silence too.
    early: bool = False


EndpointEvent = Union[UtteranceStart, PartialDue, PrefinalDue, UtteranceEnd]

# How an utterance heard so far ends, judged from its (speculative) transcript. A question that is plainly complete
# ends the utterance after a shorter silence; a trailing filler, conjunction or comma waits longer for the rest.
_QUESTION_END = re.compile(
    r"[?？]\s*$|(?:[吗呢吧么嘛]|怎么办|怎么样|多少钱?|多久|哪里|哪儿|什么时候)[。.!！]?\s*$"
)
_HESITATION_END = re.compile(
    r"(?:[,，、:：…]|\.\.\.|\b(?:um+|uh+|er+|erm|hmm+|and|but|or|so|because|the|a|an|to|of|for|my|is|with|about)"
    r"|嗯+|呃+|啊|那个|就是|然后|还有|和|跟|的|因为|所以|但是)\s*$",
    re.IGNORECASE,
)


# A "question" shorter than this (words, or Han characters) is open, not complete: Whisper punctuates the start
# of a question heard in a pause as a question of its own ("How do?" for "How do I | pay ..."), and a short
# complete question only loses the shorter end silence.
COMPLETE_MIN_WORDS = 4
_WORDS = re.compile(f"[{HAN}]|[A-Za-z0-9]+(?:['’][A-Za-z]+)?")


def ending_kind(text: str) -> str:
    """ "complete" (a question that has ended), "hesitant" (more is coming) or "open" (cannot tell). Pure."""
    t = text.strip()
    if not t:
        return "open"
    if _HESITATION_END.search(t):
        return "hesitant"
    if _QUESTION_END.search(t) and len(_WORDS.findall(t)) >= COMPLETE_MIN_WORDS:
        return "complete"
    return "open"


@dataclass
class Endpointer:
    """Decides, from one VAD probability per window, where utterances start and end."""

    threshold: float = 0.5
    min_speech_s: float = 0.25
    end_silence_s: float = 0.6
    max_utterance_s: float = 25.0
    partial_interval_s: float = 0.8
    prefinal_silence_s: float | None = 0.25  # None: no speculative recognition
    early_prefinal_silence_s: float | None = None  # None: no early speculation (see PrefinalDue.early)
    # The end silence after what was heard (see heard()): shorter after a complete question, longer after a
    # hesitation. None: always end_silence_s.
    complete_silence_s: float | None = None
    hesitation_silence_s: float | None = None
    window_s: float = 0.032
    # Hysteresis (as Silero's own iterator): once speaking, only clearly lower probabilities count as silence.
    neg_offset: float = 0.15

    _candidate_start: float | None = field(default=None, init=False)
    _voiced_s: float = field(default=0.0, init=False)
    _start: float | None = field(default=None, init=False)
    _last_voice_end: float = field(default=0.0, init=False)
    _last_partial: float = field(default=0.0, init=False)
    _prefinal_for: float | None = field(default=None, init=False)  # the voice end a prefinal was issued for
    _early_for: float | None = field(default=None, init=False)  # the voice end an early prefinal was issued for
    # (voice end, end silence) from heard(): valid only while the caller stays silent after that voice end.
    _adapted: tuple[float, float] | None = field(default=None, init=False)

    @classmethod
    def from_settings(cls, s: VoiceSettings, *, window_s: float) -> "Endpointer":
        return cls(threshold=s.vad_threshold, min_speech_s=s.min_speech_s, end_silence_s=s.end_silence_s,
                   max_utterance_s=s.max_utterance_s, partial_interval_s=s.partial_interval_s,
                   prefinal_silence_s=s.prefinal_silence_s, early_prefinal_silence_s=s.early_prefinal_silence_s,
                   complete_silence_s=s.end_silence_complete_s,
                   hesitation_silence_s=s.end_silence_hesitation_s, window_s=window_s)

    @property
    def in_speech(self) -> bool:
        return self._start is not None

    def heard(self, text: str, voice_end_s: float) -> float:
        """What the utterance that stopped at `voice_end_s` says so far (the speculative recognition): sets the
        silence that ends it, for as long as the caller stays silent. Returns that silence. May be called from
        another thread than update() (one tuple assignment)."""
        kind = ending_kind(text)
        silence = self.end_silence_s
        if kind == "complete" and self.complete_silence_s is not None:
            silence = self.complete_silence_s
        elif kind == "hesitant" and self.hesitation_silence_s is not None:
            silence = self.hesitation_silence_s
        self._adapted = (voice_end_s, silence)
        return silence

    def _end_silence(self) -> float:
        adapted = self._adapted
        if adapted is not None and adapted[0] == self._last_voice_end:
            return adapted[1]
        return self.end_silence_s

    def update(self, prob: float, now: float) -> list[EndpointEvent]:
        """`prob` is the VAD probability of the window that ENDS at `now` (stream seconds)."""
        events: list[EndpointEvent] = []
        win_start = now - self.window_s
        if self._start is None:
            if prob >= self.threshold:
                if self._candidate_start is None:
                    self._candidate_start, self._voiced_s = win_start, 0.0
                self._voiced_s += self.window_s
                if self._voiced_s >= self.min_speech_s:
                    self._start = self._candidate_start
                    self._last_voice_end = now
                    self._last_partial = now
                    events.append(UtteranceStart(self._start))
            elif self._candidate_start is not None and now - self._candidate_start > self.min_speech_s * 2:
                self._candidate_start = None  # a click or a cough, not the start of speech
            return events
        if prob >= self.threshold - self.neg_offset:
            self._last_voice_end = now
        if now - self._last_voice_end >= self._end_silence():
            events.append(UtteranceEnd(self._start, self._last_voice_end, "silence"))
            self._reset()
        elif now - self._start >= self.max_utterance_s:
            events.append(UtteranceEnd(self._start, now, "max_length"))
            self._start, self._last_partial, self._last_voice_end = now, now, now  # still speaking
        elif (self.prefinal_silence_s is not None and now - self._last_voice_end >= self.prefinal_silence_s
              and self._prefinal_for != self._last_voice_end):
            self._prefinal_for = self._early_for = self._last_voice_end  # no early one after it
            events.append(PrefinalDue(self._start, self._last_voice_end, now))
        elif (self.early_prefinal_silence_s is not None and self._early_for != self._last_voice_end
              and now - self._last_voice_end >= self.early_prefinal_silence_s):
            self._early_for = self._last_voice_end
            events.append(PrefinalDue(self._start, self._last_voice_end, now, early=True))
        elif now - self._last_partial >= self.partial_interval_s and now - self._last_voice_end < self.window_s * 2:
            # Partials only while the caller is actually speaking: in a pause they would repeat the last one.
            self._last_partial = now
            events.append(PartialDue(self._start, now))
        return events

    def flush(self, now: float) -> list[EndpointEvent]:
        """The stream ended (hang-up): close an open utterance."""
        if self._start is None:
            return []
        ev = UtteranceEnd(self._start, self._last_voice_end, "flush")
        self._reset()
        return [ev]

    def _reset(self) -> None:
        self._prefinal_for = None
        self._early_for = None
        self._adapted = None
        self._start = None
        self._candidate_start = None
        self._voiced_s = 0.0


# ---------------------------------------------------------------- LocalAgreement-2 (pure)

_TOKEN = re.compile(f"[{HAN}]|[^\\s{HAN}]+")


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def _join(tokens: list[str]) -> str:
    out = ""
    for tok in tokens:
        # Spaces only between two Latin words: Chinese characters and punctuation attach directly.
        if out and tok[0].isascii() and tok[0].isalnum() and out[-1].isascii() and out[-1].isalnum():
            out += " "
        out += tok
    return out


def join_text(*parts: str) -> str:
    """Pieces of one hypothesis (a partial's stable and unstable text) as one text, spaced as `_join` spaces."""
    return _join([tok for part in parts for tok in _tokens(part)])


@dataclass
class HypothesisBuffer:
    """Commits the longest common prefix of the last two hypotheses; never retracts what it committed."""

    committed: list[str] = field(default_factory=list)
    _previous: list[str] = field(default_factory=list)

    def insert(self, hypothesis: str) -> tuple[str, str]:
        """Returns (stable, unstable) text after this hypothesis."""
        new = _tokens(hypothesis)
        n = len(self.committed)
        # Only agreement beyond what is committed can grow it; earlier tokens are never rewritten.
        if new[:n] == self.committed and self._previous[:n] == self.committed:
            i = n
            while i < min(len(new), len(self._previous)) and new[i] == self._previous[i]:
                i += 1
            self.committed = new[:i]
        self._previous = new
        tail = new[len(self.committed):] if new[: len(self.committed)] == self.committed else []
        return _join(self.committed), _join(tail)

    def reset(self) -> None:
        self.committed, self._previous = [], []


# ---------------------------------------------------------------- the per-call transcriber


@dataclass(frozen=True, slots=True)
class PartialRequest:
    audio: np.ndarray
    start_s: float
    now_s: float
    utterance: int  # sequence number: a partial for an utterance that has since ended is dropped
    # Set for the speculative recognition at the start of a silence: the end of speech it assumes. Worth running
    # even when partials are being skipped, because the final reuses its result.
    speculative_end_s: float | None = None
    early: bool = False  # the early speculative recognition: run it only while the recognizer is idle


@dataclass(frozen=True, slots=True)
class FinalRequest:
    audio: np.ndarray
    start_s: float
    end_s: float
    reason: str
    utterance: int


StreamEvent = Union[SpeechStarted, PartialRequest, FinalRequest]


class _SampleBuffer:
    """The audio kept for the current utterance. Appending a 32 ms window must not copy the whole utterance (with
    np.concatenate a 25 s utterance copied ~600 MB, window by window, on the VAD's path); dropping from the front
    only moves an offset."""

    __slots__ = ("_data", "_start", "_end")

    def __init__(self, capacity: int = SAMPLE_RATE * 4) -> None:
        self._data = np.zeros(capacity, dtype=np.float32)
        self._start = 0
        self._end = 0

    def __len__(self) -> int:
        return self._end - self._start

    def append(self, samples: np.ndarray) -> None:
        n = len(samples)
        if self._end + n > len(self._data):
            live = self._data[self._start : self._end]
            grown = np.empty(max(len(self._data), 2 * (len(live) + n)), dtype=np.float32)
            grown[: len(live)] = live
            self._data, self._start, self._end = grown, 0, len(live)
        self._data[self._end : self._end + n] = samples
        self._end += n

    def drop_front(self, n: int) -> None:
        self._start += min(max(n, 0), len(self))

    def slice(self, a: int, b: int) -> np.ndarray:
        """Samples [a, b) counted from the front, as a copy (it outlives later appends)."""
        b = min(b, len(self))
        return self._data[self._start + a : self._start + b].copy() if b > a else np.zeros(0, dtype=np.float32)


class _Speculation:
    __slots__ = ("done", "result", "early")

    def __init__(self, early: bool = False) -> None:
        self.done = threading.Event()
        self.result: Transcript | None = None
        self.early = early

MAX_FRAME_BYTES = 64 * 1024


class StreamingTranscriber:
    """One per call. Not thread-safe across accept(); partial()/final() may run in a worker thread."""

    def __init__(self, *, recognizer: Recognizer, vad: Vad, settings: VoiceSettings,
                 call_language: CallLanguage | None = None) -> None:
        self.recognizer = recognizer
        self.vad = vad
        self.settings = settings
        self.call_language = call_language or CallLanguage(switch_min_s=settings.language_switch_min_s)
        self._window = vad.window
        self.endpointer = Endpointer.from_settings(settings, window_s=self._window / SAMPLE_RATE)
        self._pending = np.zeros(0, dtype=np.float32)  # samples not yet given to the VAD
        self._samples = 0  # samples consumed by the VAD so far (the stream clock)
        # Audio kept for the current utterance (+ pre-roll), with the stream time of its first sample.
        self._keep = _SampleBuffer()
        self._keep_start = 0.0
        self._utterance = 0
        self._hyp = HypothesisBuffer()
        self._hyp_utterance = -1
        # Speculative results by (utterance, assumed end of speech); final() reuses or waits for them.
        self._speculative: dict[tuple[int, float], _Speculation] = {}
        self._spec_lock = threading.Lock()
        self.reused_finals = 0  # how many finals came from a speculative recognition (for metrics and tests)
        self.reused_early_finals = 0  # ... of them, from the early one (PrefinalDue.early)

    @property
    def stream_s(self) -> float:
        return self._samples / SAMPLE_RATE

    def accept(self, pcm16: bytes, now: float | None = None) -> list[StreamEvent]:
        """Feed caller audio (16 kHz PCM16). Cheap: runs the VAD only. `now` is recorded for partials."""
        if len(pcm16) > MAX_FRAME_BYTES:
            raise AudioFormatError(f"frame of {len(pcm16)} bytes is larger than {MAX_FRAME_BYTES}")
        if not pcm16:
            return []
        audio = pcm16_to_float(pcm16)
        self._pending = np.concatenate([self._pending, audio])
        events: list[StreamEvent] = []
        w = self._window
        while len(self._pending) >= w:
            window, self._pending = self._pending[:w], self._pending[w:]
            self._append_keep(window)
            self._samples += w
            prob = self.vad.speech_prob(window)
            for ev in self.endpointer.update(prob, self.stream_s):
                events.extend(self._on_endpoint(ev))
        return events

    def flush(self) -> list[StreamEvent]:
        """The caller hung up or the stream ended: close any open utterance."""
        events: list[StreamEvent] = []
        for ev in self.endpointer.flush(self.stream_s):
            events.extend(self._on_endpoint(ev))
        return events

    def _append_keep(self, window: np.ndarray) -> None:
        self._keep.append(window)
        if not self.endpointer.in_speech:
            # Outside speech keep only a pre-roll (padding + the windows that confirm the start).
            limit = int((self.settings.speech_pad_s + self.settings.min_speech_s * 2 + 0.1) * SAMPLE_RATE)
            if len(self._keep) > limit:
                drop = len(self._keep) - limit
                self._keep.drop_front(drop)
                self._keep_start += drop / SAMPLE_RATE

    def _slice(self, start_s: float, end_s: float) -> np.ndarray:
        pad = self.settings.speech_pad_s
        a = max(0, int(round((start_s - pad - self._keep_start) * SAMPLE_RATE)))
        b = min(len(self._keep), int(round((end_s + pad - self._keep_start) * SAMPLE_RATE)))
        return self._keep.slice(a, b)

    def _on_endpoint(self, ev: EndpointEvent) -> list[StreamEvent]:
        if isinstance(ev, UtteranceStart):
            self._utterance += 1
            return [SpeechStarted(at_s=ev.at_s)]
        if isinstance(ev, PartialDue):
            return [PartialRequest(self._slice(ev.start_s, ev.now_s), ev.start_s, ev.now_s, self._utterance)]
        if isinstance(ev, PrefinalDue):
            # Exactly the audio the final will take if the caller stays silent (same slice, same padding).
            return [PartialRequest(self._slice(ev.start_s, ev.end_s), ev.start_s, ev.now_s, self._utterance,
                                   speculative_end_s=ev.end_s, early=ev.early)]
        audio = self._slice(ev.start_s, ev.end_s)
        req = FinalRequest(audio, max(0.0, ev.start_s - self.settings.speech_pad_s), ev.end_s, ev.reason,
                           self._utterance)
        # Drop what this utterance used; keep the tail (it may hold the next utterance's pre-roll).
        cut = max(0, int(round((ev.end_s - self._keep_start) * SAMPLE_RATE)))
        self._keep.drop_front(cut)
        self._keep_start += cut / SAMPLE_RATE
        return [req]

    def _language_hint(self) -> str | None:
        current = self.call_language.current
        return current.label if current.served and current.source != "hint" else None

    def partial(self, req: PartialRequest) -> PartialTranscript | None:
        """BLOCKING (Whisper). The stable prefix never retracts within an utterance."""
        if req.speculative_end_s is not None:
            return self._speculate(req)
        if req.utterance != self._hyp_utterance:
            self._hyp.reset()
            self._hyp_utterance = req.utterance
        # Partials reuse the call's language when it is settled: they are a preview, the final decides again.
        t = self.recognizer.transcribe(req.audio, language=self._language_hint(), start_s=req.start_s, gate=False,
                                       beam_size=self.settings.partial_beam_size)
        if t is None:
            return None
        stable, unstable = self._hyp.insert(t.text)
        return PartialTranscript(stable=stable, unstable=unstable, start_s=req.start_s, now_s=req.now_s)

    def speculating(self, req: PartialRequest) -> bool:
        """Whether the speculative recognition `req` asks for has already been started (by the early one)."""
        with self._spec_lock:
            return (req.utterance, req.speculative_end_s) in self._speculative

    def _speculate(self, req: PartialRequest) -> PartialTranscript | None:
        key = (req.utterance, req.speculative_end_s)
        spec = _Speculation(req.early)
        with self._spec_lock:
            if key in self._speculative:
                return None
            self._speculative = {k: v for k, v in self._speculative.items() if k[0] >= req.utterance}
            self._speculative[key] = spec
        try:
            spec.result = self._recognize_final(req.audio, req.start_s)
        finally:
            spec.done.set()
        t = spec.result
        if t is None:
            return None
        if self.settings.adaptive_end_silence:
            self.endpointer.heard(t.text, req.speculative_end_s)
        if req.utterance != self._hyp_utterance:
            self._hyp.reset()
            self._hyp_utterance = req.utterance
        stable, unstable = self._hyp.insert(t.text)
        return PartialTranscript(stable=stable, unstable=unstable, start_s=req.start_s, now_s=req.now_s)

    def final(self, req: FinalRequest) -> Transcript | None:
        """BLOCKING (Whisper). None when the utterance was noise after all (gated)."""
        with self._spec_lock:
            spec = self._speculative.pop((req.utterance, req.end_s), None)
        if spec is not None and spec.done.wait(timeout=30.0):
            self.reused_finals += 1
            self.reused_early_finals += int(spec.early)
            t = spec.result
        else:
            t = self._recognize_final(req.audio, req.start_s)
        if t is None:
            return None
        return self._fold_language(t, req.end_s - req.start_s)

    def _recognize_final(self, audio: np.ndarray, start_s: float) -> Transcript | None:
        t = self.recognizer.transcribe(audio, start_s=start_s, gate=False)
        call = self.call_language.current
        if t is None or not heard_in_call_language(t.language, call,
                                                   other_min_prob=self.settings.other_language_in_call_min_prob):
            return t
        # An unsure "other" in a call that has been English or Mandarin so far: an accent, not another language.
        # Decoded in the other language the words are nonsense, so the utterance is decoded again in the call's.
        again = self.recognizer.transcribe(audio, language=call.label, start_s=start_s, gate=False)
        if again is None:
            return t
        heard = LanguageVerdict(label=call.label, code=call.label, probability=call.probability, source="call",
                                mixed=again.language.mixed)
        return replace(again, language=heard, recognition_s=t.recognition_s + again.recognition_s,
                       encoder_s=t.encoder_s + again.encoder_s)

    def _fold_language(self, t: Transcript, duration_s: float) -> Transcript:
        call = self.call_language.observe(t.language, duration_s=duration_s, text=t.text)
        if call.label != t.language.label and call.served and t.language.served:
            # A short, ambiguous utterance ("OK", "好的") does not flip the call: it is heard in the call's language.
            t = replace(t, language=replace(call, source="call"))
        return t


def transcribe_file(recognizer: Recognizer, audio: np.ndarray, *, settings: VoiceSettings, vad: Vad | None = None,
                    language: str | None = None) -> list[Transcript]:
    """A whole file: VAD finds speech (none -> no text), chunks of ≤ max_utterance_s are transcribed."""
    from voice.vad import build_vad

    vad = vad or build_vad(settings)
    regions = [r for r in speech_regions(vad, audio, threshold=settings.vad_threshold)
               if r[1] - r[0] >= min(settings.min_speech_s, 0.1)]
    if not regions or sum(b - a for a, b in regions) < settings.min_speech_s:
        return []
    chunks: list[list[float]] = []
    for a, b in regions:
        if chunks and b - chunks[-1][0] <= settings.max_utterance_s:
            chunks[-1][1] = b
        else:
            chunks.append([a, b])
    call = CallLanguage.from_hint(language, switch_min_s=settings.language_switch_min_s)
    out: list[Transcript] = []
    pad = settings.speech_pad_s
    for a, b in chunks:
        s = max(0.0, a - pad)
        piece = audio[int(s * SAMPLE_RATE) : int((b + pad) * SAMPLE_RATE)]
        t = recognizer.transcribe(piece, language=language, start_s=s, gate=False)
        if t is not None:
            call.observe(t.language, duration_s=b - a, text=t.text)
            out.append(t)
    return out
