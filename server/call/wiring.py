"""The one place that wires voice/ and routing/ into calls: one factory, so a call is built the same way everywhere.

`load_components(settings)` loads every model once per process (Whisper, Silero VAD, the synthesizer, the router
with its knowledge base and embeddings); `Components.new_call()` builds one call's pipeline from them: its own
StreamingTranscriber (own VAD state, own call language) and its own dialog state. Tests pass scripted fakes
with the same shape (tests/fakes.py).
"""
from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from server.metrics import Metrics
from server.call.pools import BoundedPool
from server.call.turn_taking import SynthesisPace

log = logging.getLogger("hotline.wiring")

# The fixed prompts a call may need before anything else; ready before /readyz says so.
CALL_PROMPTS = ("greeting", "one_moment", "repeat", "transferring", "no_answer_transfer", "please_hold",
                "language_not_served", "no_input_reprompt", "goodbye", "service_unavailable")


@dataclass
class CallPipeline:
    transcriber: Any  # voice.streaming.StreamingTranscriber
    dialog: Any  # routing.router.DialogState


@dataclass
class Components:
    """Models shared by all calls. `make_transcriber(language_hint)` builds one call's transcriber."""

    make_transcriber: Callable[[str | None], Any]
    router: Any  # routing.router.Router
    prompts: Any  # routing.prompts.Prompts
    synthesizer: Any  # voice.tts.Synthesizer
    warmups: list[Callable[[], None]] = field(default_factory=list)
    background_warmups: list[Callable[[], None]] = field(default_factory=list)  # after ready: not on the start path
    # Set by the app once calls can arrive: background warm-ups wait while it says calls are connected, so cache
    # filling never takes the 2 cores from a caller.
    calls_active: Callable[[], bool] = lambda: False
    stopping: threading.Event = field(default_factory=threading.Event)  # set at shutdown: background work stops
    timings: dict[str, float] = field(default_factory=dict)  # load / warm-up seconds, reported by /readyz
    # Synthesizes the answers of these knowledge entries into the speech cache (blocking; after a publish).
    cache_answers: Callable[[Any], None] | None = None
    # What the synthesizer speaks first for a text (its lead or first sentence), and how fast it synthesizes: the
    # call decides from these whether an acknowledgement would only delay the answer (turn_taking.SynthesisPace).
    first_chunk_text: Callable[[str, str], str] = lambda text, language: text
    pace: SynthesisPace = field(default_factory=SynthesisPace)
    ack_audio_s: dict[str, float] = field(default_factory=dict)  # length of the cached acknowledgement, by language

    def new_call(self, *, language_hint: str | None) -> CallPipeline:
        return CallPipeline(transcriber=self.make_transcriber(language_hint), dialog=self.router.new_dialog())

    def warm_up(self) -> None:
        for fn in self.warmups:
            t0 = time.perf_counter()
            fn()
            self.timings[f"warm_{getattr(fn, '__qualname__', 'model')}"] = round(time.perf_counter() - t0, 3)


@dataclass
class Pools:
    recognition: BoundedPool
    synthesis: BoundedPool
    routing: BoundedPool

    def shutdown(self) -> None:
        for pool in (self.recognition, self.synthesis, self.routing):
            pool.shutdown()


def build_pools(settings: Any, metrics: Metrics) -> Pools:
    g = metrics.queue_depth
    return Pools(
        recognition=BoundedPool(name="recognition", workers=settings.recognition_workers,
                                max_pending=settings.recognition_queue_max, depth_gauge=g),
        synthesis=BoundedPool(name="synthesis", workers=settings.synthesis_workers,
                              max_pending=settings.synthesis_queue_max, depth_gauge=g),
        routing=BoundedPool(name="routing", workers=settings.routing_workers,
                            max_pending=settings.routing_queue_max, depth_gauge=g),
    )


def warm_resampler() -> None:
    """The Twilio edge resamples with scipy, which is imported on first use: seconds on a busy machine, found by
    `hotline bench fuzz` as a stalled event loop at the first Twilio call. Paid at start-up instead (server/app.py,
    after the models warm, whatever they are)."""
    import numpy as np

    from voice.audio import resample

    resample(np.zeros(160, dtype=np.float32), 8000, 16000)


def mask_chat_backend(router: Any) -> None:
    """The optional chat backend is another company's server: it gets the caller's words with their personal data
    masked (phone, ID, passport, application numbers, e-mail addresses), never as said."""
    rewriter = getattr(router, "rewriter", None)
    if rewriter is not None:
        from server.people.masking import mask_text

        rewriter.redact = mask_text


def load_components(settings: Any) -> Components:
    """Load the real models (blocking, seconds): call from a thread at start-up."""
    from routing.router import Router
    from voice.asr import build_recognizer
    from voice.language import CallLanguage
    from voice.streaming import StreamingTranscriber
    from voice.tts import build_synthesizer
    from voice.tts.lead import first_chunk_text
    from voice.vad import build_vad

    timings: dict[str, float] = {}

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        value = fn()
        timings[f"load_{name}"] = round(time.perf_counter() - t0, 3)
        return value

    voice = settings.voice
    recognizer = timed("recognizer", lambda: build_recognizer(voice))
    base_vad = timed("vad", lambda: build_vad(voice))
    synthesizer = timed("synthesizer", lambda: build_synthesizer(voice))
    router = timed("router", lambda: Router.load(settings.routing))
    mask_chat_backend(router)
    prompts = router.prompts  # loaded and validated once, by the router

    def make_transcriber(language_hint: str | None) -> Any:
        vad = base_vad.fork() if hasattr(base_vad, "fork") else build_vad(voice)
        return StreamingTranscriber(
            recognizer=recognizer,
            vad=vad,
            settings=voice,
            call_language=CallLanguage.from_hint(language_hint, switch_min_s=voice.language_switch_min_s),
        )

    def synthesize_prompts(keys: tuple[str, ...]) -> None:
        from server.call.turn_taking import split_by_language

        for key in keys:
            for lang in settings.languages:
                for seg in split_by_language(prompts.text(key, lang), lang):
                    for _ in synthesizer.synthesize(seg.text, seg.language):
                        pass

    def warm_prompts() -> None:
        # Every fixed prompt a call may need first is synthesized (and cached) before the service says ready: the
        # first caller hears the greeting, "one moment", a transfer or a goodbye at once, whatever else is cold.
        if voice.tts_cache_size == 0 and not voice.tts_disk_cache:
            return  # no cache to fill (benchmarks of uncached speech)
        # Processes sharing a disk cache (a cluster on one machine, `hotline warm` beside a server) take turns: the
        # first synthesizes, the others then read its files, instead of each spending the CPU on the same prompts.
        with _cache_lock(getattr(synthesizer, "disk_dir", None), "prompts"):
            synthesize_prompts(CALL_PROMPTS)

    def cache_answers(entries: Any) -> None:
        # Answers of these entries, in both languages, into the disk synthesis cache (voice/tts/cache.py), by a
        # separate lowest-priority process that is frozen while calls are connected (voice/tts/warming.py): an
        # answer then starts playing as soon as it is decided, and warming never takes the CPU from a caller.
        # Used for every answer at start-up and for the answers a knowledge publish changed.
        from server.call.turn_taking import split_by_language
        from voice.tts.warming import Warmer

        if voice.tts_cache_size == 0 and not voice.tts_disk_cache:
            return  # no cache to fill (benchmarks of uncached speech)
        items = [(seg.text, seg.language) for entry in entries for lang in settings.languages
                 if entry.answer.get(lang) for seg in split_by_language(entry.answer[lang], lang)]
        items = [i for i in items if not synthesizer.is_cached(*i)]
        if not items:
            return
        if not voice.tts_disk_cache:
            # Without a disk cache the answers can only be warmed into this process's memory: between calls.
            for text, language in items:
                while comps.calls_active() and not comps.stopping.is_set():
                    time.sleep(0.5)
                if comps.stopping.is_set():
                    return
                for _ in synthesizer.synthesize(text, language):
                    pass
            return
        code = Warmer(voice, items, niceness=settings.warm_niceness).run(busy=comps.calls_active, stopping=comps.stopping.is_set)
        if code not in (0, None):
            log.warning("answer warming process failed", extra={"exitcode": code})

    def warm_answers() -> None:
        cache_answers(router.kb.entries)  # every knowledge-base answer

    comps = Components(
        make_transcriber=make_transcriber,
        router=router,
        prompts=prompts,
        synthesizer=synthesizer,
        warmups=[recognizer.warm_up, synthesizer.warm_up, router.warm_up, warm_prompts],
        background_warmups=[warm_answers] if settings.warm_answers else [],
        timings=timings,
        cache_answers=cache_answers,
        first_chunk_text=functools.partial(first_chunk_text, lead=voice.tts_lead_chunk),
    )
    return comps


@contextlib.contextmanager
def _cache_lock(disk_dir: Any, name: str) -> Iterator[None]:
    """An exclusive advisory lock (flock) on `disk_dir`/.`name`.lock, held for the block; no lock without a disk."""
    if disk_dir is None:
        yield
        return
    import fcntl

    path = Path(disk_dir)
    path.mkdir(parents=True, exist_ok=True)
    with open(path / f".{name}.lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
