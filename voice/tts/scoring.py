"""Scoring synthesized speech by transcribing it back: WER (English) / CER (Mandarin).

Both sides are first put in their spoken form by the same rules the voices read with (voice.tts.textnorm):
the reference "Call 962288" was spoken "call nine six two two eight eight", and Whisper may write that back as
"962288" after "call" or as words; both normalise to the same words, so a figure counts mis-heard speech, not
spelling conventions. Then voice.evaluation (the project's ASR scoring: case, punctuation, numbers,
Traditional -> Simplified) does the rest, so TTS and ASR figures are measured the same way.
"""
from __future__ import annotations

from voice.evaluation import error_counts
from voice.language import to_simplified
from voice.settings import VoiceSettings
from voice.tts.textnorm import Language, normalize

# The judge is Whisper base decoded as its reference does it (full precision, beam 5), not as the call path runs
# it (int8, greedy, for speed). The int8 kernels differ by CPU: the same Kokoro audio scored Mandarin CER 12.5%
# with CTranslate2's AVX-512 kernels and 17.2% with its AVX2 ones (it picks AVX2 on AMD CPUs), so a voice's
# figure depended on the machine. In float32 both give the same transcript: ZH 13.0%, EN 1.4% (beam 5).
JUDGE = {"compute_type": "float32", "beam_size": 5}


def judge_settings(settings: VoiceSettings) -> VoiceSettings:
    """The recognizer settings that score synthesized speech: `settings` with the reference decoding."""
    return settings.model_copy(update=JUDGE)


def spoken_form(text: str, language: Language) -> str:
    if language == "zh":
        text = to_simplified(text)
    # 幺 is how 1 is *said* in phone numbers; written down it is 一 (Whisper writes either): score them alike.
    return normalize(text, language).replace("幺", "一")


def errors(reference: str, hypothesis: str, language: Language) -> tuple[int, int]:
    """(edit errors, reference length): words for English, characters for Mandarin."""
    return error_counts(spoken_form(reference, language), spoken_form(hypothesis or "", language), language)
