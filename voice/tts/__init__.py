"""Speaking: text -> 16 kHz PCM16 speech, sentence by sentence, in English and Mandarin.

Two voices behind one narrow adapter (`Synthesizer`): Kokoro-82M, the neural default (voice/tts/kokoro.py), and
espeak-ng through pyttsx3, the fast fall-back (voice/tts/espeak.py). `build_synthesizer` wraps the chosen voice in
an LRU cache (voice/tts/cache.py) so fixed prompts and knowledge-base answers are synthesized once.

`synthesize()` blocks (model inference): callers on an event loop run it in an executor. It yields one chunk per
sentence (long sentences split further), so the first can be played while the next is being synthesized; the final
chunk has `last=True`. Text with nothing to say (empty, blanks, emoji, a bare URL) yields no chunks.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

from voice.audio import pcm16_to_telephone
from voice.settings import VoiceSettings
from voice.tts.textnorm import Language, script_language
from voice.types import SpeechChunk

__all__ = ["Synthesizer", "build_synthesizer", "build_voice", "to_telephone", "pcm16_of", "script_language"]


@runtime_checkable
class Synthesizer(Protocol):
    name: str

    def warm_up(self) -> None: ...

    def synthesize(self, text: str, language: Language) -> Iterator[SpeechChunk]: ...


# 2: the lead chunk cut at phrase boundaries (voice/tts/lead.py); 3: English inside Chinese with aspirated p t k;
# 4: a long first sentence with no other cut is cut at its first clause mark.
SYNTHESIS_REVISION = 4


def build_voice(settings: VoiceSettings, voice: str | None = None) -> Synthesizer:
    """The bare voice named by `voice` (default: settings.voice), without the cache."""
    voice = voice or settings.voice
    if voice == "neural":
        from voice.tts.kokoro import KokoroSynthesizer

        return KokoroSynthesizer(settings=settings)
    if voice == "espeak":
        from voice.tts.espeak import EspeakSynthesizer

        return EspeakSynthesizer(settings=settings)
    raise ValueError(f"voice must be 'neural' or 'espeak', not {voice!r}")


def build_synthesizer(settings: VoiceSettings, voice: str | None = None) -> Synthesizer:
    """The synthesizer the settings choose, behind the cache (settings.tts_cache_size entries; 0 disables it)."""
    from voice.tts.cache import CachedSynthesizer

    disk = settings.cache_dir / "tts" if settings.tts_disk_cache else None
    inner = build_voice(settings, voice)
    if settings.tts_lead_chunk:
        from voice.tts.lead import LeadChunker

        inner = LeadChunker(inner)
    # The revision is part of the disk key: audio cached by an older synthesizer (other phonemes, other lead cuts)
    # is never played by a newer one. Raise it with every change to what a text sounds like.
    variant = f"speed={settings.tts_speed};rev={SYNTHESIS_REVISION};lead={int(settings.tts_lead_chunk)}"
    return CachedSynthesizer(inner=inner, max_entries=settings.tts_cache_size, disk_dir=disk, variant=variant)


def to_telephone(chunk: SpeechChunk) -> bytes:
    """A chunk as the carrier wants it: 8 kHz μ-law."""
    return pcm16_to_telephone(chunk.pcm16)


def pcm16_of(chunks: Iterator[SpeechChunk] | list[SpeechChunk]) -> bytes:
    """All chunks joined: the whole utterance as 16 kHz PCM16."""
    return b"".join(c.pcm16 for c in chunks)


def model_status(settings: VoiceSettings) -> list:
    """For `hotline models`: the Kokoro model (assembled and verified) and the espeak-ng voice."""
    import shutil

    from voice.models import ModelMissingError, ModelStatus

    out = []
    try:
        from voice.tts.kokoro import kokoro_model_path

        out.append(ModelStatus("kokoro-82m int8 ONNX (neural voice)", kokoro_model_path(settings.cache_dir), True,
                               "assembled and verified"))
    except ModelMissingError as exc:
        out.append(ModelStatus("kokoro-82m int8 ONNX (neural voice)", None, False, str(exc)))
    exe = shutil.which("espeak-ng")
    out.append(ModelStatus("espeak-ng (fallback voice, English phonemes)", exe and __import__("pathlib").Path(exe),
                           bool(exe), "" if exe else "not installed: apt-get install espeak-ng (setup.sh does it)"))
    return out
