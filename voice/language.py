"""Language identification: Whisper's audio verdict, the transcript's script and langdetect, and a per-call language.

Pure functions and one small state machine; nothing here runs a model. The hotline serves English and Mandarin;
anything else is reported as "other" with its own code and never forced into a served language.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import zhconv

from voice.types import LanguageVerdict

SERVED = ("en", "zh")
UNKNOWN = LanguageVerdict(label="unknown", code="", probability=0.0, source="none")

# Han characters (CJK Unified Ideographs, Extension A, Compatibility Ideographs) as the body of a regex character
# class: the one definition of "a Chinese character" for voice/ and server/ (routing/retrieval_text.py keeps its
# own, since routing does not depend on voice).
HAN = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_HAN = re.compile(f"[{HAN}]")
_KANA = re.compile(r"[\u3040-\u30ff]")
_HANGUL = re.compile(r"[\uac00-\ud7af\u1100-\u11ff]")
_CYRILLIC = re.compile(r"[\u0400-\u04ff]")
_LATIN_WORD = re.compile(r"[A-Za-z][A-Za-z'\-]+")
_LATIN = re.compile(r"[A-Za-z]")

# Words that carry no language evidence worth switching a call for (they are said in both languages).
AMBIGUOUS = {
    "ok", "okay", "yes", "no", "yeah", "hello", "hi", "bye", "thanks", "thank you", "sorry", "hmm", "uh", "um",
    "好", "好的", "嗯", "对", "是", "是的", "谢谢", "喂", "行", "可以", "拜拜", "哦", "啊",
}


def to_simplified(text: str) -> str:
    """Chinese output is always Simplified (Whisper often writes Traditional for Mandarin)."""
    return zhconv.convert(text, "zh-cn")


def script_language(text: str) -> str | None:
    """The language a writing system gives away, where it does: kana -> ja, hangul -> ko, Cyrillic -> ru."""
    if _KANA.search(text):
        return "ja"
    if _HANGUL.search(text):
        return "ko"
    if _CYRILLIC.search(text):
        return "ru"
    return None


def han_ratio(text: str) -> float:
    han = len(_HAN.findall(text))
    latin = len(_LATIN.findall(text))
    return han / (han + latin / 4) if han or latin else 0.0  # ~4 Latin letters weigh one Han character


def is_mixed(text: str) -> bool:
    """Mandarin with English words in it (the caller stays a Mandarin caller)."""
    return bool(_HAN.search(text)) and bool(_LATIN_WORD.search(text))


def is_ambiguous(text: str) -> bool:
    t = re.sub(r"[\s\.,!?。，！？、~…]+", " ", text.lower()).strip()
    return not t or t in AMBIGUOUS or len(t.split()) == 1 and len(t) <= 3


def text_language(text: str) -> tuple[str, float] | None:
    """langdetect on the transcript (deterministic seed). None when the text is too short to say anything."""
    if len(_LATIN.findall(text)) < 12 and not _HAN.search(text):
        return None
    from langdetect import DetectorFactory, detect_langs
    from langdetect.lang_detect_exception import LangDetectException

    DetectorFactory.seed = 0  # langdetect is random by default; the same text must give the same answer
    try:
        best = detect_langs(text)[0]
    except LangDetectException:
        return None
    code = "zh" if best.lang.startswith("zh") else best.lang
    return code, float(best.prob)


def audio_verdict(probs: dict[str, float], *, other_min_prob: float = 0.5) -> LanguageVerdict:
    """Whisper's language probabilities restricted to what the hotline serves, plus a clear 'other' verdict."""
    if not probs:
        return UNKNOWN
    top, p_top = max(probs.items(), key=lambda kv: kv[1])
    if top in SERVED:
        return LanguageVerdict(label=top, code=top, probability=p_top, source="audio")
    served_mass = sum(probs.get(c, 0.0) for c in SERVED)
    if p_top >= other_min_prob or served_mass < 0.2:
        return LanguageVerdict(label="other", code=top, probability=p_top, source="audio")
    # Not sure it is another language: fall back to the likelier served language, with its own probability.
    best = max(SERVED, key=lambda c: probs.get(c, 0.0))
    return LanguageVerdict(label=best, code=best, probability=probs.get(best, 0.0), source="audio")


def combine(audio: LanguageVerdict, text: str) -> LanguageVerdict:
    """Check the audio verdict against the transcript: its script, then langdetect."""
    if audio.label in ("unknown",) or not text.strip():
        return audio
    script = script_language(text)
    if script is not None:
        return LanguageVerdict(label="other", code=script, probability=max(audio.probability, 0.9), source="script")
    if audio.label == "zh":
        if _HAN.search(text):
            return LanguageVerdict(label="zh", code="zh", probability=audio.probability, source="audio+text",
                                   mixed=is_mixed(text))
        return audio
    detected = text_language(text)
    if audio.label == "en" and detected is not None:
        code, p = detected
        if code == "en":
            return LanguageVerdict(label="en", code="en", probability=max(audio.probability, p), source="audio+text")
        # Whisper base can call French or Spanish "English" when unsure; trust the text only when both agree on doubt.
        if p >= 0.95 and audio.probability < 0.7 and len(text.split()) >= 4:
            return LanguageVerdict(label="other", code=code, probability=p, source="text")
    return audio


def heard_in_call_language(utterance: LanguageVerdict, call: LanguageVerdict, *, other_min_prob: float) -> bool:
    """True when an utterance Whisper heard as another language is better decoded in the call's own language.

    Whisper base identifies accented speech poorly: Mandarin speakers reading English are heard as Portuguese with
    probability 0.5-0.7 (`hotline bench call`, speechocean762), and an "other" verdict sends the caller to the
    agent queue with the language-not-served message. A caller who has already spoken English or Mandarin in this
    call is not taken for a speaker of another language on the audio's word alone unless it is sure; a script or
    text verdict (kana, Cyrillic, a transcript langdetect is sure of) is evidence enough and is kept. A call
    language that came only from a hint has not been heard yet, so it overrides nothing.
    """
    return (utterance.label == "other" and utterance.source == "audio" and utterance.probability < other_min_prob
            and call.served and call.source != "hint")


@dataclass
class CallLanguage:
    """The call's language: set by the first real utterance, not flipped by a short or ambiguous one ("OK", "好的")."""

    switch_min_s: float = 1.5
    switch_min_prob: float = 0.7
    current: LanguageVerdict = field(default=UNKNOWN)

    @classmethod
    def from_hint(cls, hint: str | None, *, switch_min_s: float = 1.5) -> "CallLanguage":
        call = cls(switch_min_s=switch_min_s)
        if hint in SERVED:
            call.current = LanguageVerdict(label=hint, code=hint, probability=1.0, source="hint")
        return call

    def observe(self, utterance: LanguageVerdict, *, duration_s: float, text: str) -> LanguageVerdict:
        """Fold one utterance's verdict into the call's language and return the call's language now."""
        if utterance.label == "unknown":
            return self.current
        if self.current.label == "unknown" or self.current.source == "hint" and utterance.label == self.current.label:
            self.current = utterance
            return self.current
        if utterance.label == self.current.label:
            # Same language again: keep the stronger evidence, but remember mixing.
            if utterance.probability >= self.current.probability or utterance.mixed != self.current.mixed:
                self.current = utterance
            return self.current
        strong = duration_s >= self.switch_min_s and utterance.probability >= self.switch_min_prob
        if strong and not is_ambiguous(text):
            self.current = utterance
        return self.current
