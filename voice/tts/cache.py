"""A cache in front of a synthesizer: fixed prompts and knowledge-base answers are synthesized once.

Keyed by (voice, language, text): the same words in the same voice are the same audio, so a hit returns the very
chunks (immutable dataclasses) the first synthesis produced. A miss streams chunks as the voice produces them and
stores them only when the whole text was synthesized (an abandoned or failed synthesis is never cached half-done).
Thread-safe: one lock around the LRU order; synthesis itself runs outside the lock.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from collections.abc import Iterator

from voice.tts.textnorm import Language
from voice.types import SpeechChunk


class CachedSynthesizer:
    def __init__(self, *, inner, max_entries: int = 512, disk_dir: Path | None = None, variant: str = "") -> None:
        if max_entries < 0:
            raise ValueError("max_entries must be >= 0")
        self.inner = inner
        # A second level on disk: knowledge-base answers and prompts survive restarts, so on 2 cores the neural
        # voice synthesizes each of them once ever, not once per process (warming all answers takes minutes).
        self.disk_dir = Path(disk_dir) if disk_dir else None
        self.variant = variant  # what else changes the audio (speed, style): part of the disk key
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
        if cached is None and self.disk_dir is not None:
            cached = self._read_disk(key)
            if cached is not None:
                self._remember(key, cached)
        if cached is not None:
            yield from cached
            return
        produced: list[SpeechChunk] = []
        for chunk in self.inner.synthesize(text, language):
            produced.append(chunk)
            yield chunk
        if self.disk_dir is not None and produced:
            self._write_disk(key, produced)
        self._remember(key, tuple(produced))

    def is_cached(self, text: str, language: Language) -> bool:
        key = (self.inner.name, language, text)
        with self._lock:
            if key in self._entries:
                return True
        return self.disk_dir is not None and self._disk_path(key).is_file()

    # ------------------------------------------------------------ disk level

    def _disk_path(self, key: tuple[str, str, str]) -> Path:
        digest = hashlib.sha256("\x1f".join((*key, self.variant)).encode("utf-8")).hexdigest()
        return self.disk_dir / digest[:2] / f"{digest}.pcm"

    def _read_disk(self, key: tuple[str, str, str]) -> tuple[SpeechChunk, ...] | None:
        path = self._disk_path(key)
        try:
            data = path.read_bytes()
            header_len = int.from_bytes(data[:4], "little")
            meta = json.loads(data[4 : 4 + header_len])
            body = memoryview(data)[4 + header_len :]
            chunks, pos = [], 0
            for m in meta["chunks"]:
                pcm = bytes(body[pos : pos + m["bytes"]])
                pos += m["bytes"]
                chunks.append(SpeechChunk(pcm16=pcm, text=m["text"], language=m["language"], index=m["index"],
                                          last=m["last"], voice=m["voice"], synthesis_s=0.0))
            if pos != len(body) or meta.get("key") != list(key):
                return None
            return tuple(chunks)
        except (OSError, ValueError, KeyError):  # missing or damaged: synthesize again
            return None

    def _write_disk(self, key: tuple[str, str, str], chunks: list[SpeechChunk]) -> None:
        path = self._disk_path(key)
        meta = {"key": list(key), "chunks": [
            {"bytes": len(c.pcm16), "text": c.text, "language": c.language, "index": c.index, "last": c.last,
             "voice": c.voice} for c in chunks]}
        header = json.dumps(meta, ensure_ascii=False).encode("utf-8")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                f.write(len(header).to_bytes(4, "little") + header + b"".join(c.pcm16 for c in chunks))
            os.replace(tmp, path)  # atomic: a reader never sees half a file
        except OSError:
            pass  # a cache that cannot be written is only slower

    def _remember(self, key: tuple[str, str, str], produced: tuple[SpeechChunk, ...]) -> None:
        if self.max_entries == 0:
            return
        with self._lock:
            self._entries[key] = produced
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
