"""The warming process: lowest priority, frozen inside its work while calls need the CPU, filling the disk cache."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from voice.settings import VoiceSettings
from voice.tts.warming import Warmer

pytestmark = pytest.mark.model

ITEMS = [(f"Answer number {i}: please bring your passport and two photos to the office.", "en") for i in range(400)]


def _state(pid: int) -> tuple[str, int]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return fields[0], int(fields[16])  # state, nice


def _files(settings: VoiceSettings) -> int:
    return len(list((settings.cache_dir / "tts").rglob("*.pcm")))


def test_warmer_takes_the_lowest_priority(tmp_path):
    warmer = Warmer(VoiceSettings(voice="espeak", cache_dir=tmp_path), ITEMS)
    warmer.start()
    try:
        deadline = time.monotonic() + 30
        while _state(warmer._process.pid)[1] != 19 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _state(warmer._process.pid)[1] == 19
    finally:
        warmer.stop(timeout=30)  # at nice 19 on a busy machine even dying waits for the CPU
    assert not warmer.running


def test_warmer_is_frozen_on_pause_and_fills_the_disk_cache(tmp_path):
    # espeak-ng: the same code path as the neural voice, fast enough for a test. Niceness 0 here: at 19 the
    # process may get no CPU at all on a machine busy with other work, and this test is about pausing.
    settings = VoiceSettings(voice="espeak", cache_dir=tmp_path)
    warmer = Warmer(settings, ITEMS, niceness=0)
    warmer.start()
    try:
        deadline = time.monotonic() + 120  # the first synthesis loads espeak-ng: slow on a loaded machine
        while _files(settings) < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _files(settings) >= 1
        warmer.pause()
        time.sleep(0.2)
        assert _state(warmer._process.pid)[0] == "T"  # stopped by the kernel, wherever it was
        frozen = _files(settings)
        time.sleep(1.5)
        assert _files(settings) == frozen
        warmer.resume()
        deadline = time.monotonic() + 60
        while _files(settings) == frozen and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _files(settings) > frozen
    finally:
        warmer.stop()
    assert not warmer.running


def test_warmer_run_follows_busy_and_stops_when_asked(tmp_path):
    settings = VoiceSettings(voice="espeak", cache_dir=tmp_path)
    warmer = Warmer(settings, ITEMS, niceness=0)
    busy, stopping = threading.Event(), threading.Event()
    worker = threading.Thread(target=warmer.run, kwargs={"busy": busy.is_set, "stopping": stopping.is_set})
    worker.start()
    deadline = time.monotonic() + 120
    while _files(settings) < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    busy.set()
    time.sleep(0.3)
    assert warmer.paused and _state(warmer._process.pid)[0] == "T"
    stopping.set()
    worker.join(timeout=10)
    assert not worker.is_alive() and not warmer.running


def test_warmer_needs_the_disk_cache(tmp_path):
    with pytest.raises(ValueError, match="disk cache"):
        Warmer(VoiceSettings(voice="espeak", cache_dir=tmp_path, tts_disk_cache=False), ITEMS)
