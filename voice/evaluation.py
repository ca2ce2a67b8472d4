"""Scoring recognised text against references: WER for English, CER for Chinese, after normalising.

Normalising: case, punctuation, numbers ("1, 2, 3" == "one two three"; "50" == "五十"), and Traditional vs
Simplified characters, as the recordings' README prescribes.
"""
from __future__ import annotations

import re
import unicodedata

from voice.language import to_simplified

_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen " \
        "seventeen eighteen nineteen".split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_to_words(n: int) -> str:
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10 - 2] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " " + number_to_words(rest))
    if n < 1_000_000:
        rest = n % 1000
        return number_to_words(n // 1000) + " thousand" + ("" if rest == 0 else " " + number_to_words(rest))
    return " ".join(_ONES[int(d)] for d in str(n))


def _strip_punct(text: str) -> str:
    return "".join(" " if unicodedata.category(ch).startswith(("P", "S")) else ch for ch in text)


def normalize_en(text: str) -> list[str]:
    text = text.lower().replace("'", "")
    text = re.sub(r"(\d),(\d)", r"\1\2", text)
    text = re.sub(r"\d+", lambda m: " " + number_to_words(int(m.group())) + " ", text)
    text = text.replace("-", " ")
    return _strip_punct(text).split()


def normalize_zh(text: str) -> list[str]:
    import cn2an

    text = to_simplified(text)
    text = re.sub(r"\d+", lambda m: cn2an.an2cn(m.group(), "low"), text)
    text = _strip_punct(text).lower()
    # Chinese is scored per character; Latin words inside it (mixed speech) count as one token each.
    return re.findall(r"[a-z]+|[^\sa-z]", text)


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def error_counts(reference: str, hypothesis: str, language: str) -> tuple[int, int]:
    """(errors, reference length) in words for English, in characters for Chinese and mixed speech."""
    norm = normalize_en if language == "en" else normalize_zh
    ref, hyp = norm(reference), norm(hypothesis)
    return edit_distance(ref, hyp), len(ref)


def error_rate(reference: str, hypothesis: str, language: str) -> float:
    errors, n = error_counts(reference, hypothesis, language)
    return errors / max(n, 1)
