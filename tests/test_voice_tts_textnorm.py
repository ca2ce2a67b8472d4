"""Text normalisation for speech: pure string code, hand-written inputs (no models)."""
from __future__ import annotations

import re

import pytest

from voice.tts.textnorm import (
    en_cardinal,
    en_ordinal,
    en_year,
    has_speakable,
    language_runs,
    normalize,
    script_language,
    split_clauses,
    split_sentences,
)


def no_digits(text: str) -> bool:
    return not re.search(r"\d", text)


@pytest.mark.parametrize("n, words", [
    (0, "zero"), (7, "seven"), (13, "thirteen"), (20, "twenty"), (42, "forty-two"), (100, "one hundred"),
    (115, "one hundred fifteen"), (1500, "one thousand five hundred"), (50000, "fifty thousand"),
    (2_000_001, "two million one"),
])
def test_english_cardinals(n, words):
    assert en_cardinal(n) == words


@pytest.mark.parametrize("n, words", [(1, "first"), (2, "second"), (3, "third"), (12, "twelfth"), (20, "twentieth"),
                                      (21, "twenty-first"), (30, "thirtieth"), (101, "one hundred first")])
def test_english_ordinals(n, words):
    assert en_ordinal(n) == words


@pytest.mark.parametrize("n, words", [(2026, "twenty twenty-six"), (2000, "two thousand"), (2005, "two thousand five"),
                                      (1990, "nineteen ninety"), (1905, "nineteen oh five")])
def test_english_years(n, words):
    assert en_year(n) == words


# ---------------------------------------------------------------- phone and hotline numbers

def test_hotline_numbers_are_read_digit_by_digit_in_english():
    out = normalize("Please call 12345 or the 962288 hotline.", "en")
    assert "one two three four five" in out
    assert "nine six two two eight eight" in out
    assert no_digits(out)


def test_hotline_numbers_in_chinese_read_one_as_yao():
    out = normalize("请拨打12345市民服务热线或962288。", "zh")
    assert "幺二三四五" in out
    assert "九六二二八八" in out
    assert "一万" not in out  # not read as a quantity
    assert no_digits(out)


def test_grouped_phone_number_with_area_code():
    zh = normalize("电话021-62881234。", "zh")
    assert "零二幺" in zh and "六二八八幺二三四" in zh
    en = normalize("Call +86 21 6288 1234.", "en")
    assert en.startswith("Call plus eight six")
    assert "six two eight eight" in en and no_digits(en)


def test_quantities_are_not_phone_numbers():
    assert normalize("It takes 20 days.", "en") == "It takes twenty days."
    assert normalize("需要20天。", "zh") == "需要二十天。"
    assert "two hundred fifty" in normalize("We had 250 applications.", "en")


# ---------------------------------------------------------------- application numbers

def test_application_number_letters_then_digits_english():
    out = normalize("Your application WP202611000123 was approved.", "en")
    assert "W P two zero two six one one zero zero zero one two three" in out


def test_application_number_inside_chinese_becomes_an_english_run_then_digits():
    out = normalize("您的申请编号是WP202611000123。", "zh")
    assert "W P" in out and "二零二六幺幺零零零幺二三" in out
    runs = language_runs(out, "zh")
    assert ("en", "W P") in runs
    assert [lang for lang, _ in runs] == ["zh", "en", "zh"]


# ---------------------------------------------------------------- dates, times, money, percentages

@pytest.mark.parametrize("text", ["2026-11-20", "2026/11/20", "2026年11月20日", "November 20, 2026", "20 November 2026"])
def test_dates_in_english(text):
    assert normalize(f"Approved on {text}.", "en") == "Approved on November twentieth, twenty twenty-six."


@pytest.mark.parametrize("text", ["2026-11-20", "2026年11月20日", "2026年11月20号"])
def test_dates_in_chinese(text):
    assert normalize(f"于{text}批准。", "zh") == "于二零二六年十一月二十日批准。"


def test_invalid_date_is_not_read_as_a_date():
    out = normalize("Code 2026-13-45.", "en")
    assert "thirteenth" not in out and no_digits(out)


def test_times_and_time_ranges():
    assert normalize("Open 9:00-17:00.", "en") == "Open nine o'clock to five p m."
    assert normalize("Come at 9:30 am.", "en") == "Come at nine thirty a m."
    assert normalize("办公时间9:00到17:00。", "zh") == "办公时间九点到十七点。"
    assert normalize("9:05", "zh") == "九点零五分"


def test_percentages_currency_decimals_ranges():
    assert normalize("About 75% pass.", "en") == "About seventy-five percent pass."
    assert normalize("大约75%通过。", "zh") == "大约百分之七十五通过。"
    assert normalize("It costs USD 50,000 or ¥300.", "en") == "It costs fifty thousand US dollars or three hundred yuan."
    assert normalize("额度为5万美元，手续费300元。", "zh") == "额度为五万美元,手续费三百元。"
    assert normalize("$1 fee", "en") == "one US dollar fee"
    assert normalize("3.5 days", "en") == "three point five days"
    assert normalize("需要5-10个工作日", "zh") == "需要五到十个工作日"
    assert normalize("needs 5-10 days", "en") == "needs five to ten days"
    assert normalize("需要2个工作日", "zh") == "需要两个工作日"


# ---------------------------------------------------------------- URLs, emoji, mixed text

def test_urls_and_emails_are_never_read_out():
    en = normalize("See https://english.shanghai.gov.cn/en-application/20231217/x.html for details.", "en")
    assert en == "See the website for details."
    assert "http" not in normalize("Write to info@example.org today", "en")
    assert normalize("请访问网站 https://fwp.safe.gov.cn 查询。", "zh") == "请访问网站查询。"
    assert "gov" not in normalize("登录 www.shanghai.gov.cn。", "zh")


@pytest.mark.parametrize("text", ["", "   ", "\n\t", "😀🎉👍", "。。。", "!!!", "→↑★"])
def test_nothing_to_say(text):
    assert not has_speakable(text)
    assert normalize(text, "en") == "" or not re.search(r"\w", normalize(text, "en"))


def test_emoji_are_dropped_from_speech():
    assert normalize("Thank you 😀!", "en") == "Thank you!"


def test_mixed_english_in_chinese_runs():
    runs = language_runs(normalize("请登录Single Window办理工作许可。", "zh"), "zh")
    assert runs == [("zh", "请登录"), ("en", "Single Window"), ("zh", "办理工作许可。")]
    # Chinese inside English text goes to the Chinese phonemizer.
    runs = language_runs("The form is called 工作许可 in Chinese.", "en")
    assert [lang for lang, _ in runs] == ["en", "zh", "en"]


def test_script_language():
    assert script_language("您好") == "zh"
    assert script_language("请登录Single Window办理") == "zh"
    assert script_language("Hello there") == "en"


def test_sentence_and_clause_splitting_keeps_decimals():
    assert split_sentences("It is 3.5 percent. Next!  你好。请问？") == ["It is 3.5 percent.", "Next!", "你好。", "请问？"]
    assert split_sentences("") == []
    assert split_clauses("首先，带护照；然后：去窗口") == ["首先，", "带护照；", "然后：", "去窗口"]


def test_normalize_rejects_unknown_language():
    with pytest.raises(ValueError):
        normalize("hello", "fr")


@pytest.mark.parametrize("text", [
    "WP", "12", "0", "99999999999999999999999", "1.2.3.4", "2026-", "::", "$", "¥¥¥", "%", "9:99", "25:00",
    "第1", "A1B2C3", "+", "-1", "1e10", "１２３４５",
])
def test_odd_inputs_never_crash_and_leave_no_digits(text):
    for language in ("en", "zh"):
        assert no_digits(normalize(text, language))


def test_script_language_of_english_quoting_chinese():
    assert script_language("The form is called 工作许可 in Chinese.") == "en"
    assert script_language("😀") == "en"
