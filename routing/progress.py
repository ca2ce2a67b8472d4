"""Work-permit progress: the application number as spoken, and the store of applications it is looked up in.

Callers say their number aloud and the recogniser writes it in many ways: "WP2026110001", "W P two zero two six
one one double zero zero one", "申请编号WP二零二六幺幺零零零幺". `parse_application_number` turns any of these into
the canonical form (letters upper-case, then digits). Caller-supplied numbers never go into log text.
"""
from __future__ import annotations

import logging
import re
import sqlite3
import threading
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

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


# --- the store ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Application:
    number: str
    status_en: str
    status_zh: str
    updated: str  # ISO date

    def status(self, language: str) -> str:
        return self.status_zh if language == "zh" else self.status_en


class ApplicationFileError(ValueError):
    """An applications file cannot be imported as written."""


_NUMBER_RE = re.compile(r"^[A-Z]{0,3}[0-9]{6,20}$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def read_applications_file(path: Path) -> list[Application]:
    """Validate `applications: [{number, status_en, status_zh, updated}]`; errors name the item."""
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
        out.append(Application(number, item["status_en"].strip(), item["status_zh"].strip(), updated))
    return out


class ApplicationStore:
    """Work-permit applications in a SQLite file; one connection, guarded by a lock (lookups are sub-millisecond)."""

    def __init__(self, *, path: Path | str) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS applications ("
            " number TEXT PRIMARY KEY, digits TEXT NOT NULL, status_en TEXT NOT NULL, status_zh TEXT NOT NULL,"
            " updated TEXT NOT NULL)"
        )
        self._db.execute("CREATE INDEX IF NOT EXISTS applications_digits ON applications(digits)")
        self._db.commit()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM applications").fetchone()[0])

    def upsert(self, applications: Iterable[Application]) -> int:
        rows = [(a.number, re.sub(r"\D", "", a.number), a.status_en, a.status_zh, a.updated) for a in applications]
        with self._lock, self._db:
            self._db.executemany(
                "INSERT INTO applications(number, digits, status_en, status_zh, updated) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT(number) DO UPDATE SET digits=excluded.digits, status_en=excluded.status_en,"
                " status_zh=excluded.status_zh, updated=excluded.updated",
                rows,
            )
        return len(rows)

    def find(self, number: ApplicationNumber) -> Application | None:
        """Exact match; a number said without its letters matches on the digits when exactly one does."""
        with self._lock:
            row = self._db.execute(
                "SELECT number, status_en, status_zh, updated FROM applications WHERE number = ?", (number.canonical,)
            ).fetchone()
            if row is None:
                rows = self._db.execute(
                    "SELECT number, status_en, status_zh, updated FROM applications WHERE digits = ? LIMIT 2",
                    (number.digits,),
                ).fetchall()
                row = rows[0] if len(rows) == 1 else None
        return Application(*row) if row else None


def open_store(*, path: Path, demo_file: Path | None) -> ApplicationStore:
    """Open the store; an empty store is filled with the demonstration applications (if the file exists)."""
    store = ApplicationStore(path=path)
    if store.count() == 0 and demo_file is not None and Path(demo_file).is_file():
        n = store.upsert(read_applications_file(demo_file))
        log.info("application store filled with demonstration applications", extra={"count": n})
    return store

