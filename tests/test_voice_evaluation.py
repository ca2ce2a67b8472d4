"""The judge's own text normaliser, the bootstrap interval, the recordings' manifest and the bench's bookkeeping.

No model here: these check the arithmetic that every recognition and synthesis figure rests on.
"""
from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pytest

from conftest import FIXTURES
from voice.bench import Clip, Heard, Outcome, load_manifest, summarize
from voice.evaluation import bootstrap_ci, error_counts, normalize_en, normalize_zh, pooled_rate


@pytest.mark.parametrize("a,b", [
    ("In 1465, Sweynheim began", "in fourteen sixty-five sweynheim began"),
    ("Call 962288 or 12345.", "call nine hundred sixty two thousand two hundred eighty eight or twelve thousand three hundred forty five"),
    ("Open 9:00 to 17:30", "open nine to seventeen thirty"),
    ("the 20th of November", "The twentieth of November"),
    ("approved on 2026-11-20.", "approved on November 20th, 2026"),
    ("ＨＥＬＬＯ，２５％", "hello twenty five percent"),
    ("don't", "Dont"),
])
def test_english_spellings_of_the_same_speech_normalise_alike(a, b):
    assert normalize_en(a) == normalize_en(b)


@pytest.mark.parametrize("a,b", [
    ("桥下垂直净空 15 米", "橋下垂直淨空十五米"),  # digits vs numerals, Traditional vs Simplified
    ("该项目于 2011 年完工", "该项目于二零一一年完工"),  # a year read digit by digit
    ("拨打幺二三四五", "拨打12345"),  # 幺 is how 1 is said in phone numbers
    ("三千五百元", "3500元"),
    ("你好，ＡＢＣ！", "你好abc"),  # full-width folding, punctuation
])
def test_chinese_spellings_of_the_same_speech_normalise_alike(a, b):
    assert normalize_zh(a) == normalize_zh(b)


def test_numerals_that_are_not_numbers_map_the_same_on_both_sides():
    # "十分" (very), "统一" (unified) are no numbers; mapped one way on both sides, they still score alike.
    assert error_counts("他十分高兴", "他十分高兴", "zh")[0] == 0
    assert error_counts("统一办理", "统一办理", "zh")[0] == 0
    assert error_counts("统一办理", "统筹办理", "zh")[0] == 1


def test_a_wrong_reading_shows_as_an_error():
    # Reading a phone number as an amount is an error the judge must see (the synthesizer's own rules hid it).
    errors, n = error_counts("call 962288", "call nine hundred sixty two thousand two hundred eighty eight", "en")
    assert errors == 0  # spelled as a number both ways: same words
    errors, n = error_counts("call nine six two two eight eight", "call nine hundred sixty two thousand two hundred eighty eight", "en")
    assert errors > 0


def test_bootstrap_interval_is_fixed_by_its_seed_and_holds_the_pooled_rate():
    rng = np.random.default_rng(5)
    counts = [(int(e), int(n)) for e, n in zip(rng.integers(0, 4, 30), rng.integers(5, 30, 30))]
    lo, hi = bootstrap_ci(counts)
    assert (lo, hi) == bootstrap_ci(counts)
    assert lo < pooled_rate(counts) < hi
    assert bootstrap_ci(counts, seed=1) != (lo, hi)
    assert bootstrap_ci([(2, 10)] * 5) == (0.2, 0.2)  # identical clips: no spread


def test_more_clips_give_a_narrower_interval():
    few = [(1, 10), (0, 10), (3, 10), (2, 10)]
    lo1, hi1 = bootstrap_ci(few)
    lo2, hi2 = bootstrap_ci(few * 10)
    assert hi2 - lo2 < hi1 - lo1


def _rows(name: str) -> list[dict]:
    with (FIXTURES / name).open(encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def test_manifest_provenance_and_files_agree():
    manifest, provenance = _rows("manifest.tsv"), _rows("provenance.tsv")
    audio = sorted(p.name for p in FIXTURES.iterdir() if p.suffix in {".wav", ".flac", ".mp3"})
    assert sorted(r["file"] for r in manifest) == audio == sorted(r["file"] for r in provenance)
    for row in provenance:
        assert hashlib.sha256((FIXTURES / row["file"]).read_bytes()).hexdigest() == row["stored_sha256"], row["file"]
    for row in manifest:
        assert row["license"].strip(), row["file"]
        assert row["split"] in ("dev", "test") and row["reference_source"] in ("dataset", "human", "model")


def test_references_written_by_a_model_are_marked_and_the_test_part_holds_none():
    clips = load_manifest()
    model = {c.path.name for c in clips if c.reference_source == "model" and c.language in ("en", "zh", "mixed")}
    # The FunASR C# examples' references are Paraformer-large's printed output (provenance.tsv).
    assert model == {"zh_funasr_csharp_example_1.wav", "zh_funasr_csharp_example_2.wav"}
    assert not any(c.split == "test" and c.reference_source == "model" for c in clips)
    test = [c for c in clips if c.split == "test"]
    assert sum(c.language == "en" for c in test) >= 30 and any(c.language == "zh" for c in test)


def _outcome(language: str, errors: int, length: int, *, source: str = "dataset", label: str = "en",
             duration: float = 2.0) -> Outcome:
    clip = Clip(Path(f"{language}_{errors}_{length}.wav"), language, "ref", duration, "test", source)
    return Outcome(clip, "wideband", Heard("text", label, label), errors, length, 0.1)


def test_summary_keeps_model_references_out_of_the_figures():
    outcomes = [_outcome("zh", 2, 10, label="zh"), _outcome("zh", 1, 10, label="zh"),
                _outcome("zh", 0, 50, source="model", label="zh"), _outcome("en", 1, 4),
                _outcome("other:fr", 0, 0, label="other"), _outcome("other:yue", 0, 0, label="zh")]
    s = summarize(outcomes)
    assert s["zh"]["rate"] == pytest.approx(3 / 20) and s["zh"]["n"] == 2 and s["zh"]["ci95"] is not None
    assert s["model_reference"] == {"rate": 0.0, "n": 1}
    assert s["en"]["n"] == 1 and s["en"]["ci95"] is None  # one clip: no interval claimed
    assert (s["language_ok"], s["language_n"]) == (4, 4)
    assert (s["other_ok"], s["other_n"]) == (1, 1)  # Cantonese is reported, not counted


def test_vad_bench_without_webrtcvad_says_how_to_install_it(monkeypatch, capsys):
    import sys

    from voice import bench_vad

    monkeypatch.setitem(sys.modules, "webrtcvad", None)  # as if the 'bench' extra were not installed
    assert bench_vad.run() == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "webrtcvad is not installed" in err[0] and ".[bench]" in err[0]
