"""A short first chunk: the caller hears an uncached answer sooner.

A voice yields one chunk per sentence, so the first sound waits for the whole first sentence to be synthesized
(2 s and more for a long one on 2 cores). `LeadChunker` speaks the opening clause of a long first sentence on its
own, then the rest, so synthesis of the rest overlaps the playing of the lead.

Where to cut (`lead_cut`) is chosen for intelligibility, Mandarin first: only at a clause mark (，、；： or a comma),
never inside a clause, and only when both sides are long enough to be spoken naturally (a bare "您好" or "Hello"
spoken alone was what raised the Mandarin round-trip CER when every first sentence was cut at its first comma).
Without such a mark the sentence stays whole. The round trip with the lead on is tested in
tests/test_voice_tts_kokoro.py against the same targets (EN <= 5% WER, ZH <= 15% CER).
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace

import numpy as np

from voice.tts.textnorm import Language, split_sentences
from voice.types import SAMPLE_RATE, SpeechChunk

# A lead shorter than this is not worth a chunk of its own; a sentence shorter than LONG is spoken whole (its
# synthesis is already short). Counted in words (English) or Han characters (Mandarin).
MIN_LEAD = {"en": 4, "zh": 6}
MIN_REST = {"en": 3, "zh": 4}
LONG = {"en": 10, "zh": 14}
LEAD_PAUSE_S = 0.1  # the pause after the lead: a comma's, not a sentence's
# After a Chinese clause mark, or an ASCII one followed by a space (never the colon of 9:00 or a 1,000 separator).
_CLAUSE_MARK = re.compile(r"(?<=[，、；：])|(?<=[,;:])(?=\s)")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def _size(text: str, language: Language) -> int:
    return len(_HAN.findall(text)) if language == "zh" else len(re.findall(r"[A-Za-z0-9']+", text))


def lead_cut(text: str, language: Language) -> tuple[str, str] | None:
    """(lead, rest) when the first sentence of `text` is long and has a clause mark where both sides are long
    enough; None to speak it as it is. lead + rest is `text` (whitespace at the cut aside)."""
    sentences = split_sentences(text)
    if not sentences or _size(sentences[0], language) < LONG[language]:
        return None
    first = sentences[0]
    start = text.find(first)
    if start < 0:
        return None
    for m in _CLAUSE_MARK.finditer(first):
        lead, rest_of_first = first[: m.start()], first[m.start():]
        if _size(lead, language) >= MIN_LEAD[language]:
            if _size(rest_of_first, language) < MIN_REST[language]:
                return None
            return lead.strip(), text[start + m.start():].strip()
    return None


class LeadChunker:
    """Wraps a voice: a long first sentence is spoken as lead + rest (see module docstring). Same interface."""

    def __init__(self, inner) -> None:
        self.inner = inner

    @property
    def name(self) -> str:
        return self.inner.name

    def warm_up(self) -> None:
        self.inner.warm_up()

    def synthesize(self, text: str, language: Language) -> Iterator[SpeechChunk]:
        cut = lead_cut(text, language) if isinstance(text, str) and language in MIN_LEAD else None
        if cut is None:
            yield from self.inner.synthesize(text, language)
            return
        lead, rest = cut
        index = 0
        for chunk in self.inner.synthesize(lead, language):
            yield replace(chunk, pcm16=_shorten_pause(chunk.pcm16), index=index, last=False)
            index += 1
        for chunk in self.inner.synthesize(rest, language):
            yield replace(chunk, index=index)
            index += 1


def _shorten_pause(pcm16: bytes) -> bytes:
    """Trailing digital silence (the voice's sentence pause) cut to LEAD_PAUSE_S."""
    samples = np.frombuffer(pcm16, dtype="<i2")
    voiced = np.flatnonzero(samples)
    end = int(voiced[-1]) + 1 if voiced.size else 0
    return samples[: min(len(samples), end + int(LEAD_PAUSE_S * SAMPLE_RATE))].tobytes()
