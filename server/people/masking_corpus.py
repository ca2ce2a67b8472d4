"""A seeded generator of caller sentences holding personal data as a recogniser writes it, and of sentences holding
numbers that are NOT personal data (dates, times, amounts), to measure the masking (server/people/masking.py).

Positives: Chinese mobile and landline numbers (with and without +86), resident ID numbers (valid checksums),
Chinese passports, work-permit application numbers and e-mail addresses, in English and Mandarin carrier sentences,
written the ways Whisper writes spoken numbers: one block of digits, groups separated by spaces, hyphens, commas
(ASCII and full-width), slashes or brackets, full-width digits, Chinese numerals (with 幺 for one and 〇 or 零 for
zero), English digit words (with "double" and "oh"); e-mail addresses written or spoken ("at", "dot", 艾特, 点).

Recall: a positive counts as masked when every letter and digit of the value lies inside a finding. False mask: a
negative sentence with any finding at all. The data is generated, never picked: `dev` (seed 1) is the set the
masking rules were tuned on, `test` (seed 2) the held-out set the test and `hotline bench masking` report.
"""
from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass
from typing import Any, Callable

from server.people.masking import Finding, find_personal_data, id_checksum_char

SEEDS = {"dev": 1, "test": 2}
KINDS = ("phone", "landline", "id", "passport", "application", "email")

_ZH = "〇一二三四五六七八九"
_EN = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_FULL = "０１２３４５６７８９"


@dataclass(frozen=True)
class Sample:
    text: str
    span: tuple[int, int] | None  # where the personal data is; None for a negative
    kind: str
    language: str


# ------------------------------------------------------------------ values


def _mobile(rng: random.Random) -> tuple[str, list[int]]:
    return "1" + rng.choice("3456789") + "".join(rng.choice("0123456789") for _ in range(9)), [3, 4, 4]


def _landline(rng: random.Random) -> tuple[str, list[int]]:
    area = rng.choice(["021", "010", "020", "0755", "0571"])
    rest = str(rng.randint(2, 8)) + "".join(rng.choice("0123456789") for _ in range(7 if len(area) == 3 else 6))
    return area + rest, [len(area), 4, len(rest) - 4]


def _resident_id(rng: random.Random) -> tuple[str, list[int]]:
    first = (f"{rng.randint(110000, 659999)}{rng.randint(1950, 2005)}{rng.randint(1, 12):02d}"
             f"{rng.randint(1, 28):02d}{rng.randint(0, 999):03d}")
    return first + id_checksum_char(first), rng.choice([[6, 8, 4], [3, 3, 4, 4, 4], [6, 4, 4, 4]])


# ------------------------------------------------------------------ how a recogniser writes digits


def _words(digits: str, rng: random.Random) -> str:
    out, i = [], 0
    while i < len(digits):
        d = digits[i]
        if d.isdigit() and i + 1 < len(digits) and digits[i + 1] == d and rng.random() < 0.5:
            out.append(f"double {_EN[int(d)]}")
            i += 2
            continue
        out.append(("oh" if rng.random() < 0.3 else "zero") if d == "0" else _EN[int(d)] if d.isdigit() else d)
        i += 1
    return " ".join(out)


def _zh(digits: str, rng: random.Random) -> str:
    one = "幺" if rng.random() < 0.4 else "一"
    zero = "零" if rng.random() < 0.4 else "〇"
    return "".join(one if d == "1" else zero if d == "0" else _ZH[int(d)] if d.isdigit() else d for d in digits)


def _split(digits: str, sizes: list[int]) -> list[str]:
    out, i = [], 0
    for n in sizes:
        out.append(digits[i:i + n])
        i += n
    if i < len(digits):
        out[-1] += digits[i:]
    return out


def write_number(digits: str, sizes: list[int], rng: random.Random, language: str) -> str:
    """`digits` as a recogniser may write it when spoken in `language`."""
    style = rng.choice(["block", "groups", "groups", "fullwidth", "spoken"] if language == "en"
                       else ["block", "groups", "groups", "fullwidth", "spoken", "spoken"])
    groups = _split(digits, sizes)
    if style == "block":
        return digits
    if style == "fullwidth":
        return "".join(_FULL[int(d)] if d.isdigit() else d for d in digits)
    if style == "groups":
        sep = rng.choice([" ", "-", ", ", "，", "/", " - "] if language == "en" else [" ", "-", "，", "、", "/", " "])
        return sep.join(groups)
    if language == "en":
        return rng.choice([", ", " "]).join(_words(g, rng) for g in groups)
    return rng.choice(["，", "", " "]).join(_zh(g, rng) for g in groups)


def _email(rng: random.Random, language: str) -> str:
    first = rng.choice(["li", "wang", "zhang", "anna", "john", "maria", "chen", "david", "yuki", "omar"])
    last = rng.choice(["wei", "fang", "smith", "lee", "garcia", "ming", "kumar", "novak"])
    num = str(rng.randint(1, 999)) if rng.random() < 0.4 else ""
    domain, tld = rng.choice([("gmail", "com"), ("qq", "com"), ("163", "com"), ("outlook", "com"),
                              ("company", "cn"), ("univ", "edu"), ("mail", "de")])
    join = rng.choice([".", "_", ""])
    local = f"{first}{join}{last}{num}"
    style = rng.choice(["written", "written", "spaced", "spoken"])
    if style == "written":
        return f"{local}@{domain}.{tld}"
    if style == "spaced":
        return f"{local} @ {domain}.{tld}"
    if language == "zh":
        local = local.replace(".", "点")
        return f"{local}艾特{domain}点{tld}"
    local = local.replace(".", " dot ")
    return f"{local} at {domain} dot {tld}"


def value(kind: str, rng: random.Random, language: str) -> str:
    if kind == "phone":
        digits, sizes = _mobile(rng)
        text = write_number(digits, sizes, rng, language)
        if rng.random() < 0.25:
            text = (rng.choice(["+86 ", "+86", "0086 "]) + text) if language == "zh" or rng.random() < 0.5 \
                else ("plus eight six " + _words(digits, rng))
        return text
    if kind == "landline":
        digits, sizes = _landline(rng)
        if rng.random() < 0.2:
            return f"({digits[:sizes[0]]}) {digits[sizes[0]:sizes[0] + 4]} {digits[sizes[0] + 4:]}"
        return write_number(digits, sizes, rng, language)
    if kind == "id":
        digits, sizes = _resident_id(rng)
        text = write_number(digits, sizes, rng, language)
        return text.replace("X", "x") if rng.random() < 0.3 else text
    if kind == "passport":
        letter = rng.choice("EG")
        digits = "".join(rng.choice("0123456789") for _ in range(8))
        body = write_number(digits, [4, 4], rng, language)
        return letter + (" " if body[0].isalpha() and body[0].isascii() else rng.choice(["", " "])) + body
    if kind == "application":
        digits = f"{rng.randint(2024, 2026)}{rng.randint(1, 12):02d}{rng.randint(0, 999999):06d}"
        body = write_number(digits, [4, 4, 4], rng, language)
        prefix = rng.choice(["WP", "W P ", "wp-", "WP "])
        return (prefix.rstrip() + " " if body[0].isascii() and body[0].isalpha() else prefix) + body
    return _email(rng, language)


CARRIERS = {
    ("phone", "en"): ["My phone number is {}.", "You can call me on {}, thanks.", "It's {} if you need me.",
                      "Call me back at {} please"],
    ("phone", "zh"): ["我的手机号是{}。", "你打{}就能找到我", "电话{}，谢谢。", "回电请打{}"],
    ("landline", "en"): ["Our office number is {}.", "The company phone is {}, extension two."],
    ("landline", "zh"): ["公司座机是{}。", "办公室电话{}，转二号分机"],
    ("id", "en"): ["My ID number is {}.", "the resident ID is {} okay"],
    ("id", "zh"): ["我的身份证号是{}。", "身份证号码{}，麻烦查一下"],
    ("passport", "en"): ["My passport number is {}.", "passport {} please check", "The passport is {}, issued last year."],
    ("passport", "zh"): ["我的护照号码是{}。", "护照号{}，帮我查一下"],
    ("application", "en"): ["My application number is {}.", "Can you check {} for me?", "the number is {}, thanks"],
    ("application", "zh"): ["我的申请编号是{}。", "帮我查一下{}的进度", "申请号{}，谢谢"],
    ("email", "en"): ["My email is {}.", "Send it to {} please.", "You can write to {} anytime"],
    ("email", "zh"): ["我的邮箱是{}。", "请发到{}，谢谢", "邮箱地址{}"],
}

NEGATIVES_EN = [
    "I applied on {d}-{m:02d}-{day:02d} and it is still pending.", "The appointment is on {day}/{m}/{y}.",
    "It was submitted on {mon} {day}, {y}, at {h}:{mi:02d}.", "The office is open from {h}:{mi:02d} to {h2}:00.",
    "The fee is {a:,} yuan.", "I paid ¥{a:,} last month.", "My salary is {a2:,} RMB a year.",
    "It costs ${c}.{cents:02d} in total.", "It takes {n} to {n2} working days.", "I worked there from {y}-{y2}.",
    "Room {room}, floor {floor}.", "My contract runs until {y}.{m:02d}.{day:02d}.", "Around {p}% of the form is done.",
    "I called at {h}:{mi:02d} and again at {h2}:{mi:02d}.", "The permit is valid for {n} years.",
    "We have {n} employees and {a:,} yuan of capital.", "On {mon} {day}, {y}, {h}:{mi:02d} I got a letter.",
]
NEGATIVES_ZH = [
    "我是{y}年{m}月{day}日提交的申请。", "办理时间是{h}:{mi:02d}到{h2}:00。", "费用是{a}元。", "我上个月交了{a:,}元。",
    "年薪{a2}元，可以申请吗？", "大概需要{n}到{n2}个工作日。", "我{y}年到{y2}年在上海工作。", "合同到{y}.{m:02d}.{day:02d}。",
    "二〇二五年十一月二十六日递交的。", "我在{room}室，{floor}楼。", "下午{h}点半打过电话。", "完成了{p}%。",
    "工作许可有效期{n}年。", "注册资本{a2}元。", "我是{y}/{m:02d}/{day:02d}入境的。",
]
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"]


def _negative(rng: random.Random, language: str) -> Sample:
    y = rng.randint(2015, 2027)
    fields = dict(d=y, y=y, y2=y + rng.randint(1, 5), m=rng.randint(1, 12), day=rng.randint(1, 28),
                  mon=rng.choice(_MONTHS), h=rng.randint(8, 12), h2=rng.randint(13, 18), mi=rng.choice([0, 15, 30, 45]),
                  a=rng.randint(100, 99999), a2=rng.randint(100000, 2000000), c=rng.randint(10, 9999),
                  cents=rng.randint(0, 99), n=rng.randint(1, 10), n2=rng.randint(11, 30), room=rng.randint(101, 2405),
                  floor=rng.randint(1, 40), p=rng.randint(1, 99))
    text = rng.choice(NEGATIVES_EN if language == "en" else NEGATIVES_ZH).format(**fields)
    return Sample(text=text, span=None, kind="negative", language=language)


def generate(split: str = "test", *, positives: int = 360, negatives: int = 240) -> list[Sample]:
    """`positives` sentences with personal data (spread over KINDS and both languages) and `negatives` without."""
    rng = random.Random(SEEDS[split])
    out: list[Sample] = []
    for i in range(positives):
        kind = KINDS[i % len(KINDS)]
        language = "en" if (i // len(KINDS)) % 2 == 0 else "zh"
        v = value(kind, rng, language)
        template = rng.choice(CARRIERS[(kind, language)])
        before, after = template.split("{}")
        out.append(Sample(text=before + v + after, span=(len(before), len(before) + len(v)), kind=kind,
                          language=language))
    for i in range(negatives):
        out.append(_negative(rng, "en" if i % 2 == 0 else "zh"))
    return out


# The baseline: what a typical PII redactor does with text (a run of 7 or more digits, possibly grouped with spaces or
# hyphens; a passport-style letter + digits; a written e-mail address). It knows nothing of how a recogniser writes
# numbers that were spoken, which is what the project's masking adds.
_BASELINE = re.compile(r"(?P<NUMBER>\d(?:[ -]?\d){6,})|(?P<PASSPORT>\b[A-Za-z]{1,2}\d{7,9}\b)"
                       r"|(?P<EMAIL>[\w.+-]+@[\w-]+(?:\.[\w-]+)+)")


def baseline_find(text: str) -> list[Finding]:
    return [Finding(m.start(), m.end(), m.lastgroup or "NUMBER") for m in _BASELINE.finditer(text)]


def masked(sample: Sample, find: Callable[[str], list[Any]] = find_personal_data) -> bool:
    """True when every letter and digit of the sample's value is inside a finding."""
    assert sample.span is not None
    covered = bytearray(len(sample.text))
    for f in find(sample.text):
        covered[f.start:f.end] = b"\x01" * (f.end - f.start)
    start, end = sample.span
    return all(covered[i] or not sample.text[i].isalnum() for i in range(start, end))


def evaluate(samples: list[Sample], find: Callable[[str], list[Any]] = find_personal_data) -> dict[str, Any]:
    pos = [s for s in samples if s.span is not None]
    neg = [s for s in samples if s.span is None]
    missed = [s for s in pos if not masked(s, find)]
    false = [s for s in neg if find(s.text)]
    by_kind = {}
    for kind in KINDS:
        ks = [s for s in pos if s.kind == kind]
        by_kind[kind] = round(sum(masked(s, find) for s in ks) / len(ks), 4) if ks else None
    return {
        "positives": len(pos), "negatives": len(neg),
        "recall": round(1 - len(missed) / len(pos), 4) if pos else None,
        "false_mask_rate": round(len(false) / len(neg), 4) if neg else None,
        "recall_by_kind": by_kind,
        "missed": [s.text for s in missed], "false_masks": [s.text for s in false],
    }


def scaling(find: Callable[[str], list[Any]] = find_personal_data, sizes: tuple[int, ...] = (1000, 10000)) -> dict[int, float]:
    """Seconds to mask a text holding n phone numbers, for each n: linear masking grows ~10x from 1k to 10k."""
    out = {}
    for n in sizes:
        text = " and ".join(f"call 138{i:08d}" for i in range(n))
        t0 = time.perf_counter()
        found = find(text)
        out[n] = time.perf_counter() - t0
        assert len(found) == n
    return out
