"""Turn-taking decisions of a call, as pure code on a clock passed in (tested on a virtual clock)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from voice.language import HAN

NoInputAction = Literal["wait", "reprompt", "goodbye"]


class NoInputPolicy:
    """Re-prompt after `silence_s` of nothing from the caller, then say goodbye after the last re-prompt.

    Silence counts only while the line is idle: the caller is not speaking, nothing is being recognised or
    answered, and the bot is not playing. Any caller speech resets the count of re-prompts.
    """

    def __init__(self, *, silence_s: float, reprompts: int) -> None:
        self.silence_s = silence_s
        self.reprompts = reprompts
        self.reprompts_done = 0
        self._idle_since: float | None = None
        self.enabled = True

    def caller_spoke(self) -> None:
        self.reprompts_done = 0
        self._idle_since = None

    def tick(self, now: float, *, idle: bool) -> NoInputAction:
        if not self.enabled or not idle:
            self._idle_since = None
            return "wait"
        if self._idle_since is None:
            self._idle_since = now
            return "wait"
        if now - self._idle_since < self.silence_s:
            return "wait"
        self._idle_since = None
        if self.reprompts_done < self.reprompts:
            self.reprompts_done += 1
            return "reprompt"
        self.enabled = False
        return "goodbye"


@dataclass(frozen=True, slots=True)
class Segment:
    text: str
    language: Literal["en", "zh"]


_CJK = re.compile(rf"[{HAN}\u3000-\u303f\uff00-\uffef]")  # Han, CJK punctuation, full-width forms
_SENTENCE = re.compile(r"(?<=[.!?。！？])\s*")


def split_by_language(text: str, default: Literal["en", "zh"]) -> list[Segment]:
    """Bilingual text ("Sorry, ... 抱歉，…") -> segments each spoken by the right voice.

    Sentence by sentence: a sentence with Chinese characters is Mandarin, one without is English; neighbours in
    the same language are merged, so a one-language answer stays one segment (one synthesize() call).
    """
    sentences = [s.strip() for s in _SENTENCE.split(text) if s and s.strip()]
    segments: list[Segment] = []
    for sentence in sentences:
        has_cjk = bool(_CJK.search(sentence))
        has_latin = bool(re.search(r"[A-Za-z]{2,}", sentence))
        if has_cjk:
            lang: Literal["en", "zh"] = "zh"
        elif has_latin:
            lang = "en"
        else:
            lang = default  # digits, punctuation: keep the answer's language
        if segments and segments[-1].language == lang:
            segments[-1] = Segment(segments[-1].text + (" " if lang == "en" else "") + sentence, lang)
        else:
            segments.append(Segment(sentence, lang))
    return segments or [Segment(text.strip(), default)]


class SynthesisPace:
    """Seconds of synthesis per spoken unit (an English word, a Mandarin syllable), per language: a weighted running
    mean over the first chunks this process synthesized (cached audio is not synthesis). Shared by all calls; it
    follows the CPU the service runs on and the load it carries."""

    def __init__(self, *, weight: float = 0.3) -> None:
        self.weight = weight
        self._rate: dict[str, float] = {}

    def observe(self, language: str, units: int, synthesis_s: float) -> None:
        if units <= 0 or synthesis_s <= 0:
            return
        rate = synthesis_s / units
        old = self._rate.get(language)
        self._rate[language] = rate if old is None else old + self.weight * (rate - old)

    def expected_s(self, language: str, units: int) -> float | None:
        """Expected synthesis time of `units`; None until this language has been observed."""
        rate = self._rate.get(language)
        return None if rate is None else rate * units


def acknowledgement_wait(*, now: float, started_at: float, expected_s: float | None, ack_audio_s: float) -> float:
    """Seconds to go on waiting for the answer's first chunk, at the time an acknowledgement ("One moment.") is due
    and the chunk is still synthesizing; 0 = say the acknowledgement now. The answer waits behind an acknowledgement
    until it has been said, so one that ends after the answer is ready only delays it: when the chunk is expected
    before the acknowledgement would end, wait for it instead (a little longer than expected, in case the estimate
    is short; the acknowledgement still comes if it is not ready by then). No estimate yet: acknowledge. Pure."""
    if expected_s is None:
        return 0.0
    remaining = started_at + expected_s - now
    if remaining >= ack_audio_s:
        return 0.0
    return min(ack_audio_s, max(0.0, remaining) + 0.3)
