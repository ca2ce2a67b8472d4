"""Turn-taking decisions of a call, as pure code on a clock passed in (tested on a virtual clock)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

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


_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]")
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
