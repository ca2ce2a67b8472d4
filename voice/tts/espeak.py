"""The fall-back voice: espeak-ng through pyttsx3 (the design card's engine), English and Mandarin.

Fast (about 0.005x real time) but robotic; Whisper understands its English well and its Mandarin poorly (see
`hotline bench tts`). Mandarin goes through tone-numbered pinyin (pypinyin, Style.TONE3) and the `cmn-latn-pinyin`
voice, because the plain `cmn` voice misreads Chinese characters on this Debian release's espeak-ng (1.51).
English words inside Chinese text are spoken by the English voice (the text is split into language runs).

pyttsx3 is not thread-safe (its espeak driver keeps one global libespeak-ng state and a synth callback), so this
adapter owns ONE worker thread that does all pyttsx3 calls; `synthesize()` from any thread queues a job and waits
for it with a time-out, so a stuck engine gives a clear error instead of a hang.
"""
from __future__ import annotations

import logging
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

import numpy as np

from voice.audio import decode_bytes, float_to_pcm16
from voice.settings import VoiceSettings
from voice.tts.textnorm import Language, language_runs, normalize, split_sentences
from voice.types import SAMPLE_RATE, SpeechChunk

log = logging.getLogger(__name__)

ENGLISH_VOICE = "en-us"
MANDARIN_VOICE = "cmn-latn-pinyin"
BASE_RATE_WPM = 175  # espeak-ng's own default; settings.tts_speed scales it
SENTENCE_PAUSE_S = 0.25
JOB_TIMEOUT_S = 30.0
MIN_AUDIO_S = 0.05  # less than this from a non-empty text means the engine dropped the utterance

_PINYIN_PUNCT = str.maketrans({"，": ",", "。": ".", "、": ",", "！": "!", "？": "?", "；": ";", "：": ":",
                               "“": " ", "”": " ", "（": " ", "）": " ", "《": " ", "》": " "})


class SynthesisError(RuntimeError):
    """The voice could not synthesize (engine missing, failed, or timed out)."""


def to_pinyin(text: str) -> str:
    """Chinese text -> tone-numbered pinyin syllables ("ni3 hao3"), the input of the cmn-latn-pinyin voice."""
    from pypinyin import Style, lazy_pinyin

    syllables = lazy_pinyin(text.translate(_PINYIN_PUNCT), style=Style.TONE3, neutral_tone_with_five=True,
                            errors=lambda chars: list(chars))
    return " ".join(s.strip() for s in syllables if s.strip())


class _Pyttsx3Backend:
    """Runs only on the worker thread."""

    name = "pyttsx3"

    def __init__(self) -> None:
        import pyttsx3
        import pyttsx3.drivers.espeak as driver

        # pyttsx3 2.99 print()s "Audio saved to <file>" after every save_to_file; silence that module's print
        # (only that module's name lookup is changed) so the service's stdout stays clean.
        driver.print = lambda *args, **kwargs: None
        self.engine = pyttsx3.init("espeak")
        self._dir = tempfile.mkdtemp(prefix="hotline-espeak-")

    def render(self, text: str, voice: str, rate: int) -> np.ndarray:
        path = os.path.join(self._dir, "utterance.wav")
        self.engine.setProperty("voice", voice)
        self.engine.setProperty("rate", rate)
        self.engine.save_to_file(text, path)
        self.engine.runAndWait()
        try:
            with open(path, "rb") as f:
                data = f.read()
        finally:
            if os.path.exists(path):
                os.unlink(path)
        return decode_bytes(data, name="espeak output") if len(data) > 44 else np.zeros(0, np.float32)


class _CliBackend:
    """espeak-ng's own command line: used when pyttsx3 cannot drive libespeak-ng (missing library, init error)."""

    name = "espeak-ng-cli"

    def __init__(self) -> None:
        self.executable = shutil.which("espeak-ng")
        if self.executable is None:
            raise SynthesisError("espeak-ng is not installed: apt-get install espeak-ng")

    def render(self, text: str, voice: str, rate: int) -> np.ndarray:
        done = subprocess.run([self.executable, "-v", voice, "-s", str(rate), "--stdout", "--stdin"],
                              input=text.encode("utf-8"), capture_output=True, timeout=JOB_TIMEOUT_S, check=True)
        return decode_bytes(done.stdout, name="espeak output") if len(done.stdout) > 44 else np.zeros(0, np.float32)


class EspeakSynthesizer:
    name = "espeak"

    def __init__(self, *, settings: VoiceSettings, prefer_cli: bool = False) -> None:
        self.settings = settings
        self.rate = int(round(BASE_RATE_WPM * settings.tts_speed))
        self._prefer_cli = prefer_cli
        self._jobs: queue.Queue = queue.Queue()
        self._worker: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.backend_name = ""
        self._cli: _CliBackend | None = None  # created on the worker thread if pyttsx3 ever fails

    # ------------------------------------------------------------ the worker thread

    def _ensure_worker(self) -> None:
        with self._start_lock:
            if self._worker is not None and self._worker.is_alive():
                return
            ready: Future = Future()
            self._worker = threading.Thread(target=self._run, args=(ready,), name="espeak-tts", daemon=True)
            self._worker.start()
            self.backend_name = ready.result(timeout=JOB_TIMEOUT_S)

    def _run(self, ready: Future) -> None:
        backend = None
        if not self._prefer_cli:
            try:
                backend = _Pyttsx3Backend()
            except Exception as exc:  # no libespeak-ng for ctypes, or pyttsx3 broken: the CLI still speaks
                log.warning("pyttsx3 cannot drive espeak-ng (%s); using the espeak-ng command line", type(exc).__name__)
        if backend is None:
            try:
                backend = _CliBackend()
            except SynthesisError as exc:
                ready.set_exception(exc)
                return
        ready.set_result(backend.name)
        while True:
            job = self._jobs.get()
            if job is None:
                return
            text, voice, future = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(self._render_checked(backend, text, voice))
            except Exception as exc:
                future.set_exception(exc)

    def _render_checked(self, backend, text: str, voice: str) -> np.ndarray:
        # pyttsx3 2.99's espeak driver polls libespeak-ng's asynchronous callback thread and, under CPU load, now and
        # then writes an empty file (seen in 1 of ~20 calls with 6 threads queueing). Output length is otherwise
        # identical to the CLI's, so an empty result is retried, then rendered by the CLI.
        for _ in range(2):
            audio = backend.render(text, voice, self.rate)
            if audio.size >= MIN_AUDIO_S * SAMPLE_RATE or not any(ch.isalnum() for ch in text):
                return audio
        if self._cli is None:
            self._cli = _CliBackend()
        log.warning("%s returned no audio twice; rendered by the espeak-ng command line", backend.name)
        return self._cli.render(text, voice, self.rate)

    def _render(self, text: str, voice: str) -> np.ndarray:
        self._ensure_worker()
        future: Future = Future()
        self._jobs.put((text, voice, future))
        try:
            return future.result(timeout=JOB_TIMEOUT_S)
        except FutureTimeout:
            future.cancel()
            raise SynthesisError(f"espeak-ng did not finish within {JOB_TIMEOUT_S:.0f} s") from None
        except SynthesisError:
            raise
        except Exception as exc:
            raise SynthesisError(f"espeak-ng failed ({type(exc).__name__}: {exc})") from None

    def close(self) -> None:
        if self._worker is not None:
            self._jobs.put(None)
            self._worker.join(timeout=5)
            self._worker = None

    # ------------------------------------------------------------ the adapter

    def warm_up(self) -> None:
        self._render("ready", ENGLISH_VOICE)

    def synthesize(self, text: str, language: Language) -> Iterator[SpeechChunk]:
        if not isinstance(text, str):
            raise TypeError(f"text must be str, not {type(text).__name__}")
        if language not in ("en", "zh"):
            raise ValueError(f"language must be 'en' or 'zh', not {language!r}")
        plan = []
        for sentence in split_sentences(text):
            runs = language_runs(normalize(sentence, language), language)
            if runs:
                plan.append((sentence, runs))
        for index, (sentence, runs) in enumerate(plan):
            t0 = time.perf_counter()
            pieces = []
            for lang, run in runs:
                if lang == "zh":
                    pieces.append(self._render(to_pinyin(run), MANDARIN_VOICE))
                else:
                    pieces.append(self._render(run, ENGLISH_VOICE))
            pieces.append(np.zeros(int(SENTENCE_PAUSE_S * SAMPLE_RATE), np.float32))
            audio = np.concatenate(pieces)
            yield SpeechChunk(pcm16=float_to_pcm16(audio), text=sentence, language=language, index=index,
                              last=index == len(plan) - 1, voice=self.name, synthesis_s=time.perf_counter() - t0)
