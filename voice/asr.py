"""Speech recognition: Whisper base behind one narrow adapter, two engines.

- faster-whisper (CTranslate2; int8 on CPU, float16 on CUDA) — the default, faster on 2 cores (`hotline bench asr`).
- openai-whisper (PyTorch), its checkpoint converted once from the same weights (voice.models).

Each utterance is encoded ONCE: language detection and decoding share the encoder output. (faster-whisper's own
`transcribe()` runs the encoder a second time when it has to detect the language; on 2 cores the encoder is most
of the cost of a short utterance.)

The encoder need not see Whisper's padded 30 s window: CTranslate2 encodes a window as long as the utterance plus a
margin (settings.encoder_window), 5-10x less encoder work on a hotline question. Without the 30 s of padding the
decoder loses its cue that the speech has ended and, without timestamps, repeats the utterance ("Stuff it into you,
his belly counseled him. Stuff it into you, ..."); decoded WITH timestamps it marks where each segment starts, and
segments that start where the speech has already ended are dropped (see `_content_tokens`). A timestamped decode
may also stop early, on an empty segment ("... ask what you can<9.36><9.36>"): Whisper's convention for "the rest
is for the next window". Whisper's own transcribe() then decodes on from that timestamp, so the recognizer does too
(`Recognizer._continue`); before it did, the tail of such an utterance was lost. `hotline bench window` measures
both windows side by side on the real recordings.
"""
from __future__ import annotations

import logging
import threading
import time
import math
import re
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from voice import language as lang
from voice.models import WHISPER_MODEL_NAME, openai_whisper_checkpoint, whisper_ct2_dir
from voice.settings import VoiceSettings
from voice.types import SAMPLE_RATE, LanguageVerdict, Transcript

log = logging.getLogger(__name__)

MAX_SECONDS = 30.0  # Whisper's window; longer audio is split by the caller (see transcribe_long)
FRAMES_PER_SECOND = 100  # Whisper's log-Mel frames (10 ms hop)
# A segment the decoder starts this close to the end of the speech (or later) is the decoder running on into the
# silent margin (a repetition), not speech.
LATE_SEGMENT_S = 0.3
# A segment that closes more than this after the end of the speech cannot be speech: the decoder ran on past the
# audio (seen: "...letterpress<6.60><6.60> composed to form letterpress, as all books, not primarily intended as
# picture books, consist<29.04>" on an 8.8 s clip in a 9.8 s window). Whisper's timestamps are coarse, so a
# close inside the silent margin is normal.
OVERRUN_S = 1.0
# An utterance whose decode stopped early is continued from there at most this often (Decoded.resume_s); each
# continuation starts later in the audio, so this only bounds the cost of a pathological case.
MAX_CONTINUATIONS = 3
LOOP_RATIO = 2.4  # gzip compression ratio above which Whisper itself treats a decode as a repetition loop

# Hotline vocabulary, given to the decoder as the previous-text prompt in the utterance's language (what it
# changes is measured by `hotline bench asr --vocabulary both`). The Chinese prompt is in Simplified
# characters, which also nudges Whisper away from Traditional output.
VOCABULARY = {
    # Sentences, not term lists: a list prompt ("工作许可、居留许可、…") makes Whisper continue the list on
    # mixed or unclear speech ("许可、许可、许可…", seen on mixed_asr_example_cn_en.wav).
    "en": "Hello, this is the Foreign Talent in Shanghai hotline. I have a question about my work permit, "
    "the residence permit, the single window, or the talent visa.",
    "zh": "您好，这里是外国人才在上海服务热线。我想咨询工作许可、居留许可和单一窗口，还有薪酬购付汇的问题。",
}

# Phrases Whisper invents on silence and noise (subtitle credits and sign-offs from its training data). They are
# only dropped when the model itself doubts there is speech (see _is_hallucination).
HALLUCINATIONS = (
    "thank you", "thanks for watching", "thank you for watching", "please subscribe", "subtitles by",
    "字幕", "请不吝点赞", "订阅", "谢谢观看", "感谢观看", "明镜与点点栏目", "by bwd6",
)


@dataclass(frozen=True, slots=True)
class Decoded:
    text: str
    avg_logprob: float
    no_speech_prob: float
    # False when a timestamped decode never closed its last segment: it ran on until max_length, the sign of a
    # repetition loop (seen with the vocabulary prompt in a short window: "Stuff it into you, his belly counseled
    # him. Stuff it into you, ...").
    ended: bool = True
    # Set when a timestamped decode stopped on an opened, empty segment ("... ask what you can<9.36><9.36>" and
    # the end): by Whisper's timestamp convention the audio from there on is left for the next window, and
    # Whisper's own transcribe() (the plain call) goes on decoding from that point. Also set where a segment ran on
    # past the audio (OVERRUN_S): the start of that segment. Seconds into the window.
    resume_s: float | None = None

    @property
    def looping(self) -> bool:
        return not self.ended or _compression_ratio(self.text) > LOOP_RATIO or _repeats_itself(self.text)


class Engine(Protocol):
    """What differs between the two engines: three calls on one encoder output."""

    name: str
    short_window: bool  # can encode less than Whisper's 30 s window

    def encode(self, audio: np.ndarray, *, window_s: float | None = None): ...

    def language_probs(self, encoded) -> dict[str, float]: ...

    def decode(self, encoded, *, language: str, prompt: str | None, max_tokens: int, beam_size: int,
               content_s: float | None = None) -> Decoded: ...


def _resolve_device(device: str) -> str:
    if device != "auto":
        return device
    try:
        import ctranslate2

        return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    except Exception:
        return "cpu"


class FasterWhisperEngine:
    name = "faster-whisper"
    short_window = True

    def __init__(self, settings: VoiceSettings) -> None:
        from faster_whisper import WhisperModel

        self.device = _resolve_device(settings.device)
        self.compute_type = settings.compute_type
        if self.compute_type == "auto":
            self.compute_type = "float16" if self.device == "cuda" else "int8"
        self._model = WhisperModel(
            str(whisper_ct2_dir(settings.cache_dir)), device=self.device, compute_type=self.compute_type,
            cpu_threads=settings.threads, num_workers=1,
        )
        self._tokenizers: dict[str, object] = {}

    def _tokenizer(self, language: str):
        from faster_whisper.tokenizer import Tokenizer

        if language not in self._tokenizers:
            self._tokenizers[language] = Tokenizer(self._model.hf_tokenizer, True, task="transcribe", language=language)
        return self._tokenizers[language]

    def encode(self, audio: np.ndarray, *, window_s: float | None = None):
        """window_s: seconds the encoder sees (the audio, zero-padded or cut); None = Whisper's 30 s."""
        from faster_whisper.audio import pad_or_trim

        features = self._model.feature_extractor(audio)
        frames = self._model.feature_extractor.nb_max_frames
        if window_s is not None:
            frames = min(frames, 2 * math.ceil(window_s * FRAMES_PER_SECOND / 2))  # even: the encoder halves it
        return self._model.encode(pad_or_trim(features, frames))

    def language_probs(self, encoded) -> dict[str, float]:
        pairs = self._model.model.detect_language(encoded)[0]
        return {token[2:-2]: float(p) for token, p in pairs}

    def decode(self, encoded, *, language: str, prompt: str | None, max_tokens: int, beam_size: int,
               content_s: float | None = None) -> Decoded:
        """content_s: seconds of real audio in a short window (decoded with timestamps, see module docstring)."""
        from faster_whisper.transcribe import get_suppressed_tokens

        tok = self._tokenizer(language)
        timestamps = content_s is not None
        previous = tok.encode(" " + prompt.strip()) if prompt else []
        prompt_tokens = self._model.get_prompt(tok, previous, without_timestamps=not timestamps)
        if timestamps:
            max_tokens *= 2  # room for the timestamp pairs around each segment
        result = self._model.model.generate(
            encoded, [prompt_tokens], beam_size=beam_size, patience=1.0, length_penalty=1.0,
            # max_length counts the prompt in CTranslate2 (unlike openai-whisper's sample_len).
            max_length=min(448, len(prompt_tokens) + max_tokens), return_scores=True, return_no_speech_prob=True,
            suppress_blank=True, suppress_tokens=get_suppressed_tokens(tok, (-1,)),
        )[0]
        produced = result.sequences_ids[0]
        n = len(produced)
        avg_logprob = result.scores[0] * n / (n + 1) if n else -10.0
        if not timestamps:
            tokens = [t for t in produced if t < tok.eot]
            return Decoded(tok.decode(tokens).strip(), float(avg_logprob), float(result.no_speech_prob))
        ended = not produced or produced[-1] >= tok.timestamp_begin
        resume_s = None
        overrun = _overrun_segment(produced, eot=tok.eot, timestamp_begin=tok.timestamp_begin, content_s=content_s)
        if overrun is not None:
            # Keep what came before the impossible segment and decode its audio again from where it opened, as
            # a stop on an empty segment is (Recognizer._continue): the seek Whisper's transcribe() would make.
            # A decode that never ended stays a loop (Decoded.looping), which has its own fall-back.
            cut, resume_s = overrun
            produced = produced[:cut]
        elif len(produced) >= 2 and min(produced[-2:]) >= tok.timestamp_begin:
            resume_s = (produced[-1] - tok.timestamp_begin) * 0.02
        tokens = _content_tokens(produced, eot=tok.eot, timestamp_begin=tok.timestamp_begin, content_s=content_s)
        return Decoded(tok.decode(tokens).strip(), float(avg_logprob), float(result.no_speech_prob), ended, resume_s)


@dataclass(frozen=True, slots=True)
class _Segment:
    """One segment of a timestamped decode, <|start|> text <|end|>, as the decoder gave it."""
    opening: int | None  # index of its opening timestamp in the decode; None: text the decoder gave without one
    start_s: float | None  # None without an opening timestamp
    end_s: float | None  # None when the decode stopped before closing it
    tokens: tuple[int, ...]  # its text tokens


def _segments(ids: list[int], *, eot: int, timestamp_begin: int) -> list[_Segment]:
    """Split a timestamped decode into segments. Pure.

    Timestamped output is <|t0|> text <|t1|><|t1'|> text <|t2|> ...: a timestamp that opens a segment is followed
    by text, one that closes it by another timestamp or the end. The decoder may skip an opening timestamp; the text
    then forms a segment of its own with no start. Special tokens (eot and the like) are not text.
    """
    out: list[_Segment] = []
    opening, start, text = None, None, []
    in_segment = False  # the next timestamp closes a segment

    def close(end_s: float | None) -> None:
        out.append(_Segment(opening, start, end_s, tuple(text)))

    for i, t in enumerate(ids):
        if t >= timestamp_begin:
            seconds = (t - timestamp_begin) * 0.02
            if in_segment:
                close(seconds)
                in_segment = False
            else:
                opening, start, text, in_segment = i, seconds, [], True
        elif t < eot:
            if not in_segment:
                opening, start, text, in_segment = None, None, [], True
            text.append(t)
    if in_segment:
        close(None)
    return out


def _overrun_segment(ids: list[int], *, eot: int, timestamp_begin: int, content_s: float) -> tuple[int, float] | None:
    """(index of its opening timestamp, its start in seconds) of the first segment that closes more than
    OVERRUN_S after the speech ends, when text came before it (something to keep); else None. Pure.

    A segment without an opening timestamp is cut from the last one that had one."""
    start: tuple[int, float] | None = None
    heard = False
    for seg in _segments(ids, eot=eot, timestamp_begin=timestamp_begin):
        if seg.opening is not None:
            start = (seg.opening, seg.start_s) if heard else None
        if seg.end_s is not None and seg.end_s > content_s + OVERRUN_S and start is not None:
            return start
        heard = heard or bool(seg.tokens)
    return None


def _content_tokens(ids: list[int], *, eot: int, timestamp_begin: int, content_s: float) -> list[int]:
    """The text tokens of a timestamped decode, without segments that start where the speech has ended.
    A segment without an opening timestamp is judged by the last one that had one. Pure."""
    out: list[int] = []
    keep = True
    for seg in _segments(ids, eot=eot, timestamp_begin=timestamp_begin):
        if seg.start_s is not None:
            keep = seg.start_s < content_s - LATE_SEGMENT_S
        if keep:
            out.extend(seg.tokens)
    return out


class OpenAIWhisperEngine:
    name = "openai-whisper"
    short_window = False  # its encoder checks the input against the 30 s positional embedding

    def __init__(self, settings: VoiceSettings) -> None:
        import torch
        import whisper

        self.device = _resolve_device(settings.device)
        if self.device == "cpu":
            torch.set_num_threads(settings.threads)
        self._torch = torch
        self._whisper = whisper
        self._model = whisper.load_model(str(openai_whisper_checkpoint(settings.cache_dir)), device=self.device)
        self._fp16 = self.device == "cuda"

    def encode(self, audio: np.ndarray, *, window_s: float | None = None):
        w = self._whisper
        with self._torch.inference_mode():
            mel = w.log_mel_spectrogram(w.pad_or_trim(self._torch.from_numpy(audio)), n_mels=80).to(self.device)
            if self._fp16:
                mel = mel.half()
            return self._model.embed_audio(mel[None])

    def language_probs(self, encoded) -> dict[str, float]:
        with self._torch.inference_mode():
            _, probs = self._whisper.detect_language(self._model, encoded)
        return {k: float(v) for k, v in probs[0].items()}

    def decode(self, encoded, *, language: str, prompt: str | None, max_tokens: int, beam_size: int,
               content_s: float | None = None) -> Decoded:
        options = self._whisper.DecodingOptions(
            task="transcribe", language=language, prompt=prompt, without_timestamps=True, fp16=self._fp16,
            beam_size=beam_size if beam_size > 1 else None, sample_len=max_tokens,
        )
        with self._torch.inference_mode():
            result = self._whisper.decode(self._model, encoded, options)[0]
        return Decoded(result.text.strip(), float(result.avg_logprob), float(result.no_speech_prob))


ENGINES = {"faster-whisper": FasterWhisperEngine, "openai-whisper": OpenAIWhisperEngine}


class Recognizer:
    """transcribe(audio, language=None) -> Transcript | None. Thread-safe; calls on one model are serialised."""

    def __init__(self, *, engine: Engine, settings: VoiceSettings, vad=None) -> None:
        self.engine = engine
        self.settings = settings
        # Whisper's no-speech probability alone lets white noise and mains hum through as invented words
        # (tests/test_voice_asr.py::test_recognizer_alone_gates_noise); the VAD in front catches them.
        self._vad = vad
        self.model = WHISPER_MODEL_NAME
        # CTranslate2 and PyTorch models are not meant to run two decodes at once on 2 cores; the call service
        # bounds concurrency with its own pool, this lock only keeps direct users (CLI, tests) safe.
        self._lock = threading.Lock()

    @property
    def engine_name(self) -> str:
        return self.engine.name

    def warm_up(self) -> None:
        rng = np.random.default_rng(0)
        self.transcribe((rng.standard_normal(SAMPLE_RATE) * 0.01).astype(np.float32), language="en")

    def window_s(self, duration_s: float) -> float | None:
        """Seconds of audio the encoder sees for an utterance of `duration_s`; None = Whisper's full 30 s window."""
        s = self.settings
        if s.encoder_window == "full" or not self.engine.short_window:
            return None
        window = max(duration_s + s.encoder_margin_s, s.encoder_min_s)
        return window if window < MAX_SECONDS else None

    def detect_language(self, audio: np.ndarray) -> dict[str, float]:
        audio = _check(audio)
        with self._lock:
            return self.engine.language_probs(self.engine.encode(audio, window_s=self.window_s(len(audio) / SAMPLE_RATE)))

    def transcribe(
        self, audio: np.ndarray, *, language: str | None = None, prompt: str | None = None, start_s: float = 0.0,
        vocabulary: bool | None = None, gate: bool = True, beam_size: int | None = None,
    ) -> Transcript | None:
        """One utterance (≤ 30 s). language: "en"/"zh" to force, None to detect. None result = no speech.

        gate=False skips the VAD check, for callers whose own VAD already found speech in this audio (streaming).
        beam_size: None = settings.beam_size (finals); partials pass settings.partial_beam_size.
        """
        audio = _check(audio)
        duration = len(audio) / SAMPLE_RATE
        if duration < 0.1 or float(np.sqrt(np.mean(audio**2))) < 1e-4:
            return None  # digital silence: nothing to hear, and Whisper would invent something
        if gate and self._vad is not None and not self._has_speech(audio):
            return None
        use_vocab = self.settings.use_vocabulary_prompt if vocabulary is None else vocabulary
        beam = beam_size or self.settings.beam_size
        window_s = self.window_s(duration)
        content_s = duration if window_s is not None else None
        t0 = time.perf_counter()
        with self._lock:
            encoded = self.engine.encode(audio, window_s=window_s)
            encoder_s = time.perf_counter() - t0
            if language in lang.SERVED:
                verdict = LanguageVerdict(label=language, code=language, probability=1.0, source="hint")
            else:
                verdict = lang.audio_verdict(
                    self.engine.language_probs(encoded), other_min_prob=self.settings.other_language_min_prob
                )
            decode_lang = verdict.code or "en"
            if prompt is None and use_vocab and decode_lang in self.settings.vocabulary_languages:
                prompt = VOCABULARY.get(decode_lang)
            max_tokens = int(duration * 15) + 24  # bounds runaway repetition on noise
            decoded = self._decode(encoded, language=decode_lang, prompt=prompt, max_tokens=max_tokens,
                                   beam_size=beam, content_s=content_s)
            if content_s is not None and decoded.looping:
                # Still a loop in the short window (seen on clips under 2 s): Whisper's own 30 s window, as a
                # fall-back, the way Whisper falls back to a higher temperature.
                encoded = self.engine.encode(audio)
                decoded = self._decode(encoded, language=decode_lang, prompt=prompt, max_tokens=max_tokens,
                                       beam_size=beam, content_s=None)
            text = decoded.text
            if not self._no_speech(decoded):
                text = self._continue(audio, decoded, text, language=decode_lang, prompt=prompt, beam_size=beam)
        elapsed = time.perf_counter() - t0
        if self._no_speech(decoded):
            return None
        if decode_lang == "zh" or lang.han_ratio(text) > 0.5:
            text = lang.to_simplified(text)
        if verdict.source != "hint":
            verdict = lang.combine(verdict, text)
        elif verdict.label == "zh":
            verdict = LanguageVerdict(label="zh", code="zh", probability=1.0, source="hint", mixed=lang.is_mixed(text))
        return Transcript(
            text=text, language=verdict, start_s=start_s, end_s=start_s + duration, engine=self.engine.name,
            model=self.model, recognition_s=elapsed, encoder_s=encoder_s, no_speech_prob=decoded.no_speech_prob,
            avg_logprob=decoded.avg_logprob,
        )

    def _continue(self, audio: np.ndarray, decoded: Decoded, text: str, *, language: str, prompt: str | None,
                  beam_size: int) -> str:
        """The rest of an utterance whose decode stopped early (Decoded.resume_s), decoded from where it stopped.

        Without this the tail of the utterance was lost whenever beam search preferred to end on an empty segment
        ("ask not what your country can do for you, ask what you can" for the whole JFK sentence): the plain call
        does not lose it, because Whisper's transcribe() seeks to that timestamp and decodes the next window from
        there. The same here, conditioned on the text so far as Whisper's condition_on_previous_text does.
        """
        offset = 0.0
        for _ in range(MAX_CONTINUATIONS):
            if decoded.resume_s is None or decoded.resume_s <= 0:
                break
            offset += decoded.resume_s
            rest = audio[int(offset * SAMPLE_RATE):]
            rest_s = len(rest) / SAMPLE_RATE
            if rest_s < LATE_SEGMENT_S:  # only the silent margin is left (see _content_tokens)
                break
            window_s = self.window_s(rest_s)
            encoded = self.engine.encode(rest, window_s=window_s)
            context = " ".join(p for p in (prompt, text) if p)
            decoded = self._decode(encoded, language=language, prompt=context or None,
                                   max_tokens=int(rest_s * 15) + 24, beam_size=beam_size,
                                   content_s=rest_s if window_s is not None else None, retry_prompt=text or None)
            if self._no_speech(decoded):
                break
            text = _join_text(text, decoded.text)
        return text

    def _decode(self, encoded, *, language: str, prompt: str | None, max_tokens: int, beam_size: int,
                content_s: float | None, retry_prompt: str | None = None) -> Decoded:
        decoded = self.engine.decode(encoded, language=language, prompt=prompt, max_tokens=max_tokens,
                                     beam_size=beam_size, content_s=content_s)
        if prompt and decoded.looping and retry_prompt != prompt:
            # A repetition loop (Whisper's own fallback signal): the vocabulary prompt is the usual cause; decode
            # without it (a continuation keeps the text heard so far, which says where the sentence stands).
            decoded = self.engine.decode(encoded, language=language, prompt=retry_prompt, max_tokens=max_tokens,
                                         beam_size=beam_size, content_s=content_s)
        return decoded

    def _has_speech(self, audio: np.ndarray) -> bool:
        from voice.vad import speech_regions

        with self._lock:
            regions = speech_regions(self._vad, audio, threshold=self.settings.vad_threshold)
        return sum(b - a for a, b in regions) >= min(self.settings.min_speech_s, 0.2)

    def _no_speech(self, d: Decoded) -> bool:
        s = self.settings
        if not d.text.strip() or not any(ch.isalnum() for ch in d.text):
            return True
        # Whisper's own rule: probably silence, and the text it produced is not confident either.
        if d.no_speech_prob > s.no_speech_threshold and d.avg_logprob < s.logprob_threshold:
            return True
        return d.no_speech_prob > 0.3 and _is_hallucination(d.text)


def _is_hallucination(text: str) -> bool:
    t = text.lower().strip(" .!。！")
    return any(t == h or t.startswith(h) and len(t) <= len(h) + 12 for h in HALLUCINATIONS)


def _join_text(a: str, b: str) -> str:
    """Two pieces of one transcript: a space between words of spaced scripts, none next to a Han character."""
    if not a or not b:
        return a or b
    if lang.han_ratio(a[-1]) > 0 or lang.han_ratio(b[0]) > 0:
        return a + b
    return a + " " + b


def _compression_ratio(text: str) -> float:
    import zlib

    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


_WORD = re.compile(f"[{lang.HAN}]|[^\\W_{lang.HAN}]+")
REPEAT_MIN_WORDS = 3  # "Go forward 10m. Go forward 10m." repeats 3 words; a caller's "I need, I need" only 2
REPEAT_MIN_HAN = 4  # characters: "对不起对不起" is speech, a repeated clause is not
REPEAT_MAX_WORDS = 48  # a longer loop also shows in the compression ratio (LOOP_RATIO)


def _repeats_itself(text: str) -> bool:
    """Whether the text says the same run of words twice in a row: a loop too short for the compression ratio to
    show ("Go forward 10m. Go forward 10m." for a 2.8 s clip of "go forward ten meters", one timestamped
    segment). Words compare without case or punctuation; Han characters count one each."""
    words = [w.lower() for w in _WORD.findall(text)]
    n = len(words)
    for size in range(1, min(n // 2, REPEAT_MAX_WORDS) + 1):
        for i in range(n - 2 * size + 1):
            if words[i:i + size] == words[i + size:i + 2 * size]:
                han = lang.han_ratio("".join(words[i:i + size])) > 0.5
                if size >= (REPEAT_MIN_HAN if han else REPEAT_MIN_WORDS):
                    return True
    return False


def _check(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"expected mono audio (1-D), got shape {audio.shape}")
    if len(audio) > MAX_SECONDS * SAMPLE_RATE:
        audio = audio[: int(MAX_SECONDS * SAMPLE_RATE)]
    return audio


def build_recognizer(settings: VoiceSettings, *, engine: str | None = None) -> Recognizer:
    name = engine or settings.engine
    try:
        cls = ENGINES[name]
    except KeyError:
        raise ValueError(f"unknown engine {name!r}; choose from {', '.join(ENGINES)}") from None
    from voice.vad import build_vad

    return Recognizer(engine=cls(settings), settings=settings, vad=build_vad(settings))
