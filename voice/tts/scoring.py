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
from voice.tts.textnorm import Language, normalize


def spoken_form(text: str, language: Language) -> str:
    if language == "zh":
        text = to_simplified(text)
    # 幺 is how 1 is *said* in phone numbers; written down it is 一 (Whisper writes either): score them alike.
    return normalize(text, language).replace("幺", "一")


def errors(reference: str, hypothesis: str, language: Language) -> tuple[int, int]:
    """(edit errors, reference length): words for English, characters for Mandarin."""
    return error_counts(spoken_form(reference, language), spoken_form(hypothesis or "", language), language)
