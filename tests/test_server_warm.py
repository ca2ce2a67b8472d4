"""Background cache filling: every knowledge-base answer ends up synthesized, and it yields to calls and shutdown."""
from __future__ import annotations

import threading
import time

import pytest

from server.settings import Settings

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def components(tmp_path_factory):
    from server.call.wiring import load_components

    cache = tmp_path_factory.mktemp("models")
    # espeak-ng: the same code path as the neural voice, ~100x faster, so every answer fits in a test.
    settings = Settings(db_url=f"sqlite+aiosqlite:///{cache / 'x.db'}", voice={"voice": "espeak", "cache_dir": cache})
    return settings, load_components(settings)


def test_every_answer_is_cached_after_the_background_warm_up(components):
    from server.call.turn_taking import split_by_language

    settings, comps = components
    for warm in comps.background_warmups:
        warm()
    synth = comps.synthesizer
    segments = [(seg.text, seg.language) for e in comps.router.kb.entries for lang in settings.languages
                for seg in split_by_language(e.answer[lang], lang)]
    assert len(segments) >= 2 * len(comps.router.kb.entries)
    assert all(synth.is_cached(text, language) for text, language in segments)
    assert list((settings.voice.cache_dir / "tts").rglob("*.pcm"))  # kept on disk for the next start


def test_warm_up_waits_while_calls_are_connected_and_stops_at_shutdown(components):
    settings, comps = components
    synth = comps.synthesizer
    synth.clear()
    for f in (settings.voice.cache_dir / "tts").rglob("*.pcm"):
        f.unlink()
    misses = synth.misses
    comps.calls_active = lambda: True
    warm_answers = comps.background_warmups[-1]
    worker = threading.Thread(target=warm_answers)
    worker.start()
    time.sleep(1.5)
    assert synth.misses == misses  # nothing synthesized while a call is connected
    comps.stopping.set()
    worker.join(timeout=5)
    assert not worker.is_alive()
