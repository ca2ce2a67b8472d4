"""Work-permit application numbers and second factors as spoken, the applications file, the in-memory look-up.
(The main store's side: tests/test_server_applications.py.)"""
from __future__ import annotations

import datetime as dt

import pytest

from routing.progress import (
    Application,
    ApplicationFileError,
    ApplicationNumber,
    InMemoryApplications,
    SecondFactor,
    parse_application_number,
    parse_dates,
    parse_second_factor,
    read_applications_file,
)
from routing_helpers import FIXTURES

WP = ApplicationNumber("WP", "2026110001")


@pytest.mark.parametrize(
    "text",
    [
        "WP2026110001",
        "my application number is WP2026110001, thanks",
        "W P two zero two six one one zero zero zero one",
        "w p 2 0 2 6 1 1 0 0 0 1",
        "It's double u pee two zero two six, one one, double zero, zero one.",
        "WP twenty twenty six one one oh oh oh one",
        "WP-2026-110001",
        "申请编号WP2026110001",
        "申请编号是WP二零二六一一零零零一",
        "编号 W P 二〇二六幺幺洞洞洞幺",
        "ＷＰ２０２６１１０００１",  # full-width, as some recognisers write it
    ],
)
def test_spoken_numbers_in_english_and_chinese(text):
    assert parse_application_number(text) == WP


@pytest.mark.parametrize(
    "text",
    ["", "我想查一下进度", "I applied in 2026", "call me at 9 tomorrow", "the permit is valid for 5 years",
     "twenty days", "x" * 10000, "😀😀😀"],
)
def test_no_number(text):
    assert parse_application_number(text) is None


def test_digits_only_keeps_no_letters():
    assert parse_application_number("two zero two six one one zero zero zero one") == ApplicationNumber("", "2026110001")


def test_in_memory_lookup_by_number_and_by_digits():
    apps = InMemoryApplications.from_file(FIXTURES / "applications.yaml")
    found = apps.find(WP)
    assert found is not None and found.number == "WP2026110001" and found.status("zh")
    # Said without its letters: still found when the digits are unique.
    assert apps.find(ApplicationNumber("", "2026110001")) == found
    assert apps.find(ApplicationNumber("WP", "9999999999")) is None
    assert apps.find(ApplicationNumber("", "'; DROP TABLE applications; --")) is None


@pytest.mark.parametrize(
    "text",
    ["1990-03-15", "15/03/1990", "03/15/1990", "19900315", "my date of birth is 15 March 1990",
     "March 15th, 1990", "the fifteenth of March nineteen ninety", "march fifteen nineteen ninety",
     "1990年3月15日", "一九九零年三月十五日", "我是一九九〇年三月十五号出生的", "１９９０年３月１５日"],
)
def test_spoken_dates_of_birth(text):
    factor = parse_second_factor(text)
    assert factor is not None and dt.date(1990, 3, 15) in factor.dates


@pytest.mark.parametrize("text, year", [("two thousand and five, June 1st", 2005), ("June first twenty twelve", 2012),
                                        ("1 June nineteen oh five", 1905)])
def test_spoken_years(text, year):
    assert parse_dates(text) == (dt.date(year, 6, 1),)


@pytest.mark.parametrize(
    "text, last4",
    [("4821", "4821"), ("the last four are four eight two one", "4821"), ("后四位是4821", "4821"),
     ("E 7 Q 3", "E7Q3"), ("my passport is E12344821", "4821"), ("护照后四位是幺洞六七", "1067")],
)
def test_passport_last_four(text, last4):
    assert parse_second_factor(text) == SecondFactor(passport_last4=last4)


@pytest.mark.parametrize("text", ["", "   ", "I don't know", "嗯", "12", "31 February 1990"])
def test_no_second_factor(text):
    factor = parse_second_factor(text)
    assert factor is None or (not factor.dates and factor.passport_last4 is None)


def test_either_factor_verifies_and_nothing_else_does():
    app = InMemoryApplications.from_file(FIXTURES / "applications.yaml").find(WP)
    assert app.verified_by(SecondFactor(dates=(dt.date(1990, 3, 15),)))
    assert app.verified_by(SecondFactor(passport_last4="4821"))
    assert not app.verified_by(SecondFactor(dates=(dt.date(1990, 3, 16),)))
    assert not app.verified_by(SecondFactor(passport_last4="4822"))
    assert not app.verified_by(SecondFactor())
    only_birth = Application("WP1234567", "a", "b", "2026-01-01", date_of_birth="1985-11-02")
    assert not only_birth.verified_by(SecondFactor(passport_last4="0000"))


@pytest.mark.parametrize(
    "content, message",
    [
        ("applications: [{number: 'XYZW123', status_en: a, status_zh: b, updated: '2026-01-01'}]", "number"),
        ("applications: [{number: 'WP2026000001', status_zh: b, updated: '2026-01-01'}]", "status_en"),
        ("applications: [{number: 'WP2026000001', status_en: a, status_zh: b, updated: 'soon'}]", "updated"),
        ("applications:\n - {number: 'WP2026000001', status_en: a, status_zh: b, updated: '2026-01-01',"
         " passport_last4: '1234'}\n - {number: 'WP2026000001', status_en: a, status_zh: b, updated: '2026-01-01',"
         " passport_last4: '1234'}", "duplicate"),
        ("apps: []", "expected 'applications"),
        ("applications: [{number: 'WP2026000001', status_en: a, status_zh: b, updated: '2026-01-01'}]",
         "second factor"),
        ("applications: [{number: 'WP2026000001', status_en: a, status_zh: b, updated: '2026-01-01',"
         " date_of_birth: '1990-02-30'}]", "date_of_birth"),
        ("applications: [{number: 'WP2026000001', status_en: a, status_zh: b, updated: '2026-01-01',"
         " passport_last4: '12345'}]", "passport_last4"),
    ],
)
def test_bad_application_files(tmp_path, content, message):
    path = tmp_path / "apps.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ApplicationFileError, match=message):
        read_applications_file(path)
