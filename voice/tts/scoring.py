"""Scoring synthesized speech by transcribing it back: WER (English) / CER (Mandarin).

Both sides go through the judge's own normaliser (voice.evaluation: case, width, punctuation, numbers one way,
Traditional -> Simplified), never through the synthesizer's reading rules (voice.tts.textnorm). With the voice's own
rules on both sides, a wrong reading rule normalised the reference into the very words the voice then said, so the
error could not show. The price of independence: where the voice reads correctly but Whisper writes the words in a
form the judge does not fold (a date "2026-11-20" heard back as "November 20th, 2026"), that counts as an error too;
`hotline bench tts -v` lists every sentence with its errors so the two can be told apart.
"""
from __future__ import annotations

from voice.evaluation import error_counts
from voice.settings import VoiceSettings
from voice.tts.textnorm import Language

# The judge is Whisper base decoded as its reference does it (full precision, beam 5), not as the call path runs
# it (int8, greedy, for speed). The int8 kernels differ by CPU: the same Kokoro audio scored Mandarin CER 12.5%
# with CTranslate2's AVX-512 kernels and 17.2% with its AVX2 ones (it picks AVX2 on AMD CPUs), so a voice's
# figure depended on the machine. In float32 both give the same transcript.
JUDGE = {"compute_type": "float32", "beam_size": 5, "encoder_window": "full"}  # the reference decoding, whatever the call path does


def judge_settings(settings: VoiceSettings) -> VoiceSettings:
    """The recognizer settings that score synthesized speech: `settings` with the reference decoding."""
    return settings.model_copy(update=JUDGE)


def errors(reference: str, hypothesis: str, language: Language) -> tuple[int, int]:
    """(edit errors, reference length): words for English, characters for Mandarin."""
    return error_counts(reference, hypothesis or "", language)
