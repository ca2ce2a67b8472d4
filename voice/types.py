"""Typed messages that leave voice/: what was heard and what is to be played.

Everything here describes itself (as faster-whisper's TranscriptionInfo does): a transcript carries its language,
the probability of that language and where the decision came from, so nothing downstream has to guess.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

SAMPLE_RATE = 16_000  # the only rate inside the core; telephony formats are converted at the edge (voice.audio)
FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000  # 320 samples = 640 bytes of PCM16

# Languages the hotline serves. Anything else is reported as "other" with its own code, never forced into these.
Served = Literal["en", "zh"]
LanguageLabel = Literal["en", "zh", "other", "unknown"]
LanguageSource = Literal["audio", "text", "script", "audio+text", "call", "hint", "none"]


@dataclass(frozen=True, slots=True)
class LanguageVerdict:
    """The language of one utterance (or of the call so far)."""

    label: LanguageLabel  # "en" / "zh" served; "other" = a language the hotline does not serve; "unknown" = no speech
    code: str  # the detected code itself: "en", "zh", "ja", "ko", "ru", "fr", "yue" ... ("" when unknown)
    probability: float  # 0..1, confidence in `label`
    source: LanguageSource  # which signal decided
    mixed: bool = False  # Mandarin with English words in it (stays "zh")

    @property
    def served(self) -> bool:
        return self.label in ("en", "zh")


@dataclass(frozen=True, slots=True)
class Transcript:
    """A final transcript of one utterance."""

    text: str  # Chinese always in Simplified characters
    language: LanguageVerdict
    start_s: float  # utterance start, seconds from the start of the stream / file
    end_s: float
    engine: str  # "faster-whisper" | "openai-whisper"
    model: str  # "whisper-base"
    recognition_s: float  # wall time spent in the recognizer for this utterance
    encoder_s: float = 0.0  # of which the encoder (the rest: language detection and decoding)
    no_speech_prob: float = 0.0
    avg_logprob: float = 0.0

    @property
    def words(self) -> int:
        return len(self.text.split()) if self.language.label != "zh" else len(self.text.replace(" ", ""))


@dataclass(frozen=True, slots=True)
class PartialTranscript:
    """While the caller speaks: `stable` never retracts (LocalAgreement-2); `unstable` may change."""

    stable: str
    unstable: str
    start_s: float
    now_s: float


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """The VAD heard the start of an utterance (used for barge-in)."""

    at_s: float


@dataclass(frozen=True, slots=True)
class SpeechChunk:
    """A piece of synthesized speech, ready to stream: 16 kHz mono PCM16 little-endian."""

    pcm16: bytes
    text: str  # the sentence this chunk speaks
    language: Served
    index: int  # 0, 1, 2 ... within one synthesize() call
    last: bool
    voice: str = ""  # "kokoro" | "espeak"
    synthesis_s: float = 0.0
    sample_rate: int = field(default=SAMPLE_RATE)

    @property
    def duration_s(self) -> float:
        return len(self.pcm16) / 2 / self.sample_rate
