"""Masking of caller data in text: phone numbers, Chinese resident ID numbers, passport and application numbers.

Pure functions, no I/O. Used wherever a transcript leaves the agent who is on the call: the supervisor console, the
history API, exports, the offer shown to an agent before accepting, and log fields.

What is masked, and how it is labelled (the label replaces the whole number, nothing of it is kept):
- [APPLICATION]  work-permit application numbers: "WP" + digits (routing/data/applications.yaml: WP + 12 digits),
                 also as recognised speech ("W P 2026 1100 0123", "wp-202611000123").
- [ID]           Chinese resident identity numbers (GB 11643-1999): 17 digits + a check character (digit or X) whose
                 ISO 7064 MOD 11-2 checksum is right AND whose birth date is a real date.
- [PASSPORT]     Chinese passports (E/G/D/S/P + optional letter + 7-8 digits), and any 1-2 letters + 6-9 digits or
                 a 6-12 character alphanumeric token with digits in it within a few words after "passport"/"护照".
- [PHONE]        Chinese mobiles (1[3-9] + 9 digits, optionally +86 / 0086 / 86 in front), landlines with an area
                 code (0 + 2-3 digits + 7-8 digits), and international numbers written with + or 00 (8-15 digits).
- [NUMBER]       any other run of 7 or more digits. This is where an 18-character ID with a WRONG checksum ends up:
                 the checksum decides the label (a supervisor can tell a real ID from a misheard number), but a
                 malformed ID is still caller data (Whisper drops or swaps digits), so it is never shown either.

Digits may be ASCII, full-width, or spoken Chinese numerals (一二三…, 幺 for 1, 〇/零 for 0), separated by spaces,
hyphens, dots or brackets, as speech recognisers write them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable

_ZH_DIGITS = {"零": "0", "〇": "0", "一": "1", "幺": "1", "二": "2", "两": "2", "三": "3", "四": "4", "五": "5",
              "六": "6", "七": "7", "八": "8", "九": "9"}
_FULLWIDTH = {chr(0xFF10 + i): str(i) for i in range(10)}
_DIGIT_CHARS = "0-9\uff10-\uff19" + "".join(_ZH_DIGITS)
_D = f"[{_DIGIT_CHARS}]"
_SEP = r"[ \u3000\-.\u00b7()（）]"

ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK = "10X98765432"

LABELS = ("APPLICATION", "ID", "PASSPORT", "PHONE", "NUMBER")


def _digits(text: str) -> str:
    """ASCII digits (and a trailing X) of a candidate span; separators dropped."""
    out = []
    for ch in text:
        if ch.isascii() and ch.isdigit():
            out.append(ch)
        elif ch in _FULLWIDTH:
            out.append(_FULLWIDTH[ch])
        elif ch in _ZH_DIGITS:
            out.append(_ZH_DIGITS[ch])
        elif ch in "xX":
            out.append("X")
    return "".join(out)


def id_checksum_char(first17: str) -> str:
    if len(first17) != 17 or not first17.isdigit():
        raise ValueError("the first 17 characters of a resident ID are digits")
    return ID_CHECK[sum(int(c) * w for c, w in zip(first17, ID_WEIGHTS)) % 11]


def is_valid_resident_id(value: str) -> bool:
    """GB 11643-1999: 17 digits, a MOD 11-2 check character, and a real birth date (YYYYMMDD at 7-14)."""
    v = value.strip().upper()
    if len(v) != 18 or not v[:17].isdigit() or not (v[17].isdigit() or v[17] == "X"):
        return False
    if id_checksum_char(v[:17]) != v[17]:
        return False
    import datetime as dt

    try:
        born = dt.date(int(v[6:10]), int(v[10:12]), int(v[12:14]))
    except ValueError:
        return False
    return 1900 <= born.year <= dt.date.today().year


def _is_phone(raw: str, digits: str) -> bool:
    stripped = raw.lstrip()
    if stripped.startswith("+") or digits.startswith("00"):
        core = digits[2:] if digits.startswith("00") else digits
        return 8 <= len(core) <= 15
    if digits.startswith("86") and len(digits) == 13 and re.fullmatch(r"1[3-9]\d{9}", digits[2:]):
        return True
    if re.fullmatch(r"1[3-9]\d{9}", digits):
        return True
    return bool(re.fullmatch(r"0\d{2,3}\d{7,8}", digits))


_APPLICATION = re.compile(rf"(?<![A-Za-z0-9])[Ww][ \-]?[Pp][ \-:]?(?:{_D}{_SEP}?){{5,}}{_D}")
_PASSPORT_CN = re.compile(r"(?<![A-Za-z0-9])[EeGgDdSsPp][A-Za-z]?[ \-]?\d{7,8}(?![A-Za-z0-9])")
_PASSPORT_WORD = re.compile(r"(passport|护照)", re.IGNORECASE)
_TOKEN = re.compile(r"(?<![A-Za-z0-9])(?=[A-Za-z0-9\-]*\d)[A-Za-z0-9][A-Za-z0-9\-]{4,14}[A-Za-z0-9](?![A-Za-z0-9])")
# A run of digits with separators: at least 7 digits (shorter numbers are years, amounts, days).
_RUN = re.compile(rf"(?<![A-Za-z0-9\uff10-\uff19])(?:\+|＋)?(?:{_D}{_SEP}{{0,2}}){{6,}}{_D}(?:{_SEP}?[Xx])?(?![A-Za-z0-9\uff10-\uff19])")


@dataclass(frozen=True, slots=True)
class Finding:
    start: int
    end: int
    label: str  # one of LABELS


def find_personal_data(text: str) -> list[Finding]:
    """Non-overlapping spans of caller data in `text`, in order."""
    if not text:
        return []
    found: list[Finding] = []

    def free(start: int, end: int) -> bool:
        return all(end <= f.start or start >= f.end for f in found)

    def add(start: int, end: int, label: str) -> None:
        if start < end and free(start, end):
            found.append(Finding(start, end, label))

    for m in _APPLICATION.finditer(text):
        add(m.start(), m.end(), "APPLICATION")
    for m in _RUN.finditer(text):
        digits = _digits(m.group())
        if len(digits) == 18 and is_valid_resident_id(digits):
            add(m.start(), m.end(), "ID")
    for m in _PASSPORT_CN.finditer(text):
        add(m.start(), m.end(), "PASSPORT")
    for w in _PASSPORT_WORD.finditer(text):
        window_end = min(len(text), w.end() + 40)  # "my passport number is X": a few words after the keyword
        for m in _TOKEN.finditer(text, w.end(), window_end):
            if sum(c.isdigit() for c in m.group()) >= 5:
                add(m.start(), m.end(), "PASSPORT")
                break
    for m in _RUN.finditer(text):
        raw = m.group()
        digits = _digits(raw).rstrip("X")
        if len(digits) < 7:
            continue
        add(m.start(), m.end(), "PHONE" if _is_phone(raw, digits) else "NUMBER")
    return sorted(found, key=lambda f: f.start)


def mask_text(text: str | None) -> str | None:
    """`text` with every finding replaced by its label in brackets, e.g. "call me on [PHONE]"."""
    if not text:
        return text
    out = []
    last = 0
    for f in find_personal_data(text):
        out.append(text[last:f.start])
        out.append(f"[{f.label}]")
        last = f.end
    out.append(text[last:])
    return "".join(out)


def mask_fields(record: dict[str, Any], fields: Iterable[str] = ("text", "note", "caller_id")) -> dict[str, Any]:
    """A copy of `record` with the named text fields masked (caller_id is a phone number: masked whole)."""
    out = dict(record)
    for key in fields:
        value = out.get(key)
        if isinstance(value, str) and value:
            out[key] = "[PHONE]" if key == "caller_id" else mask_text(value)
    return out


def mask_structure(value: Any) -> Any:
    """`value` (str, dict, list, …) with every string masked: for log fields that carry caller data."""
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {k: mask_structure(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask_structure(v) for v in value]
    return value
