"""Work-permit progress: the application number and the second factor as spoken, and where applications are looked up.

Callers say their number aloud and the recogniser writes it in many ways: "WP2026110001", "W P two zero two six
one one double zero zero one", "申请编号WP二零二六幺幺零零零幺". `parse_application_number` turns any of these into
the canonical form (letters upper-case, then digits). A number alone reveals nothing: the caller must also say a
second factor, the date of birth or the last four characters of the passport (`parse_second_factor`), so that
application numbers cannot be walked. Caller-supplied numbers and factors never go into log text.

Where applications live is not this layer's business: `ApplicationLookup` is the interface the router needs;
`InMemoryApplications` (from a YAML file) serves `hotline ask` and tests, and the server implements it on its main
store (server/store/applications.py: SQLite or PostgreSQL).
"""
from __future__ import annotations

import logging
import re
import datetime as dt
import hmac
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Protocol

import yaml

log = logging.getLogger(__name__)

MIN_DIGITS = 6  # shorter digit strings are times, days or amounts, not application numbers
MAX_PREFIX_LETTERS = 3

_EN_DIGITS = {
    "zero": "0", "oh": "0", "o": "0", "nought": "0", "null": "0",
    "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9",
}
_EN_TEENS = {
    "ten": "10", "eleven": "11", "twelve": "12", "thirteen": "13", "fourteen": "14", "fifteen": "15",
    "sixteen": "16", "seventeen": "17", "eighteen": "18", "nineteen": "19",
}
_EN_TENS = {"twenty": "2", "thirty": "3", "forty": "4", "fifty": "5", "sixty": "6", "seventy": "7",
            "eighty": "8", "ninety": "9"}
_ZH_DIGITS = {"零": "0", "〇": "0", "洞": "0", "一": "1", "幺": "1", "二": "2", "两": "2", "三": "3", "四": "4",
              "五": "5", "六": "6", "七": "7", "八": "8", "九": "9"}
# Letter names as a recogniser may write them when a caller spells.
_LETTER_NAMES = {"pee": "P", "double-u": "W", "doubleu": "W", "dabliu": "W"}
_ZH_LETTER_NAMES = (("达不溜", "W"), ("达布溜", "W"), ("达不留", "W"), ("打不溜", "W"))
_REPEAT = {"double": 2, "triple": 3}
# Words that may sit inside a spoken number without ending it.
_FILLERS = {"dash", "hyphen", "and"}

_TOKEN_RE = re.compile(r"[A-Za-z]+(?:['’-][A-Za-z]+)?|[0-9]+|[\u4e00-\u9fff〇]|[^\sA-Za-z0-9\u4e00-\u9fff]+|\s+")
_SEPARATOR_RE = re.compile(r"^[\s\-_.,，、:：/#]+$")


@dataclass(frozen=True)
class ApplicationNumber:
    letters: str  # "WP", or "" when only digits were said
    digits: str

    @property
    def canonical(self) -> str:
        return self.letters + self.digits

    def spoken(self, language: str) -> str:
        """Read back character by character ("W P 2 0 2 6 ..."), which is how callers check a number."""
        return " ".join(self.canonical)


def _symbols(text: str) -> list[tuple[str, str]]:
    """('L', letter) | ('D', digits) | ('S', separator) | ('X', anything else that ends a number)."""
    for name, letter in _ZH_LETTER_NAMES:
        text = text.replace(name, f" {letter} ")
    out: list[tuple[str, str]] = []
    pending_repeat = 1
    tokens = _TOKEN_RE.findall(text)
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        low = tok.lower()
        i += 1
        if _SEPARATOR_RE.match(tok) or low in _FILLERS:
            out.append(("S", tok))
            continue
        if low in _REPEAT:
            # "double u" is the letter W; "double one" is 11.
            nxt = next((t for t in tokens[i:] if not t.isspace()), "")
            if nxt.lower() in ("u", "you"):
                out.append(("L", "W"))
                i = tokens.index(nxt, i) + 1
                continue
            pending_repeat = _REPEAT[low]
            continue
        digit = None
        if tok.isdigit():
            digit = tok
        elif low in _EN_DIGITS:
            digit = _EN_DIGITS[low]
        elif low in _EN_TEENS:
            digit = _EN_TEENS[low]
        elif low in _EN_TENS:
            # "twenty six" -> 26, "twenty" alone -> 20
            nxt_i = next((j for j in range(i, len(tokens)) if not tokens[j].isspace()), None)
            unit = _EN_DIGITS.get(tokens[nxt_i].lower()) if nxt_i is not None else None
            if unit is not None and unit != "0" and tokens[nxt_i].lower() not in ("oh", "o"):
                digit = _EN_TENS[low] + unit
                i = nxt_i + 1
            else:
                digit = _EN_TENS[low] + "0"
        elif tok in _ZH_DIGITS:
            digit = _ZH_DIGITS[tok]
        if digit is not None:
            out.append(("D", digit * pending_repeat))
            pending_repeat = 1
            continue
        pending_repeat = 1
        if low in _LETTER_NAMES:
            out.append(("L", _LETTER_NAMES[low]))
        elif len(tok) == 1 and tok.isascii() and tok.isalpha() and tok not in ("a", "i", "A"):
            out.append(("L", tok.upper()))
        elif tok.isascii() and tok.isalpha() and tok.isupper() and len(tok) <= MAX_PREFIX_LETTERS:
            out.extend(("L", ch) for ch in tok)  # "WP" written as one word
        elif low == "wp":
            out.extend([("L", "W"), ("L", "P")])
        else:
            out.append(("X", tok))
    return out


def parse_application_number(text: str) -> ApplicationNumber | None:
    """The application number in `text` (the longest run of at least MIN_DIGITS digits), or None."""
    if not text:
        return None
    text = unicodedata.normalize("NFKC", text[:2000])
    best: ApplicationNumber | None = None
    letters: list[str] = []
    digits: list[str] = []

    def close() -> None:
        nonlocal best, letters, digits
        joined = "".join(digits)
        if len(joined) >= MIN_DIGITS and (best is None or len(joined) > len(best.digits)):
            best = ApplicationNumber(letters="".join(letters[-MAX_PREFIX_LETTERS:]), digits=joined)
        letters, digits = [], []

    for kind, value in _symbols(text):
        if kind == "S":
            continue
        if kind == "D":
            digits.append(value)
        elif kind == "L":
            if digits:  # letters after digits start a new number
                close()
            letters.append(value)
        else:
            close()
    close()
    return best


# --- the second factor -----------------------------------------------------------------------------------------------
MAX_LOOKUPS_PER_CALL = 3  # verified look-ups a call may try before it is put through to a person

_MONTH_NAMES = {name: i + 1 for i, name in enumerate((
    "january", "february", "march", "april", "may", "june", "july", "august", "september", "october", "november",
    "december"))}
_MONTH_NAMES.update({name[:3]: num for name, num in list(_MONTH_NAMES.items())})
_MONTH_NAMES["sept"] = 9
_ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8,
             "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "thirteenth": 13, "fourteenth": 14,
             "fifteenth": 15, "sixteenth": 16, "seventeenth": 17, "eighteenth": 18, "nineteenth": 19,
             "twentieth": 20, "thirtieth": 30}
_ZH_NUMBER_CHARS = "零〇一二三四五六七八九幺两十"
_ZH_DATE_RE = re.compile(rf"([0-9{_ZH_NUMBER_CHARS}]{{4}})\s*年\s*([0-9{_ZH_NUMBER_CHARS}]{{1,3}})\s*月\s*"
                         rf"([0-9{_ZH_NUMBER_CHARS}]{{1,3}})\s*[日号號]?")
_YMD_RE = re.compile(r"(?<!\d)((?:19|20)\d{2})\s*[-/.]\s*(\d{1,2})\s*[-/.]\s*(\d{1,2})(?!\d)")
_DMY_RE = re.compile(r"(?<!\d)(\d{1,2})\s*[-/.]\s*(\d{1,2})\s*[-/.]\s*((?:19|20)\d{2})(?!\d)")
_COMPACT_RE = re.compile(r"(?<!\d)((?:19|20)\d{2})(\d{2})(\d{2})(?!\d)")
_WORD_RE = re.compile(r"[a-z]+|\d+")


@dataclass(frozen=True)
class SecondFactor:
    """What the caller said to prove the application is theirs. `dates`: every reading of an ambiguous date
    ("03/04/1990" is 3 April or 4 March): any one matching is enough; `passport_last4`: letters upper-case."""

    dates: tuple[dt.date, ...] = ()
    passport_last4: str | None = None


def _zh_number(text: str) -> int | None:
    """Chinese month or day numbers: "三", "十五", "二十三", "三十一", or digits."""
    if text.isdigit():
        return int(text)
    if "十" in text:
        tens, _, units = text.partition("十")
        t = int(_ZH_DIGITS[tens]) if tens else 1
        u = int(_ZH_DIGITS[units]) if units else 0
        return t * 10 + u if len(tens) <= 1 and len(units) <= 1 else None
    return int(_ZH_DIGITS[text]) if len(text) == 1 and text in _ZH_DIGITS else None


def _date(year: int, month: int, day: int) -> dt.date | None:
    try:
        value = dt.date(year, month, day)
    except ValueError:
        return None
    return value if 1900 <= value.year <= 2100 else None


def _english_numbers(text: str) -> list[tuple[str, int]]:
    """('month', n) | ('year', n) | ('num', n) from spoken English: "the fifteenth of March nineteen ninety"."""
    words = _WORD_RE.findall(re.sub(r"(\d+)(st|nd|rd|th)\b", r"\1", text.lower()))
    out: list[tuple[str, int]] = []
    i = 0

    def small(j: int) -> tuple[int, int] | None:
        """A number below 100 starting at word j (cardinal or ordinal), and the words it took."""
        w = words[j] if j < len(words) else ""
        if w in _ORDINALS:
            return _ORDINALS[w], 1
        if w in _EN_TEENS:
            return int(_EN_TEENS[w]), 1
        if w in _EN_TENS:
            nxt = words[j + 1] if j + 1 < len(words) else ""
            if nxt in _EN_DIGITS and _EN_DIGITS[nxt] != "0":
                return int(_EN_TENS[w]) * 10 + int(_EN_DIGITS[nxt]), 2
            if nxt in _ORDINALS and _ORDINALS[nxt] < 10:
                return int(_EN_TENS[w]) * 10 + _ORDINALS[nxt], 2
            return int(_EN_TENS[w]) * 10, 1
        if w in _EN_DIGITS and w not in ("o", "oh"):
            return int(_EN_DIGITS[w]), 1
        return None

    while i < len(words):
        w = words[i]
        if w.isdigit():
            n = int(w)
            out.append(("year" if 1900 <= n <= 2100 and len(w) == 4 else "num", n))
            i += 1
            continue
        if w in _MONTH_NAMES and not (w == "may" and i + 1 < len(words) and words[i + 1] in ("i", "be", "we")):
            out.append(("month", _MONTH_NAMES[w]))
            i += 1
            continue
        if w == "two" and i + 1 < len(words) and words[i + 1] == "thousand":  # "two thousand (and) five"
            j = i + 2 + (i + 2 < len(words) and words[i + 2] == "and")
            rest = small(j)
            out.append(("year", 2000 + (rest[0] if rest else 0)))
            i = j + (rest[1] if rest else 0)
            continue
        first = small(i)
        if first is None:
            i += 1
            continue
        value, used = first
        # A spoken year is two pairs: "nineteen ninety five", "twenty twelve", "nineteen oh five".
        if value in (19, 20) and i + used < len(words):
            j = i + used
            if words[j] in ("o", "oh") and j + 1 < len(words) and words[j + 1] in _EN_DIGITS:
                out.append(("year", value * 100 + int(_EN_DIGITS[words[j + 1]])))
                i = j + 2
                continue
            second = small(j)
            if second is not None and second[0] >= 10:
                out.append(("year", value * 100 + second[0]))
                i = j + second[1]
                continue
        out.append(("num", value))
        i += used
    return out


def parse_dates(text: str) -> tuple[dt.date, ...]:
    """Every date of birth `text` may say, in the forms callers and the recogniser use."""
    text = unicodedata.normalize("NFKC", text[:500])
    found: list[dt.date] = []

    def add(value: dt.date | None) -> None:
        if value is not None and value not in found:
            found.append(value)

    for m in _ZH_DATE_RE.finditer(text):
        year = "".join(_ZH_DIGITS.get(ch, ch) for ch in m.group(1))
        month, day = _zh_number(m.group(2)), _zh_number(m.group(3))
        if year.isdigit() and month and day:
            add(_date(int(year), month, day))
    for m in _YMD_RE.finditer(text):
        add(_date(int(m.group(1)), int(m.group(2)), int(m.group(3))))
    for m in _DMY_RE.finditer(text):  # day/month/year, or month/day/year as written in the US: both readings
        a, b, year = int(m.group(1)), int(m.group(2)), int(m.group(3))
        add(_date(year, b, a))
        add(_date(year, a, b))
    for m in _COMPACT_RE.finditer(text):
        add(_date(int(m.group(1)), int(m.group(2)), int(m.group(3))))
    if not found:
        tokens = _english_numbers(text)
        months = [n for kind, n in tokens if kind == "month"]
        years = [n for kind, n in tokens if kind == "year"]
        days = [n for kind, n in tokens if kind == "num" and 1 <= n <= 31]
        if len(months) == 1 and len(years) == 1 and len(days) == 1:
            add(_date(years[0], months[0], days[0]))
    return tuple(found)


def parse_second_factor(text: str) -> SecondFactor | None:
    """A date of birth, else the last four characters of the longest run of letters and digits (a passport)."""
    if not isinstance(text, str) or not text.strip():
        return None
    dates = parse_dates(text)
    if dates:
        return SecondFactor(dates=dates)
    if "月" in text or any(kind == "month" for kind, _ in _english_numbers(text)):
        return None  # a date that does not exist ("31 February") is not the end of a passport number
    runs: list[str] = []
    current: list[str] = []
    for kind, value in _symbols(unicodedata.normalize("NFKC", text[:500])):
        if kind in ("L", "D"):
            current.append(value)
        elif kind == "X":
            if current:
                runs.append("".join(current))
            current = []
    if current:
        runs.append("".join(current))
    best = max(runs, key=len, default="")
    return SecondFactor(passport_last4=best[-4:].upper()) if len(best) >= 4 else None


# --- applications and where they are looked up ------------------------------------------------------------------------
@dataclass(frozen=True)
class Application:
    number: str
    status_en: str
    status_zh: str
    updated: str  # ISO date
    date_of_birth: str | None = None  # ISO date: the applicant's, one of the two second factors
    passport_last4: str | None = None  # the last four characters of the applicant's passport, upper-case

    def status(self, language: str) -> str:
        return self.status_zh if language == "zh" else self.status_en

    def verified_by(self, factor: SecondFactor) -> bool:
        """Either factor matching is enough; compared in constant time."""
        if self.date_of_birth and any(d.isoformat() == self.date_of_birth for d in factor.dates):
            return True
        return bool(self.passport_last4 and factor.passport_last4
                    and hmac.compare_digest(self.passport_last4.encode(), factor.passport_last4.encode()))


class ApplicationLookup(Protocol):
    """What the router needs from wherever applications are kept. Called from a routing worker thread."""

    def find(self, number: ApplicationNumber) -> Application | None:
        """Exact match; a number said without its letters matches on the digits when exactly one does."""


def digits_of(number: str) -> str:
    return re.sub(r"\D", "", number)


class InMemoryApplications:
    """Applications held in memory (from the demonstration file): `hotline ask`, tests, a router without a store."""

    def __init__(self, applications: Iterable[Application] = ()) -> None:
        self._by_number = {a.number: a for a in applications}

    @classmethod
    def from_file(cls, path: Path | None) -> "InMemoryApplications":
        return cls(read_applications_file(path) if path is not None and Path(path).is_file() else ())

    def __len__(self) -> int:
        return len(self._by_number)

    def find(self, number: ApplicationNumber) -> Application | None:
        found = self._by_number.get(number.canonical)
        if found is None:
            same = [a for a in self._by_number.values() if digits_of(a.number) == number.digits]
            found = same[0] if len(same) == 1 else None
        return found


class ApplicationFileError(ValueError):
    """An applications file cannot be imported as written."""


_NUMBER_RE = re.compile(r"^[A-Z]{0,3}[0-9]{6,20}$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_LAST4_RE = re.compile(r"^[A-Z0-9]{4}$")


def read_applications_file(path: Path) -> list[Application]:
    """Validate `applications: [{number, status_en, status_zh, updated, date_of_birth and/or passport_last4}]`;
    errors name the item. An application without a second factor could never be looked up, so it is refused."""
    path = Path(path)
    if not path.is_file():
        raise ApplicationFileError(f"applications file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ApplicationFileError(f"{path.name}: not valid YAML: {exc}") from exc
    items = data.get("applications") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise ApplicationFileError(f"{path.name}: expected 'applications: [...]'")
    out: list[Application] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        where = f"{path.name} applications[{i}]"
        if not isinstance(item, dict):
            raise ApplicationFileError(f"{where}: expected a mapping")
        number = str(item.get("number", "")).replace(" ", "").upper()
        if not _NUMBER_RE.match(number):
            raise ApplicationFileError(f"{where}: 'number' must be up to 3 letters then 6-20 digits")
        if number in seen:
            raise ApplicationFileError(f"{where}: duplicate number")
        seen.add(number)
        for key in ("status_en", "status_zh"):
            if not isinstance(item.get(key), str) or not item[key].strip():
                raise ApplicationFileError(f"{where}: missing {key!r}")
        updated = str(item.get("updated", ""))
        if not _DATE_RE.match(updated):
            raise ApplicationFileError(f"{where}: 'updated' must be a date YYYY-MM-DD")
        birth = item.get("date_of_birth")
        birth = birth.isoformat() if isinstance(birth, dt.date) else (str(birth) if birth is not None else None)
        if birth is not None and (not _DATE_RE.match(birth) or _date(*map(int, birth.split("-"))) is None):
            raise ApplicationFileError(f"{where}: 'date_of_birth' must be a date YYYY-MM-DD")
        last4 = item.get("passport_last4")
        last4 = str(last4).upper() if last4 is not None else None
        if last4 is not None and not _LAST4_RE.match(last4):
            raise ApplicationFileError(f"{where}: 'passport_last4' must be 4 letters or digits")
        if birth is None and last4 is None:
            raise ApplicationFileError(f"{where}: needs 'date_of_birth' or 'passport_last4' (the second factor)")
        out.append(Application(number, item["status_en"].strip(), item["status_zh"].strip(), updated, birth, last4))
    return out
