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

LABELS = ("APPLICATION", "ID", "PASSPORT", "PHONE", "EMAIL", "NUMBER")


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
    stripped = raw.lstrip().lower()
    if stripped.startswith(("+", "＋", "plus")) or digits.startswith("00"):
        core = digits[2:] if digits.startswith("00") else digits
        return 8 <= len(core) <= 15
    if digits.startswith("86") and len(digits) == 13 and re.fullmatch(r"1[3-9]\d{9}", digits[2:]):
        return True
    if re.fullmatch(r"1[3-9]\d{9}", digits):
        return True
    return bool(re.fullmatch(r"0\d{2,3}\d{7,8}", digits))


# ------------------------------------------------------------------ digit runs as recognition writes them
#
# A number is read out in groups, and a recogniser writes the groups with whatever it heard between them: spaces,
# hyphens, dots, brackets ("(021) 6234 5678"), commas ("139, 8765, 4321", "138，1234，5678"), slashes, or as words
# ("one three nine ...", "double five"). The text is cut into digit TOKENS (a run of digit characters, or one
# English digit word); tokens join into GROUPS (what was said in one breath: adjacent characters, or digit words
# separated by spaces), and groups into RUNS across a separator. Commas and slashes also separate ordinary numbers
# ("Room 1203, floor 12", "on the 26, 2025"), so across them a run continues only between groups of 3 or more
# digits, as phone and ID numbers are grouped.

_WORD_DIGITS = {"zero": "0", "oh": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
                "seven": "7", "eight": "8", "nine": "9"}
_REPEAT = {"double": 2, "triple": 3}
_TOKEN = re.compile(
    r"(?<![A-Za-z])(?P<word>(?i:zero|oh|one|two|three|four|five|six|seven|eight|nine|double|triple))(?![A-Za-z])"
    rf"|(?P<chars>{_D}+)")
_WORD_GAP = re.compile(r"[ \u3000]{1,2}|[ \u3000]?-[ \u3000]?")  # between spoken digit words of one group
_STRONG_GAP = re.compile(rf"{_SEP}{{1,2}}|[ \u3000][\-–—][ \u3000]")
_WEAK_GAP = re.compile(r"[ \u3000]?[,，、/／][ \u3000]?")
_CURRENCY_BEFORE = re.compile(r"(?:[$¥￥€£]|rmb|usd|cny|hkd)\s?$", re.IGNORECASE)
_CURRENCY_AFTER = re.compile(r"^\s?(?:元|块|万|yuan|rmb|dollars?|usd|kuai|euros?)", re.IGNORECASE)
_APPLICATION_PREFIX = re.compile(r"(?<![A-Za-z])[Ww][ .\-]?[Pp][ .:：\-]{0,2}$")
_PASSPORT_PREFIX = re.compile(r"(?<![A-Za-z])[EeGgDdSsPp][A-Za-z]?[ \-]?$")
_PLUS_PREFIX = re.compile(r"(?:\+|＋|(?<![A-Za-z])plus )\s?$", re.IGNORECASE)
_ID_CHECK_AFTER = re.compile(r"^[ \-]?[Xx](?![A-Za-z])")
_PASSPORT_WORD = re.compile(r"(passport|护照)", re.IGNORECASE)
# After "passport": a token of letters and digits, with one or two letters before it as a word of their own
# ("G 78353374", as a recogniser splits a letter from the digits).
_ALNUM_TOKEN = re.compile(r"(?<![A-Za-z0-9])(?:[A-Z]{1,2} )?(?=[A-Za-z0-9\-]*\d)[A-Za-z0-9][A-Za-z0-9\-]{4,14}"
                          r"[A-Za-z0-9](?![A-Za-z0-9])")

# E-mail addresses, written ("li.wei@qq.com", "li.wei @ qq.com") or spoken ("li wei dot zhang at gmail dot com",
# "liwei艾特qq点com"). The spoken form needs a known top-level domain at the end, so "look at this" is not one.
_TLD = r"(?:com|cn|net|org|edu|gov|io|co|uk|de|fr|jp|hk|sg|info|me|us|ca|au)"
_EMAIL_WRITTEN = re.compile(r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9][A-Za-z0-9._%+\-]{0,63}\s?[@＠]\s?"
                            r"[A-Za-z0-9\-]{1,63}(?:\.[A-Za-z0-9\-]{1,63}){0,4}\.[A-Za-z]{2,12}(?![A-Za-z])")
_DOT = r"(?:\s?\.\s?|\s(?i:dot)\s|\s?点\s?)"
_EMAIL_SPOKEN = re.compile(rf"(?<![A-Za-z0-9])[A-Za-z0-9][A-Za-z0-9_\-]{{0,40}}(?:{_DOT}[A-Za-z0-9_\-]{{1,40}}){{0,3}}"
                           rf"(?:\s(?i:at)\s|\s?艾特\s?|\s?[@＠]\s?)"
                           rf"[A-Za-z0-9\-]{{1,40}}(?:{_DOT}[A-Za-z0-9\-]{{1,40}}){{0,3}}?{_DOT}(?i:{_TLD})(?![A-Za-z])")


@dataclass(frozen=True, slots=True)
class Finding:
    start: int
    end: int
    label: str  # one of LABELS


@dataclass
class _Group:
    start: int
    end: int
    digits: str
    join: str = ""  # how it joins the previous group: "strong" | "weak" | "thousands" | "" (first)
    gap: str = ""  # the separator text before it


def _token_digits(match: re.Match[str]) -> str:
    word = match.group("word")
    if word is None:
        return _digits(match.group("chars"))
    return _WORD_DIGITS.get(word.lower(), "")


def _groups(text: str) -> list[list[_Group]]:
    """Digit groups of `text` chained into runs (see the comment above). One pass over the tokens."""
    runs: list[list[_Group]] = []
    run: list[_Group] = []
    repeat = 1  # "double five": the next digit word counts twice
    last_end, last_word = -1, False
    for m in _TOKEN.finditer(text):
        word = (m.group("word") or "").lower()
        digits = "" if word in _REPEAT else _token_digits(m) * repeat
        repeat = _REPEAT.get(word, 1)
        gap = text[last_end:m.start()] if run else ""
        if run and (gap == "" or (word and last_word and _WORD_GAP.fullmatch(gap))):
            run[-1].end = m.end()  # the same group: adjacent characters, or digit words read one by one
            run[-1].digits += digits
        elif run and _STRONG_GAP.fullmatch(gap):
            run.append(_Group(m.start(), m.end(), digits, "strong", gap))
        elif run and _WEAK_GAP.fullmatch(gap):
            thousands = gap in (",", "，") and not word and len(digits) == 3
            run.append(_Group(m.start(), m.end(), digits, "thousands" if thousands else "weak", gap))
        else:
            if run:
                runs.append(run)
            run = [_Group(m.start(), m.end(), digits)]
        last_end, last_word = m.end(), bool(word)
    if run:
        runs.append(run)
    return [[g for g in r if g.digits] for r in runs if any(g.digits for g in r)]


def _segments(run: list[_Group]) -> list[list[_Group]]:
    """Cut a run where a comma or slash stands between groups too short to be parts of one number."""
    out: list[list[_Group]] = [[run[0]]]
    for g in run[1:]:
        prev = out[-1][-1]
        if g.join == "weak" and (len(prev.digits) < 3 or len(g.digits) < 3):
            out.append([g])
        else:
            out[-1].append(g)
    return out


def _is_date_or_amount(groups: list[_Group], text: str) -> bool:
    """Dates (2025-11-26, 26/11/2025, 20251126), year ranges (2020-2025), amounts (1,250,000; 12345.50; ¥1500000)."""
    sizes = [len(g.digits) for g in groups]
    values = [int(g.digits) for g in groups]
    if len(groups) == 3:
        if sizes[0] == 4 and sizes[1] <= 2 and sizes[2] <= 2:
            y, mo, d = values
        elif sizes[2] == 4 and sizes[0] <= 2 and sizes[1] <= 2:
            d, mo, y = values
            if mo > 12:
                d, mo = mo, d  # month first (11/26/2025)
        else:
            y = mo = d = 0
        if 1900 <= y <= 2099 and 1 <= mo <= 12 and 1 <= d <= 31:
            return True
    if sizes == [8]:
        y, mo, d = int(groups[0].digits[:4]), int(groups[0].digits[4:6]), int(groups[0].digits[6:])
        if 1990 <= y <= 2039 and 1 <= mo <= 12 and 1 <= d <= 31:
            return True
    if sizes == [4, 4] and all(1900 <= v <= 2099 for v in values):
        return True
    if sizes[0] <= 3 and len(groups) > 1 and all(g.join == "thousands" for g in groups[1:]):
        return True
    if len(groups) >= 2 and groups[-1].gap == "." and sizes[-1] == 2 and all(g.gap != "." for g in groups[:-1]):
        return True  # a decimal amount
    before = text[max(0, groups[0].start - 5):groups[0].start]
    after = text[groups[-1].end:groups[-1].end + 8]
    return bool(_CURRENCY_BEFORE.search(before) or _CURRENCY_AFTER.match(after))


def find_personal_data(text: str) -> list[Finding]:
    """Non-overlapping spans of caller data in `text`, in order.

    Linear in the length of the text and in the number of findings: every character is claimed at most once
    (a bytearray of what is taken), and the scans are single passes of regular expressions without nesting."""
    if not text:
        return []
    found: list[Finding] = []
    taken = bytearray(len(text))

    def add(start: int, end: int, label: str) -> bool:
        if start >= end or any(taken[start:end]):
            return False
        taken[start:end] = b"\x01" * (end - start)
        found.append(Finding(start, end, label))
        return True

    for pattern in (_EMAIL_WRITTEN, _EMAIL_SPOKEN):
        for m in pattern.finditer(text):
            add(m.start(), m.end(), "EMAIL")
    for w in _PASSPORT_WORD.finditer(text):
        window_end = min(len(text), w.end() + 40)  # "my passport number is X": a few words after the keyword
        for m in _ALNUM_TOKEN.finditer(text, w.end(), window_end):
            if sum(c.isdigit() for c in m.group()) >= 5:
                add(m.start(), m.end(), "PASSPORT")
                break
    for run in _groups(text):
        for groups in _segments(run):
            _classify(text, groups, add)
    return sorted(found, key=lambda f: f.start)


def _classify(text: str, groups: list[_Group], add: Any) -> None:
    start, end = groups[0].start, groups[-1].end
    digits = "".join(g.digits for g in groups)
    head = text[max(0, start - 6):start]
    prefix = _APPLICATION_PREFIX.search(head)
    if prefix is not None and len(digits) >= 6:
        add(start - (len(head) - prefix.start()), end, "APPLICATION")
        return
    prefix = _PASSPORT_PREFIX.search(head)
    if prefix is not None and len(digits) in (7, 8):
        add(start - (len(head) - prefix.start()), end, "PASSPORT")
        return
    if len(digits) == 17:
        check = _ID_CHECK_AFTER.match(text[end:end + 3])
        if check is not None and is_valid_resident_id(digits + "X"):
            add(start, end + check.end(), "ID")
            return
    if len(digits) < 7:
        return
    if len(digits) == 18 and is_valid_resident_id(digits):
        add(start, end, "ID")
        return
    plus = _PLUS_PREFIX.search(text[max(0, start - 6):start])
    if plus is not None:
        start -= len(text[max(0, start - 6):start]) - plus.start()
    raw = text[start:end]
    if _is_phone(raw, digits):
        add(start, end, "PHONE")
        return
    if plus is None and _is_date_or_amount(groups, text):
        return
    add(start, end, "NUMBER")


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
