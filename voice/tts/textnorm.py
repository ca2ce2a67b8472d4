"""Text normalisation for speech: what a hotline sentence sounds like when read aloud, in English and Mandarin.

Both voices need it: Kokoro's phonemizers read digits badly (misaki's Chinese G2P reads "12345" as a quantity,
"一万二千三百四十五"; espeak reads "WP202611000123" as one huge number), and nobody wants to hear a URL. The rules
follow how a hotline agent reads things out:

- phone numbers and hotline numbers digit by digit ("12345" -> "one two three four five" / "幺二三四五": in Chinese
  the digit 1 is read 幺 in phone and document numbers, as agents do, so it cannot be misheard as 七);
- application / document numbers (WP202611000123): the letters, then the digits one by one;
- dates as dates (2026-11-20 -> "November twentieth, twenty twenty-six" / "二零二六年十一月二十日"), times as times;
- percentages, currency (USD, $, ¥, RMB, 元), decimals, ordinals, ranges;
- URLs and e-mail addresses are dropped (they should never reach speech; if they do, they are not read out);
- emoji and other symbols are dropped.

`language_runs` then splits mixed text into runs of one script, so English words inside Chinese (a form name,
"Single Window", an acronym) go to the English phonemizer and the Chinese around them to the Chinese one.
Everything here is pure string code: unit-tested on hand-written inputs (tests/test_voice_tts_textnorm.py).
"""
from __future__ import annotations

import re
import unicodedata
from typing import Literal

import cn2an

from voice.language import HAN

Language = Literal["en", "zh"]

# ---------------------------------------------------------------- scripts

_HAN_RE = re.compile(f"[{HAN}]")
_LATIN_RE = re.compile(r"[A-Za-z]")
# Punctuation that both phonemizers understand as prosody; everything else non-alphanumeric is dropped.
_KEEP_PUNCT = set(",.;:!?'\"()-—…、，。；：！？“”‘’（）《》「」")


def script_language(text: str) -> Language:
    """The language a text is written in, by script: any Han character makes it Mandarin.

    A Chinese answer quoting an English form name stays Chinese; an English answer does not normally contain Han
    characters. (The caller's language is decided elsewhere, from audio and text; this is only for `hotline say`.)
    """
    han = len(_HAN_RE.findall(text))
    latin = len(_LATIN_RE.findall(text))
    # One Han character weighs about as much as a 4-letter English word.
    return "zh" if han and han * 4 >= latin else "en"


def has_speakable(text: str) -> bool:
    """True when something is left to say after normalisation (not empty, not only emoji / punctuation / URLs)."""
    return bool(re.search(rf"[A-Za-z0-9{HAN}]", normalize(text, script_language(text))))


# ---------------------------------------------------------------- English number words

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
         "seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand"))
_ORDINAL_IRREGULAR = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
                      "nine": "ninth", "twelve": "twelfth"}
_DIGIT_EN = dict(zip("0123456789", "zero one two three four five six seven eight nine".split()))
_DIGIT_ZH = dict(zip("0123456789", "零一二三四五六七八九"))
_DIGIT_ZH_PHONE = {**_DIGIT_ZH, "1": "幺"}


def en_cardinal(n: int) -> str:
    if n < 0:
        return "minus " + en_cardinal(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + ("-" + _ONES[ones] if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return _ONES[hundreds] + " hundred" + (" " + en_cardinal(rest) if rest else "")
    for value, word in _SCALES:
        if n >= value:
            high, rest = divmod(n, value)
            return en_cardinal(high) + " " + word + (" " + en_cardinal(rest) if rest else "")
    raise AssertionError(n)  # unreachable: every n >= 1000 meets a scale


def en_ordinal(n: int) -> str:
    words = en_cardinal(n)
    head, sep, last = words.rpartition(" ")
    if "-" in last:
        head2, _, last = last.rpartition("-")
        head, sep = (head + sep + head2), "-"
    if last in _ORDINAL_IRREGULAR:
        last = _ORDINAL_IRREGULAR[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last = last + "th"
    return head + sep + last


def en_year(n: int) -> str:
    """2026 -> twenty twenty-six; 2000 -> two thousand; 2005 -> two thousand five; 1990 -> nineteen ninety."""
    if 2000 <= n <= 2009:
        return en_cardinal(n)
    high, low = divmod(n, 100)
    if 1100 <= n <= 2099 and low == 0:
        return en_cardinal(high) + " hundred"
    if 1100 <= n <= 2099:
        return en_cardinal(high) + " " + (en_cardinal(low) if low >= 10 else "oh " + en_cardinal(low))
    return en_cardinal(n)


def en_decimal(text: str) -> str:
    whole, _, frac = text.partition(".")
    out = en_cardinal(int(whole))
    if frac:
        out += " point " + " ".join(_DIGIT_EN[d] for d in frac)
    return out


def zh_number(text: str) -> str:
    """'20' -> 二十, '3.5' -> 三点五, '10' -> 十 (cn2an, which misaki's Chinese G2P also uses)."""
    try:
        return cn2an.an2cn(text)
    except Exception:  # cn2an refuses some shapes (very long digit strings): read them digit by digit
        return "".join(_DIGIT_ZH.get(c, c) for c in text)


def zh_year(text: str) -> str:
    return "".join(_DIGIT_ZH[d] for d in text)  # years are read digit by digit: 二零二六


def digits(text: str, language: Language) -> str:
    """Read a digit string one digit at a time (phone, hotline and document numbers)."""
    ds = [c for c in text if c.isdigit()]
    if language == "zh":
        return "".join(_DIGIT_ZH_PHONE[d] for d in ds)
    return " ".join(_DIGIT_EN[d] for d in ds)


def spell_letters(letters: str, language: Language) -> str:
    # Spaced capitals are read as letter names by espeak ("W P" -> double-u pee), in both languages' runs.
    return " ".join(letters.upper())


# ---------------------------------------------------------------- patterns

_NOT_ALNUM_BEFORE = r"(?<![A-Za-z0-9])"
_NOT_ALNUM_AFTER = r"(?![A-Za-z0-9])"
_URL_RE = re.compile(
    r"(?:(?:https?|ftp)://|www\.)[^\s，。！？；、）)\"']*[^\s，。！？；、）)\"'.,;:!?]"
    r"|[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
    r"|" + _NOT_ALNUM_BEFORE + r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.(?:com|cn|org|net|gov|edu|io|info)(?:/[^\s，。]*)?"
    + _NOT_ALNUM_AFTER,
    re.IGNORECASE,
)
_THOUSANDS_RE = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_APPLICATION_RE = re.compile(_NOT_ALNUM_BEFORE + r"([A-Z]{1,4})[- ]?(\d{6,})" + _NOT_ALNUM_AFTER)
_ISO_DATE_RE = re.compile(_NOT_ALNUM_BEFORE + r"(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})" + _NOT_ALNUM_AFTER)
_ZH_DATE_RE = re.compile(r"(?:(\d{4})\s*年\s*)?(\d{1,2})\s*月\s*(\d{1,2})\s*[日号]")
_ZH_YEAR_RE = re.compile(r"(\d{4})\s*年")
_ZH_MONTH_RE = re.compile(r"(\d{1,2})\s*月份?")
_MONTHS = ("January February March April May June July August September October November December").split()
_MONTH_ALT = "|".join(_MONTHS + [m[:3] + r"\.?" for m in _MONTHS])
_EN_MONTH_DAY_RE = re.compile(
    rf"\b({_MONTH_ALT})\s+(\d{{1,2}})(?:st|nd|rd|th)?{_NOT_ALNUM_AFTER}(?:,?\s*(\d{{4}}){_NOT_ALNUM_AFTER})?",
    re.IGNORECASE)
_EN_DAY_MONTH_RE = re.compile(
    rf"{_NOT_ALNUM_BEFORE}(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?({_MONTH_ALT})\b(?:,?\s*(\d{{4}}){_NOT_ALNUM_AFTER})?",
    re.IGNORECASE)
_TIME_RE = re.compile(_NOT_ALNUM_BEFORE + r"([01]?\d|2[0-3])[:：]([0-5]\d)(?:\s*([AaPp])\.?\s?[Mm](?:\.(?!\s|$))?)?" + _NOT_ALNUM_AFTER)
_TIME_RANGE_RE = re.compile(_TIME_RE.pattern[:-len(_NOT_ALNUM_AFTER)] + r"\s*[-–~～至到]\s*" + _TIME_RE.pattern[len(_NOT_ALNUM_BEFORE):])
_HOUR_MERIDIEM_RE = re.compile(_NOT_ALNUM_BEFORE + r"(1[0-2]|0?[1-9])\s*([AaPp])\.?\s?[Mm](?:\.(?!\s|$))?"
                               + _NOT_ALNUM_AFTER)
_PERCENT_RE = re.compile(r"(\d+(?:\.\d+)?)\s*[%％]")
_NUM = r"(\d+(?:\.\d+)?)"
_CURRENCY_BEFORE_RE = re.compile(r"(US\$|USD|\$|¥|￥|RMB|CNY)\s?" + _NUM, re.IGNORECASE)
_CURRENCY_AFTER_RE = re.compile(_NUM + r"\s?(USD|US dollars?|dollars?|RMB|CNY|yuan|美元|美金|人民币)"
                                + _NOT_ALNUM_AFTER, re.IGNORECASE)
_GROUPED_PHONE_RE = re.compile(r"(?<![A-Za-z0-9.])(\+?\d{1,4}(?:[ -]\d{2,8}){1,4})(?![A-Za-z0-9.])")
_PHONE_BEFORE = re.compile(
    r"(call|dial|phone|telephone|hotline|number|tel|fax|mobile|ring|电话|拨打|致电|热线|号码|手机|联系|传真|打)"
    r"[^\d]{0,12}$", re.IGNORECASE)
_PHONE_AFTER = re.compile(r"^\s*(hotline|热线|服务热线|市民热线)", re.IGNORECASE)
_ORDINAL_RE = re.compile(r"(\d+)(st|nd|rd|th)" + _NOT_ALNUM_AFTER, re.IGNORECASE)
_RANGE_RE = re.compile(r"(\d+(?:\.\d+)?)\s*[-–—~～至]\s*(\d+(?:\.\d+)?)")
_NUMBER_RE = re.compile(r"\d+(?:\.\d+)?")
_ZH_LIANG_RE = re.compile(r"(?<![\d.])2(?=\s*[个位次件天周份张本项名种条家])")
_CURRENCY_WORDS = {
    "en": {"usd": "US dollars", "$": "US dollars", "us$": "US dollars", "dollar": "US dollars",
           "dollars": "US dollars", "us dollar": "US dollars", "us dollars": "US dollars", "¥": "yuan",
           "￥": "yuan", "rmb": "yuan", "cny": "yuan", "yuan": "yuan", "美元": "US dollars", "美金": "US dollars",
           "人民币": "yuan"},
    "zh": {"usd": "美元", "$": "美元", "us$": "美元", "dollar": "美元", "dollars": "美元", "us dollar": "美元",
           "us dollars": "美元", "¥": "元", "￥": "元", "rmb": "元", "cny": "元", "yuan": "元", "美元": "美元",
           "美金": "美金", "人民币": "元人民币"},
}


def _number(text: str, language: Language) -> str:
    if language == "zh":
        return zh_number(text)
    return en_decimal(text) if "." in text else en_cardinal(int(text))


def _date(year: str | None, month: str, day: str, language: Language) -> str | None:
    m, d = int(month), int(day)
    if not (1 <= m <= 12 and 1 <= d <= 31):
        return None
    if language == "zh":
        return (zh_year(year) + "年" if year else "") + zh_number(str(m)) + "月" + zh_number(str(d)) + "日"
    out = f"{_MONTHS[m - 1]} {en_ordinal(d)}"
    return out + (f", {en_year(int(year))}" if year else "")


def _month_index(name: str) -> int:
    key = name.rstrip(".")[:3].lower()
    return [m[:3].lower() for m in _MONTHS].index(key) + 1


def _time(hour: str, minute: str, meridiem: str | None, language: Language) -> str:
    h, m = int(hour), int(minute)
    if language == "zh":
        out = zh_number(str(h)) + "点"
        if m:
            out += ("零" if m < 10 else "") + zh_number(str(m)) + "分"
        if meridiem:
            out = ("上午" if meridiem.lower() == "a" else "下午") + out
        return out
    if not meridiem and h > 12:  # 17:00 -> five p m: how a hotline says its office hours
        h, meridiem = h - 12, "p"
    if m == 0:
        out = en_cardinal(h) + ("" if meridiem else " o'clock")
    elif m < 10:
        out = en_cardinal(h) + " oh " + en_cardinal(m)
    else:
        out = en_cardinal(h) + " " + en_cardinal(m)
    return out + (f" {meridiem.lower()} m" if meridiem else "")


def _is_phone_context(text: str, start: int, end: int) -> bool:
    return bool(_PHONE_BEFORE.search(text[max(0, start - 20):start]) or _PHONE_AFTER.search(text[end:end + 8]))


# ---------------------------------------------------------------- normalise

def clean(text: str, language: Language = "en") -> str:
    """Unicode-normalise, replace URLs / e-mail addresses, drop emoji and other symbols, collapse spaces."""
    text = unicodedata.normalize("NFKC", text)
    text = _URL_RE.sub(lambda m: _link(text, m, language), text)
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        if ch.isalnum() or ch.isspace() or ch in _KEEP_PUNCT or ch in "%$¥￥&+/:@#":
            out.append(ch)
        elif cat.startswith("P"):
            out.append(" ")  # unknown punctuation: a word boundary, no sound
        # symbols (emoji, arrows, dingbats), controls, private use: dropped
    text = "".join(out)
    text = re.sub(r"\s+", " ", text)
    # An emptied URL leaves "visit  ." or "访问 。": tidy the gap.
    text = re.sub(r"\s+([,.;:!?，。；：！？、])", r"\1", text)
    return text.strip()


def _link(text: str, m: re.Match, language: Language) -> str:
    # A link is never read out: it becomes "the website" ("网站"), or nothing when the text already says so
    # ("访问网站 https://..."), so the sentence still makes sense when spoken.
    email = "@" in m[0] and "/" not in m[0]
    before = text[max(0, m.start() - 12):m.start()].lower()
    if re.search(r"(website|site|web page|e-?mail|address|网站|网址|邮箱|邮件|链接)\W*$", before):
        return " "
    if language == "zh":
        return "电子邮箱" if email else "网站"
    return " the e-mail address " if email else " the website "


def normalize(text: str, language: Language) -> str:
    """The text as it is to be spoken: numbers, dates, times, phone and application numbers in words of `language`.

    English words stay as they are (in Chinese text too: `language_runs` sends them to the English phonemizer).
    """
    if language not in ("en", "zh"):
        raise ValueError(f"language must be 'en' or 'zh', not {language!r}")
    text = clean(text, language)
    if not text:
        return ""
    text = _THOUSANDS_RE.sub("", text)
    text = _APPLICATION_RE.sub(lambda m: f" {spell_letters(m[1], language)} {digits(m[2], language)} ", text)
    text = _ISO_DATE_RE.sub(lambda m: _date(m[1], m[2], m[3], language) or m[0], text)
    if language == "zh":
        text = _ZH_DATE_RE.sub(lambda m: _date(m[1], m[2], m[3], "zh") or m[0], text)
        text = _ZH_YEAR_RE.sub(lambda m: zh_year(m[1]) + "年", text)
        text = _ZH_MONTH_RE.sub(lambda m: (zh_number(m[1]) + m[0][len(m[1]):].strip()) if 1 <= int(m[1]) <= 12
                                else m[0], text)
    else:
        text = _ZH_DATE_RE.sub(lambda m: _date(m[1], m[2], m[3], "en") or m[0], text)
        text = _EN_MONTH_DAY_RE.sub(lambda m: _date(m[3], str(_month_index(m[1])), m[2], "en") or m[0], text)
        text = _EN_DAY_MONTH_RE.sub(lambda m: _date(m[3], str(_month_index(m[2])), m[1], "en") or m[0], text)
    joiner = "到" if language == "zh" else " to "
    text = _TIME_RANGE_RE.sub(lambda m: _time(m[1], m[2], m[3], language) + joiner + _time(m[4], m[5], m[6], language),
                              text)
    text = _TIME_RE.sub(lambda m: _time(m[1], m[2], m[3], language), text)
    text = _HOUR_MERIDIEM_RE.sub(lambda m: _time(m[1], "00", m[2], language), text)
    text = _PERCENT_RE.sub(
        lambda m: ("百分之" + _number(m[1], "zh")) if language == "zh" else (_number(m[1], "en") + " percent"), text)
    text = _CURRENCY_BEFORE_RE.sub(lambda m: _money(m[2], m[1], language), text)
    text = _CURRENCY_AFTER_RE.sub(lambda m: _money(m[1], m[2], language), text)
    text = _GROUPED_PHONE_RE.sub(lambda m: _grouped(m, language), text)
    text = _digit_runs(text, language)
    if language == "en":
        text = _ORDINAL_RE.sub(lambda m: en_ordinal(int(m[1])), text)
        text = _RANGE_RE.sub(lambda m: f"{m[1]} to {m[2]}", text)
        text = re.sub(r"(?<![\d.])(19\d\d|20\d\d)(?![\d.])", lambda m: en_year(int(m[1])), text)
        text = re.sub(r"\bNo\.\s?(?=\d)", "number ", text)
        text = text.replace("&", " and ").replace("+", " plus ").replace("@", " at ").replace("#", " number ")
    else:
        text = _RANGE_RE.sub(lambda m: f"{m[1]}到{m[2]}", text)
        text = _ZH_LIANG_RE.sub("两", text)
        text = text.replace("&", "和").replace("+", "加").replace("@", " at ").replace("#", "号")
    text = _NUMBER_RE.sub(lambda m: _number(m[0], language), text)
    text = text.replace("%", "").replace("$", "").replace("¥", "").replace("/", " ")
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"\s+([,.;:!?，。；：！？、])", r"\1", text)
    if language == "zh":  # no spaces between Han characters (they would become pauses)
        text = re.sub(f"(?<=[{HAN}]) (?=[{HAN}])", "", text)
    return text.strip()


def _money(amount: str, unit: str, language: Language) -> str:
    word = _CURRENCY_WORDS[language][unit.lower()]
    if language == "zh":
        return zh_number(amount) + word
    if amount == "1" and word.endswith("dollars"):
        word = word[:-1]
    return f"{_number(amount, 'en')} {word}"


def _grouped(m: re.Match, language: Language) -> str:
    # "021-6288 1234", "+86 21 1234 5678": a phone number when it holds 7 or more digits; "3-5" is a range.
    raw = m[1]
    if sum(c.isdigit() for c in raw) < 7:
        return raw
    groups = re.findall(r"\d+", raw)
    prefix = ("加" if language == "zh" else "plus ") if raw.startswith("+") else ""
    sep = "，" if language == "zh" else ", "
    return " " + prefix + sep.join(digits(g, language) for g in groups) + " "


def _digit_runs(text: str, language: Language) -> str:
    """Plain digit runs that are phone / hotline / document numbers: read digit by digit."""

    def repl(m: re.Match) -> str:
        run = m[0]
        phone = (len(run) >= 7 or (run.startswith("0") and len(run) >= 3)
                 or (len(run) >= 3 and _is_phone_context(text, m.start(), m.end())))
        return f" {digits(run, language)} " if phone else run

    return re.sub(r"(?<![\d.])\d+(?![\d.])", repl, text)


# ---------------------------------------------------------------- splitting

_SENTENCE_END_RE = re.compile(r"(?<=[。！？!?；;])|(?<=[.…])(?=\s|$)|\n+")
_CLAUSE_END_RE = re.compile(r"(?<=[，,、：:；;—])")


def split_sentences(text: str) -> list[str]:
    """Sentences, in order, with their closing punctuation; blanks dropped. A '.' ends a sentence only before a
    space or the end, so decimals (3.5) and dotted abbreviations inside words stay whole."""
    parts = _SENTENCE_END_RE.split(text.replace("\r", "\n"))
    return [p.strip() for p in parts if p and p.strip()]


def split_clauses(text: str) -> list[str]:
    return [p.strip() for p in _CLAUSE_END_RE.split(text) if p and p.strip()]


def split_words(text: str) -> list[str]:
    """Last resort for an over-long clause without punctuation: words (English) or single characters (Han)."""
    return re.findall(f"[{HAN}]|[^\\s{HAN}]+", text)


_RUN_RE = re.compile(rf"([A-Za-z][A-Za-z'’\-]*(?:[ .]+[A-Za-z][A-Za-z'’\-]*)*)|([^A-Za-z]+)")


def language_runs(text: str, language: Language) -> list[tuple[Language, str]]:
    """Split normalised text into runs of one language: Latin words -> "en", Han (and what is around it) -> "zh".

    In English text only Han characters start a Chinese run; in Chinese text any Latin word starts an English run.
    Punctuation stays with the run it follows, so prosody is kept.
    """
    runs: list[tuple[Language, str]] = []
    if language == "en":
        pattern = re.compile(rf"([{HAN}][{HAN}\s，。、！？；：]*)|([^{HAN}]+)")
        for zh, en in pattern.findall(text):
            _append(runs, "zh" if zh else "en", zh or en)
    else:
        for en, zh in _RUN_RE.findall(text):
            _append(runs, "en" if en else "zh", en or zh)
    return [(lang, chunk.strip()) for lang, chunk in runs if chunk.strip()]


def _append(runs: list[tuple[Language, str]], lang: Language, chunk: str) -> None:
    if not re.search(rf"[A-Za-z0-9{HAN}]", chunk):  # punctuation / spaces only: belongs to the previous run
        if runs:
            runs[-1] = (runs[-1][0], runs[-1][1] + chunk)
        return
    if runs and runs[-1][0] == lang:
        runs[-1] = (lang, runs[-1][1] + chunk)
    else:
        runs.append((lang, chunk))
