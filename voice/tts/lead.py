"""A short first chunk: the caller hears an uncached answer sooner.

A voice yields one chunk per sentence, so the first sound waits for the whole first sentence to be synthesized
(Kokoro on 2 cores needs about a quarter of the audio's length: 2.4 s for a 10 s opening sentence). `LeadChunker`
speaks the first few words of a long first sentence on their own, then the rest, so the synthesis of the rest
overlaps the playing of the lead. A lead of about 1.5 to 2.5 s of speech (5 English words, 8 Mandarin syllables)
takes 0.3 to 0.6 s to synthesize, and plays long enough to cover the next chunk.

Where to cut (`lead_cut`) is chosen for intelligibility, Mandarin first:
  1. at a clause mark (，、；： or a comma) when the lead is short;
  2. else at a phrase boundary: before a function word (English: a conjunction, a preposition, "to", a relative
     word; Mandarin: a preposition, a conjunction, a modal or auxiliary verb, found as a word by jieba), so that
     the lead is a subject or an opening phrase and the rest starts a phrase of its own;
  3. else at a clause mark further on (a longer lead, as before);
  4. Mandarin only: else before a verb, adverb or adjective that starts the predicate (jieba's part of speech),
     never after 的/了, an adverb, a preposition or a number;
  5. else at the first clause mark however far on: the lead is long, but shorter than the sentence.
Never inside quotes or brackets (a name, a title), inside a number read as words, or inside a capitalised name.
Both sides must be long enough to be spoken naturally (a bare "您好" or "Hello" spoken alone raised the Mandarin
round-trip CER when every first sentence was cut at its first comma); sizes are counted on the text as it is read
aloud (voice/tts/textnorm.py: "2017" is four syllables in Mandarin, two words in English). A lead cut without a
mark is spoken with a comma after it, so the voice keeps a continuing intonation, and the comma is not in the
chunk's text. The round trip with the lead on is tested in tests/test_voice_tts_kokoro.py against the same targets
(EN <= 5% WER, ZH <= 15% CER).
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from functools import lru_cache

import numpy as np

from voice.language import HAN
from voice.tts.textnorm import Language, normalize, split_sentences
from voice.types import SAMPLE_RATE, SpeechChunk

# A first sentence shorter than LONG is spoken whole (its synthesis is already short). A lead is at least MIN_LEAD
# and, when cut at a phrase boundary, at most MAX_LEAD; a clause mark may give a lead up to MAX_CLAUSE_LEAD. Among
# the allowed cuts of one kind, the one nearest TARGET wins. Counted in words read aloud (English) or syllables
# (Mandarin: Han characters read aloud; a Latin word counts two).
LONG = {"en": 9, "zh": 12}
MIN_LEAD = {"en": 3, "zh": 5}
TARGET = {"en": 5, "zh": 8}
MAX_LEAD = {"en": 7, "zh": 11}
MAX_CLAUSE_LEAD = {"en": 14, "zh": 20}
MIN_REST = {"en": 3, "zh": 4}
LEAD_PAUSE_S = 0.1  # the pause after the lead: a comma's, not a sentence's
# After a Chinese clause mark, or an ASCII one followed by a space (never the colon of 9:00 or a 1,000 separator).
# Not before a number after an ASCII comma: "April 26, 2023" is one date.
_CLAUSE_MARK = re.compile(r"(?<=[，、；：])|(?<=[,;:])(?=\s)(?!\s+\d)")
_HAN = re.compile(f"[{HAN}]")
_LATIN_WORD = re.compile(r"[A-Za-z][A-Za-z'’\-]*")

# Words a phrase starts with: the cut goes before them.
# Not "and" / "or": they join nouns as often as clauses ("bachelor's or higher"); a comma before them is a mark.
EN_PHRASE_START = frozenset("""but so because if when while which that who whom whose where whether to for
with in on at by from through after before until within without under than as about via into during including
unless once""".split())
ZH_PHRASE_START = frozenset("""在 从 向 对 给 把 被 并 并且 但 但是 而 而且 如果 如 需要 需 可以 可
应 应当 应该 须 必须 将 由 为 通过 按照 根据 于 自 就 都 也 还 请 是 会 能 不 没有 要 即可 经""".split())
# Never cut after these: particles, determiners, adverbs and modal verbs bind to what follows them.
ZH_NO_CUT_AFTER = frozenset("""的 了 地 得 之 第 每 各 该 本 其 不 没 也 都 就 还 再 才 只 很 最 更 已 正 能 不能 可以 要 会 应
应当 应该 需 需要 须 必须 将 可 是 正在 已经 仍 仍然 一直""".split())
# Never cut before these: they join two nouns ("英语和普通话") or the ends of a range ("周一至周五").
ZH_NO_CUT_BEFORE = frozenset("和 与 及 以及 或 或者 至 到".split())


def _size(text: str, language: Language) -> int:
    spoken = normalize(text, language)
    if language == "zh":
        return len(_HAN.findall(spoken)) + 2 * len(_LATIN_WORD.findall(spoken))
    return len(re.findall(r"[A-Za-z0-9']+", spoken))


@lru_cache(maxsize=1)
def _posseg():
    import jieba  # a dependency of misaki's Mandarin G2P; loaded with the Mandarin voice anyway
    from jieba import posseg

    jieba.setLogLevel(60)
    return posseg


_OPEN, _CLOSE = "“‘《「（(", "”’》」）)"  # the straight quote, which both opens and closes, is toggled apart
_NUMBER_WORDS = frozenset("""one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen
sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred thousand million
billion""".split())


def _quoted(sentence: str) -> set[int]:
    """Positions inside quotes or brackets: a name or a title is never cut."""
    inside, depth, straight = set(), 0, False
    for i, ch in enumerate(sentence):
        if ch == '"':
            straight = not straight
        elif ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            depth = max(0, depth - 1)
        if depth or straight:
            inside.add(i + 1)
    return inside


def _boundaries(sentence: str, language: Language) -> list[tuple[int, int]]:
    """(position, rank) of every place `sentence` may be cut; rank 1 clause mark, 2 phrase boundary, 4 the start
    of a predicate (Mandarin only). Rank 3 (a clause mark past MAX_LEAD) is given by lead_cut."""
    quoted = _quoted(sentence)
    out = [(m.start(), 1) for m in _CLAUSE_MARK.finditer(sentence) if m.start() not in quoted]
    marks = {p for p, _ in out}
    if language == "en":
        words = list(re.finditer(r"[A-Za-z0-9'’\-]+", sentence))
        for before, word, after in zip(words, words[1:], words[2:] + [None]):
            pos = before.end()
            if word.group().lower() not in EN_PHRASE_START or pos in marks or pos in quoted:
                continue
            if before.group().lower() in _NUMBER_WORDS or before.group()[-1:].isdigit():
                continue  # "one hundred | and eighty" is one number, "9:00 | to 17:00" one range
            if before.group()[:1].isupper() and after is not None and after.group()[:1].isupper():
                continue  # "Foreign Talent | in Shanghai", "Bank | of China": inside a name
            out.append((pos, 2))
        return out
    pos = 0
    previous, previous_flag = "", "x"
    for token in _posseg().lcut(sentence):
        word, flag = token.word, token.flag
        han_here = bool(_HAN.match(word[:1])) and bool(_HAN.search(previous[-1:] or " "))
        if pos and han_here and pos not in marks and pos not in quoted and previous not in ZH_NO_CUT_AFTER \
                and previous[-1:] not in ZH_NO_CUT_AFTER and previous_flag[:1] not in ("p", "u", "m", "q", "c", "d"):
            if word in ZH_NO_CUT_BEFORE:
                pass
            elif word in ZH_PHRASE_START or flag[:1] in ("p", "c"):
                out.append((pos, 2))
            elif flag in ("v", "d", "a") and (previous_flag[:1] == "n" or previous_flag in ("l", "vn", "j", "i")):
                out.append((pos, 4))  # a subject (a noun) then its predicate
        pos += len(word)
        previous, previous_flag = word, flag
    return out


def lead_cut(text: str, language: Language) -> tuple[str, str] | None:
    """(lead, rest) when the first sentence of `text` is long and has a place to cut where both sides are long
    enough (module doc); None to speak it as it is. lead + rest is `text` (whitespace at the cut aside)."""
    sentences = split_sentences(text)
    if not sentences or _size(sentences[0], language) < LONG[language]:
        return None
    first = sentences[0]
    start = text.find(first)
    if start < 0:
        return None
    best: tuple[tuple[int, int], int] | None = None
    for pos, rank in _boundaries(first, language):
        lead, rest = first[:pos], first[pos:]
        n_lead, n_rest = _size(lead, language), _size(rest, language)
        if n_lead < MIN_LEAD[language] or n_rest < MIN_REST[language]:
            continue
        if n_lead > MAX_LEAD[language]:
            if rank != 1:
                continue
            # A clause mark past MAX_CLAUSE_LEAD is the last resort: a long lead still starts sooner than the whole
            # sentence ("可以到上海市公安局出入境管理局或各区分局办理，" is 21 of its 48 syllables).
            rank = 3 if n_lead <= MAX_CLAUSE_LEAD[language] else 5
        key = (rank, abs(n_lead - TARGET[language]))
        if best is None or key < best[0]:
            best = (key, pos)
    if best is None:
        return None
    pos = best[1]
    lead = first[:pos].strip()
    if not lead:
        return None
    return lead, text[start + pos:].strip()


def spoken_units(text: str, language: Language) -> int:
    """How long `text` is to say: English words or Mandarin syllables, read aloud (numbers as words)."""
    return _size(text, language)


def first_chunk_text(text: str, language: Language, *, lead: bool = True) -> str:
    """What a voice speaks first for `text`: its lead (LeadChunker, when on and the first sentence is cut), else its
    first sentence."""
    if lead and language in MIN_LEAD:
        cut = lead_cut(text, language)
        if cut is not None:
            return cut[0]
    sentences = split_sentences(text)
    return sentences[0] if sentences else text


class LeadChunker:
    """Wraps a voice: a long first sentence is spoken as lead + rest (see module docstring). Same interface."""

    def __init__(self, inner) -> None:
        self.inner = inner

    @property
    def name(self) -> str:
        return self.inner.name

    def warm_up(self) -> None:
        self.inner.warm_up()
        # jieba's part-of-speech model loads at its first use (about 0.8 s): not during the first call's answer.
        lead_cut("工作许可一般在十个工作日内办理完毕并通知申请人。", "zh")

    def synthesize(self, text: str, language: Language) -> Iterator[SpeechChunk]:
        cut = lead_cut(text, language) if isinstance(text, str) and language in MIN_LEAD else None
        if cut is None:
            yield from self.inner.synthesize(text, language)
            return
        lead, rest = cut
        # A lead that ends without a mark is read with one: a continuing, not a closing, intonation.
        spoken = lead if lead[-1] in ",;:，、；：" else lead + ("，" if language == "zh" else ",")
        index = 0
        for chunk in self.inner.synthesize(spoken, language):
            yield replace(chunk, pcm16=_shorten_pause(chunk.pcm16), index=index, last=False, text=lead)
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
