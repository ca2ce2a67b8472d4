"""Bounded runs of the hardening measurements (the full ones are `hotline bench fuzz | durability | soak`). Each
starts the real app in a child process with stand-in models (server/hardening/stubs.py) over real websockets."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.e2e


def test_fuzzing_the_four_websockets_crashes_and_hangs_nothing():
    from server.hardening.fuzz import run_fuzz

    report = run_fuzz(messages=600, seed=3)
    assert report.messages >= 600 and report.connections >= 20
    assert report.crashes == [] and report.hangs == [], report.crashes[:5] + report.hangs[:5]
    assert report.close_codes.get("1011", 0) == 0
    assert report.rss_end_mb - report.rss_warm_mb <= 50, report.summary()


def test_kill_9_mid_call_loses_no_answered_turn_and_leaves_one_final_state():
    from server.hardening.durability import run_durability

    report = run_durability(kills=2, callers=2, min_s=3.0, max_s=5.0, seed=5)
    assert report.answered_turns > 0, report.summary()
    assert report.missing_turns == [], report.missing_turns
    assert report.calls_without_final_state == 0
    assert report.dropped_at_restart >= 1  # the kills did cut calls, and the restart closed them
    assert report.integrity and all(r == "ok" for r in report.integrity)


def test_soak_of_four_simultaneous_calls():
    from server.hardening.soak import run_soak

    report = run_soak(duration_s=40, callers=4, sample_s=5)
    assert report.calls >= 4 and report.turns >= 8, report.summary()
    assert report.errors == [], report.errors[:5]
    assert report.growth_mb <= 50, report.summary()
