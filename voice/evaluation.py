"""Scoring recognised text against references: WER for English, CER for Chinese, after normalising.

This normaliser is the judge's own, written independently of the synthesizer's reading rules (voice/tts/textnorm.py)
and used for both sides of every comparison, recognition and synthesis alike: a wrong reading rule in the voice
must show as an error, not be normalised away by the same rule. It folds what is spelling, not speech:

- width and case: full-width letters, digits and punctuation fold to ASCII (NFKC); English is lower-cased;
- punctuation and symbols are dropped;
- numbers, one way only: English digits become words ("25" -> "twenty five", "1455" -> "fourteen fifty five",
  "9:30" -> "nine thirty", "20th" -> "twentieth", "2026-11-20" -> "november twentieth two thousand twenty six");
  Chinese numerals become digits ("十五" -> "15", "二零一一" -> "2011", "幺" -> "1"), so "15 米" and "十五米"
  score alike;
- Traditional Chinese becomes Simplified.
"""
from __future__ import annotations

import re
import unicodedata

import numpy as np

from voice.language import to_simplified

_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen " \
        "seventeen eighteen nineteen".split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
_MONTHS = "january february march april may june july august september october november december".split()
_ORDINAL = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth", "nine": "ninth",
            "twelve": "twelfth"}


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


def _english_number(digits: str) -> str:
    n = int(digits)
    if len(digits) > 1 and digits.startswith("0"):
        return " ".join(_ONES[int(d)] for d in digits)  # "007", "00": read digit by digit
    if 1100 <= n <= 1999 and n % 100:
        return number_to_words(n // 100) + " " + number_to_words(n % 100)  # a year: "fourteen fifty five"
    return number_to_words(n)


def _ordinal(words: str) -> str:
    head, _, last = words.rpartition(" ")
    last = _ORDINAL.get(last) or (last[:-1] + "ieth" if last.endswith("y") else last + "th")
    return (head + " " if head else "") + last


def _iso_date(m: re.Match) -> str:
    year, month, day = (int(g) for g in m.groups())
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return m.group()
    return f" {_MONTHS[month - 1]} {_ordinal(_english_number(str(day)))} {year} "


def _strip_punct(text: str) -> str:
    return "".join(" " if unicodedata.category(ch).startswith(("P", "S")) else ch for ch in text)


def normalize_en(text: str) -> list[str]:
    text = unicodedata.normalize("NFKC", text).lower().replace("'", "").replace("’", "")
    text = re.sub(r"(\d),(\d)", r"\1\2", text)
    # An ISO date is written for the eye; it is said (and written back by Whisper) as "November 20th, 2026".
    text = re.sub(r"\b(\d{4})-(\d\d)-(\d\d)\b", _iso_date, text)
    text = re.sub(r"\b(\d{1,2}):(\d\d)\b", lambda m: f" {m.group(1)} " + ("" if m.group(2) == "00" else m.group(2)), text)
    text = text.replace("oclock", " ").replace("%", " percent ").replace("&", " and ")
    text = re.sub(r"(\d+)(st|nd|rd|th)\b", lambda m: " " + _ordinal(_english_number(m.group(1))) + " ", text)
    text = re.sub(r"\d+", lambda m: " " + _english_number(m.group()) + " ", text)
    text = text.replace("-", " ")
    return _strip_punct(text).split()


_ZH_DIGITS = dict(zip("零〇一二两三四五六七八九幺", "0012234567891"))
_ZH_NUMERAL = re.compile(r"[零〇一二两三四五六七八九幺十百千万亿]+")


def _chinese_numeral(run: str) -> str:
    if any(ch in "十百千万亿" for ch in run):
        import cn2an

        try:
            return str(cn2an.cn2an(run.replace("幺", "一"), "normal"))
        except ValueError:  # not a number ("十分", "万一"): keep the units, map the digits
            pass
    return "".join(_ZH_DIGITS.get(ch, ch) for ch in run)


def normalize_zh(text: str) -> list[str]:
    text = to_simplified(unicodedata.normalize("NFKC", text))
    text = _ZH_NUMERAL.sub(lambda m: _chinese_numeral(m.group()), text)
    text = _strip_punct(text).lower()
    # Chinese is scored per character (and per digit); Latin words inside it (mixed speech) count as one token each.
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


def pooled_rate(counts: list[tuple[int, int]]) -> float:
    """Errors over reference length, summed over clips (a long clip weighs more than a short one)."""
    return sum(e for e, _ in counts) / max(sum(n for _, n in counts), 1)


def bootstrap_ci(counts: list[tuple[int, int]], *, resamples: int = 2000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap over clips of the pooled error rate: the clips are the sample, so the interval says how
    much the figure would move on another draw of clips like these. Fixed seed: the same clips give the same interval.
    """
    if not counts:
        return float("nan"), float("nan")
    arr = np.asarray(counts, dtype=np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(arr), size=(resamples, len(arr)))
    rates = arr[idx, 0].sum(axis=1) / np.maximum(arr[idx, 1].sum(axis=1), 1)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(rates, [tail, 100 - tail])
    return float(lo), float(hi)
