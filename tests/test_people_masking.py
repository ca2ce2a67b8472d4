"""Masking of caller data (server/people/masking.py): resident ID checksums (GB 11643), phones, passports, applications."""
from __future__ import annotations

import random

import pytest

from server.people.masking import find_personal_data, id_checksum_char, is_valid_resident_id, mask_fields, mask_text


def make_id(rng: random.Random) -> str:
    first = f"{rng.randint(110000, 659999)}{rng.randint(1950, 2005)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}{rng.randint(0, 999):03d}"
    return first + id_checksum_char(first)


def test_known_checksums():
    # Worked examples of GB 11643-1999 (the standard's own example and a check character of X).
    assert is_valid_resident_id("11010519491231002X")
    old = "44052418800101001"
    assert not is_valid_resident_id(old + id_checksum_char(old))  # right checksum, born 1880: not a caller's ID
    assert id_checksum_char("11010519491231002") == "X"
    assert is_valid_resident_id("11010519491231002x")  # lower-case x as written by a recogniser


def test_every_wrong_check_character_is_rejected():
    rng = random.Random(5)
    for _ in range(200):
        valid = make_id(rng)
        assert is_valid_resident_id(valid)
        for c in "0123456789X":
            if c != valid[-1]:
                assert not is_valid_resident_id(valid[:-1] + c)


def test_single_digit_errors_break_the_checksum():
    rng = random.Random(7)
    for _ in range(100):
        valid = make_id(rng)
        i = rng.randrange(17)
        wrong = valid[:i] + str((int(valid[i]) + rng.randint(1, 9)) % 10) + valid[i + 1 :]
        assert not is_valid_resident_id(wrong)  # MOD 11-2 catches every single-digit error


def test_impossible_birth_dates_are_not_ids():
    first = "11010519491331002"  # month 13
    assert not is_valid_resident_id(first + id_checksum_char(first))


def test_valid_id_is_labelled_id_and_invalid_one_still_masked_as_number():
    rng = random.Random(1)
    valid = make_id(rng)
    wrong = valid[:-1] + ("1" if valid[-1] != "1" else "2")
    masked = mask_text(f"我的身份证号是{valid}，不是{wrong}。")
    assert masked == "我的身份证号是[ID]，不是[NUMBER]。"


@pytest.mark.parametrize("text", [
    "call me on 13812345678", "call me on 138 1234 5678", "call me on 138-1234-5678", "电话+86 138 1234 5678",
    "my number is 0086 13812345678", "office 021-62345678", "office (021) 6234 5678", "UK +44 20 7946 0958",
    "我的电话是一三八一二三四五六七八", "号码是幺三八幺二三四五六七八", "full width １３８１２３４５６７８",
])
def test_phone_numbers_are_masked(text):
    masked = mask_text(text)
    assert "[PHONE]" in masked
    assert not any(ch.isdigit() for ch in masked.replace("[PHONE]", "").replace("UK", "")), masked


@pytest.mark.parametrize("text,label", [
    ("my passport number is E12345678", "PASSPORT"), ("护照号码是G12345678", "PASSPORT"),
    ("passport EA1234567 please", "PASSPORT"), ("my passport: 533380006", "PASSPORT"),
    ("passport no. X98765432A", "PASSPORT"), ("护照 K1234567", "PASSPORT"),
    ("application WP202611000123 status", "APPLICATION"), ("申请号WP202611000456", "APPLICATION"),
    ("it's W P 2026 1100 0789", "APPLICATION"), ("wp-202611000123", "APPLICATION"),
])
def test_documents_are_masked(text, label):
    masked = mask_text(text)
    assert f"[{label}]" in masked
    assert sum(ch.isdigit() for ch in masked) == 0, masked


@pytest.mark.parametrize("text", [
    "I applied in 2026 and paid 3000 yuan", "我在2024年11月20日提交的", "takes 10 to 15 working days",
    "工作许可证需要20个工作日", "Room 1203, floor 12", "",
])
def test_ordinary_numbers_are_kept(text):
    assert mask_text(text) == text


def test_findings_do_not_overlap_and_cover_the_data():
    text = "WP202611000123, ID 11010519491231002X, phone 13812345678, passport E12345678"
    found = find_personal_data(text)
    assert [f.label for f in found] == ["APPLICATION", "ID", "PHONE", "PASSPORT"]
    for a, b in zip(found, found[1:]):
        assert a.end <= b.start


def test_mask_fields_masks_text_notes_and_caller_id():
    row = {"text": "13812345678", "note": "passport E12345678", "caller_id": "+8613812345678", "topic": "visa"}
    out = mask_fields(row)
    assert out == {"text": "[PHONE]", "note": "passport [PASSPORT]", "caller_id": "[PHONE]", "topic": "visa"}
    assert row["text"] == "13812345678"  # a copy: the original is untouched


def test_log_fields_are_masked_recursively():
    from server.people.masking import mask_structure

    caller = {"text": "call 13812345678", "turns": ["WP202611000123", {"id": "11010519491231002X"}], "n": 3}
    assert mask_structure(caller) == {"text": "call [PHONE]", "turns": ["[APPLICATION]", {"id": "[ID]"}], "n": 3}
