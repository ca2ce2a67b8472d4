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
    # Niceness 0: at 19 the warming process may get no CPU at all on a machine busy with other work.
    settings = Settings(db_url=f"sqlite+aiosqlite:///{cache / 'x.db'}", voice={"voice": "espeak", "cache_dir": cache},
                        warm_niceness=0)
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
    cache = settings.voice.cache_dir / "tts"
    for f in cache.rglob("*.pcm"):
        f.unlink()
    busy = threading.Event()
    busy.set()
    comps.calls_active = busy.is_set
    warm_answers = comps.background_warmups[-1]
    worker = threading.Thread(target=warm_answers)
    worker.start()
    time.sleep(4.0)
    assert not list(cache.rglob("*.pcm"))  # the warming process is frozen while a call is connected
    busy.clear()  # the call ends: warming resumes
    deadline = time.monotonic() + 60
    while not list(cache.rglob("*.pcm")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert list(cache.rglob("*.pcm"))
    comps.stopping.set()
    worker.join(timeout=10)
    assert not worker.is_alive()


def test_processes_sharing_a_disk_cache_warm_the_prompts_in_turn(tmp_path):
    """The prompt warm-up takes an exclusive lock on the disk cache: a second holder waits until the first is done
    (so a second server on one machine reads the first one's files instead of synthesizing the same prompts)."""
    from server.call.wiring import _cache_lock

    order: list[str] = []
    entered = threading.Event()

    def first() -> None:
        with _cache_lock(tmp_path, "prompts"):
            entered.set()
            time.sleep(0.3)
            order.append("first done")

    t = threading.Thread(target=first)
    t.start()
    assert entered.wait(5)
    with _cache_lock(tmp_path, "prompts"):  # another open file: flock makes it wait, as another process would
        order.append("second in")
    t.join()
    assert order == ["first done", "second in"]
    with _cache_lock(None, "prompts"):  # no disk cache: nothing to share, nothing to lock
        pass
