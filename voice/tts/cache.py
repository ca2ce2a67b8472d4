"""A cache in front of a synthesizer: fixed prompts and knowledge-base answers are synthesized once.

Keyed by (voice, language, text): the same words in the same voice are the same audio, so a hit returns the very
chunks (immutable dataclasses) the first synthesis produced. A miss streams chunks as the voice produces them and
stores them only when the whole text was synthesized (an abandoned or failed synthesis is never cached half-done).
Thread-safe: one lock around the LRU order; synthesis itself runs outside the lock.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator

from voice.tts.textnorm import Language
from voice.types import SpeechChunk


class CachedSynthesizer:
    def __init__(self, *, inner, max_entries: int = 512) -> None:
        if max_entries < 0:
            raise ValueError("max_entries must be >= 0")
        self.inner = inner
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[tuple[str, str, str], tuple[SpeechChunk, ...]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.inner.name

    def warm_up(self) -> None:
        self.inner.warm_up()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def synthesize(self, text: str, language: Language) -> Iterator[SpeechChunk]:
        key = (self.inner.name, language, text)
        with self._lock:
            cached = self._entries.get(key)
            if cached is not None:
                self._entries.move_to_end(key)
                self.hits += 1
            else:
                self.misses += 1
        if cached is not None:
            yield from cached
            return
        produced: list[SpeechChunk] = []
        for chunk in self.inner.synthesize(text, language):
            produced.append(chunk)
            yield chunk
        if self.max_entries == 0:
            return
        with self._lock:
            self._entries[key] = tuple(produced)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
