"""The synthesis cache: identical audio without re-synthesis, LRU bound, thread safety (scripted fake voice)."""
from __future__ import annotations

import threading

import pytest

from voice.settings import VoiceSettings
from voice.tts import build_synthesizer
from voice.tts.cache import CachedSynthesizer
from voice.types import SpeechChunk


class CountingVoice:
    """A scripted voice: one chunk per word, PCM derived from the word, counts its calls."""

    name = "counting"

    def __init__(self) -> None:
        self.calls = 0
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        pass

    def synthesize(self, text, language):
        with self._lock:
            self.calls += 1
        words = text.split()
        for i, w in enumerate(words):
            yield SpeechChunk(pcm16=w.encode() * 2, text=w, language=language, index=i, last=i == len(words) - 1,
                              voice=self.name)


def test_repeated_text_is_synthesized_once_and_identical():
    inner = CountingVoice()
    cache = CachedSynthesizer(inner=inner, max_entries=8)
    first = list(cache.synthesize("please hold the line", "en"))
    second = list(cache.synthesize("please hold the line", "en"))
    assert inner.calls == 1
    assert second == first
    assert (cache.hits, cache.misses) == (1, 1)


def test_key_includes_language_and_text():
    inner = CountingVoice()
    cache = CachedSynthesizer(inner=inner, max_entries=8)
    list(cache.synthesize("ok", "en"))
    list(cache.synthesize("ok", "zh"))
    list(cache.synthesize("ok ok", "en"))
    assert inner.calls == 3


def test_lru_eviction_keeps_recently_used():
    inner = CountingVoice()
    cache = CachedSynthesizer(inner=inner, max_entries=2)
    for text in ("a", "b"):
        list(cache.synthesize(text, "en"))
    list(cache.synthesize("a", "en"))  # a is now most recent
    list(cache.synthesize("c", "en"))  # evicts b
    assert len(cache) == 2
    calls = inner.calls
    list(cache.synthesize("a", "en"))
    assert inner.calls == calls
    list(cache.synthesize("b", "en"))
    assert inner.calls == calls + 1


def test_size_zero_disables_the_cache():
    inner = CountingVoice()
    cache = CachedSynthesizer(inner=inner, max_entries=0)
    list(cache.synthesize("x y", "en"))
    list(cache.synthesize("x y", "en"))
    assert inner.calls == 2 and len(cache) == 0


def test_abandoned_synthesis_is_not_cached():
    inner = CountingVoice()
    cache = CachedSynthesizer(inner=inner, max_entries=4)
    stream = cache.synthesize("one two three", "en")
    next(stream)
    stream.close()  # the caller hung up after the first sentence
    assert len(cache) == 0
    assert len(list(cache.synthesize("one two three", "en"))) == 3


def test_concurrent_use_is_consistent():
    inner = CountingVoice()
    cache = CachedSynthesizer(inner=inner, max_entries=16)
    texts = [f"text {i % 5} spoken" for i in range(40)]
    results: dict[int, list] = {}
    errors = []

    def work(i):
        try:
            results[i] = list(cache.synthesize(texts[i], "en"))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    for i, chunks in results.items():
        assert b"".join(c.pcm16 for c in chunks) == b"".join(w.encode() * 2 for w in texts[i].split())
    assert len(cache) == 5
    assert cache.hits + cache.misses == 40


def test_build_synthesizer_wraps_the_chosen_voice_in_the_cache():
    synth = build_synthesizer(VoiceSettings(voice="espeak", tts_cache_size=3))
    assert isinstance(synth, CachedSynthesizer) and synth.max_entries == 3 and synth.name == "espeak"
    with pytest.raises(ValueError):
        build_synthesizer(VoiceSettings(), voice="robot")


def test_disk_level_survives_a_restart_and_ignores_damaged_files(tmp_path):
    first_voice = CountingVoice()
    first = CachedSynthesizer(inner=first_voice, max_entries=8, disk_dir=tmp_path, variant="speed=1.0")
    audio = list(first.synthesize("your application is under review", "en"))
    assert first_voice.calls == 1 and first.is_cached("your application is under review", "en")

    restarted_voice = CountingVoice()  # a new process: empty memory, same folder
    restarted = CachedSynthesizer(inner=restarted_voice, max_entries=8, disk_dir=tmp_path, variant="speed=1.0")
    again = list(restarted.synthesize("your application is under review", "en"))
    assert restarted_voice.calls == 0
    assert [(c.pcm16, c.text, c.index, c.last) for c in again] == [(c.pcm16, c.text, c.index, c.last) for c in audio]

    other_speed = CachedSynthesizer(inner=CountingVoice(), max_entries=8, disk_dir=tmp_path, variant="speed=1.2")
    assert not other_speed.is_cached("your application is under review", "en")  # different audio, different key

    for f in tmp_path.rglob("*.pcm"):
        f.write_bytes(f.read_bytes()[:10])  # damaged: read as a miss, synthesized again
    damaged_voice = CountingVoice()
    damaged = CachedSynthesizer(inner=damaged_voice, max_entries=8, disk_dir=tmp_path, variant="speed=1.0")
    assert len(list(damaged.synthesize("your application is under review", "en"))) == 5
    assert damaged_voice.calls == 1
