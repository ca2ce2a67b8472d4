"""Work-permit application numbers as spoken, and the SQLite store they are looked up in."""
from __future__ import annotations

import pytest

from routing.progress import (
    Application,
    ApplicationFileError,
    ApplicationNumber,
    ApplicationStore,
    open_store,
    parse_application_number,
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


def test_store_import_find_and_update(tmp_path):
    store = ApplicationStore(path=tmp_path / "a.sqlite3")
    apps = read_applications_file(FIXTURES / "applications.yaml")
    assert store.upsert(apps) == len(apps) and store.count() == len(apps)
    found = store.find(WP)
    assert found is not None and found.number == "WP2026110001" and found.status("zh")
    # Said without its letters: still found when the digits are unique.
    assert store.find(ApplicationNumber("", "2026110001")) == found
    assert store.find(ApplicationNumber("WP", "9999999999")) is None
    store.upsert([Application("WP2026110001", "Collected.", "已领取。", "2026-11-25")])
    assert store.count() == len(apps) and store.find(WP).status_en == "Collected."
    store.close()
    # The file persists: a new store on the same path sees the data.
    again = ApplicationStore(path=tmp_path / "a.sqlite3")
    assert again.find(WP).updated == "2026-11-25"
    again.close()


def test_store_is_safe_against_injection(tmp_path):
    store = open_store(path=tmp_path / "a.sqlite3", demo_file=FIXTURES / "applications.yaml")
    before = store.count()
    assert store.find(ApplicationNumber("WP", "1' OR '1'='1")) is None
    assert store.find(ApplicationNumber("", "'; DROP TABLE applications; --")) is None
    assert store.count() == before > 0


def test_open_store_fills_an_empty_store_once(tmp_path):
    store = open_store(path=tmp_path / "s.sqlite3", demo_file=FIXTURES / "applications.yaml")
    n = store.count()
    store.upsert([Application("WP2026999999", "x", "x", "2026-01-01")])
    store.close()
    store = open_store(path=tmp_path / "s.sqlite3", demo_file=FIXTURES / "applications.yaml")
    assert store.count() == n + 1, "an existing store is not re-seeded"
    store.close()


@pytest.mark.parametrize(
    "content, message",
    [
        ("applications: [{number: 'XYZW123', status_en: a, status_zh: b, updated: '2026-01-01'}]", "number"),
        ("applications: [{number: 'WP2026000001', status_zh: b, updated: '2026-01-01'}]", "status_en"),
        ("applications: [{number: 'WP2026000001', status_en: a, status_zh: b, updated: 'soon'}]", "updated"),
        ("applications:\n - {number: 'WP2026000001', status_en: a, status_zh: b, updated: '2026-01-01'}\n"
         " - {number: 'WP2026000001', status_en: a, status_zh: b, updated: '2026-01-01'}", "duplicate"),
        ("apps: []", "expected 'applications"),
    ],
)
def test_bad_application_files(tmp_path, content, message):
    path = tmp_path / "apps.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ApplicationFileError, match=message):
        read_applications_file(path)


def test_import_command(tmp_path, capsys):
    from server.cli import main

    db = tmp_path / "cli.sqlite3"
    assert main(["applications", "import", str(FIXTURES / "applications.yaml"), "--store", str(db)]) == 0
    out = capsys.readouterr().out
    assert "imported 2 applications" in out
    store = ApplicationStore(path=db)
    assert store.find(WP) is not None
    store.close()
    bad = tmp_path / "bad.yaml"
    bad.write_text("applications: [{number: nope}]", encoding="utf-8")
    assert main(["applications", "import", str(bad), "--store", str(db)]) == 1
    assert "error:" in capsys.readouterr().err
