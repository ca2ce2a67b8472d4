"""Cache warming that never slows a call: a separate process, lowest priority, frozen while calls are connected.

Warming every knowledge-base answer takes tens of minutes of both cores with the neural voice. Run as a thread
beside the calls (as before), it competed with them for the CPU and the interpreter: the first calls of a fresh
install waited 7-12 s, recognition alone 3 s. Here the warmer is its own process:
- os.nice(19): the scheduler gives it what live work leaves over;
- paused with SIGSTOP the moment a call is connected, resumed with SIGCONT when none is: it stops *inside* the
  synthesis it is running, not after it (an onnxruntime run cannot be interrupted any other way, and its worker
  threads spin while they wait, so a low priority alone still takes CPU from a call);
- it writes the shared disk cache (voice/tts/cache.py: atomic writes), which the server reads on a miss.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
from collections.abc import Callable, Sequence

from voice.settings import VoiceSettings

log = logging.getLogger(__name__)

Item = tuple[str, str]  # (text, language)


def _warm(settings_json: str, items: Sequence[Item], niceness: int) -> None:
    # Its own process group: a pause must also freeze the processes the voice starts (the espeak-ng phonemizer).
    os.setpgrp()
    os.nice(niceness)
    parent = os.getppid()
    from voice.tts import build_synthesizer

    settings = VoiceSettings.model_validate_json(settings_json).model_copy(update={"tts_cache_size": 0})
    synth = build_synthesizer(settings)
    for text, language in items:
        if os.getppid() != parent:
            return  # the server is gone: nobody will read the cache this is filling
        if synth.is_cached(text, language):
            continue
        for attempt in (1, 2):  # a second try: espeak-ng's driver now and then loses its output under load
            try:
                for _ in synth.synthesize(text, language):
                    pass
                break
            except Exception as exc:  # noqa: BLE001 - one failed text is a cache miss later, not the end of warming
                log.warning("warming: one text failed (%s, attempt %d)", type(exc).__name__, attempt)


class Warmer:
    """One warming process over `items`. pause()/resume() are idempotent and cheap (a signal)."""

    def __init__(self, settings: VoiceSettings, items: Sequence[Item], *, niceness: int = 19) -> None:
        """niceness: added to the process's (19: the lowest priority; tests on a loaded machine use less)."""
        if not settings.tts_disk_cache:
            raise ValueError("a separate warming process needs the disk cache (tts_disk_cache)")
        self.settings = settings
        self.items = list(items)
        self.niceness = niceness
        self._process: mp.process.BaseProcess | None = None
        self.paused = False

    def start(self) -> None:
        # spawn, not fork: the server's threads, locks and loaded models must not be copied into the child.
        ctx = mp.get_context("spawn")
        self._process = ctx.Process(target=_warm, args=(self.settings.model_dump_json(), self.items, self.niceness),
                                    name="hotline-warm", daemon=True)
        self._process.start()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.is_alive()

    @property
    def exitcode(self) -> int | None:
        return None if self._process is None else self._process.exitcode

    def pause(self) -> None:
        if not self.paused and self.running:
            self._signal(signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        if self.paused and self.running:
            self._signal(signal.SIGCONT)
        self.paused = False

    def _signal(self, sig: int) -> None:
        pid = self._process.pid
        try:
            os.killpg(pid, sig)  # the warmer and what it started
        except ProcessLookupError:
            os.kill(pid, sig)  # its own group is not made yet (the first instants after the start)

    def stop(self, timeout: float = 5.0) -> None:
        if self._process is None:
            return
        if self.running:
            self.resume()
            self._process.terminate()
        self._process.join(timeout)
        if self.running:  # at nice 19 on a loaded machine it may not even get the CPU to die: insist
            self._process.kill()
            self._process.join(timeout)

    def run(self, *, busy: Callable[[], bool], stopping: Callable[[], bool], poll_s: float = 0.05) -> int | None:
        """Start, then follow `busy()` (calls connected: paused) until done or `stopping()`. Blocking."""
        import time

        self.start()
        try:
            while self.running and not stopping():
                if busy():
                    self.pause()
                else:
                    self.resume()
                time.sleep(poll_s)
        finally:
            if stopping():
                self.stop()
            elif self._process is not None:
                self._process.join(1.0)
        return self.exitcode
