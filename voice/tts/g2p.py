"""Phonemes for Kokoro: espeak-ng IPA for English (mapped to Kokoro's symbols), misaki's Chinese G2P for Mandarin.

Kokoro-82M v1.0 was trained on misaki's phoneme set. For English, misaki itself falls back on espeak-ng and maps its
IPA with a fixed table (misaki/espeak.py, `EspeakFallback.E2M`, American English, version None = v1.0); the same
table is applied here to espeak-ng's own output, so we need neither phonemizer nor the spaCy stack misaki's English
G2P pulls in. For Mandarin, `misaki.zh.ZHG2P()` with the default (None) version is the legacy pinyin -> IPA front
end that v1.0 was trained with (version "1.1" belongs to the later Kokoro-82M-v1.1-zh model).
"""
from __future__ import annotations

import functools
import re
import shutil
import subprocess
import threading

from voice.tts.textnorm import Language, language_runs

ESPEAK = "espeak-ng"

# misaki/espeak.py EspeakFallback.E2M (longest first), then its American-English post-processing.
_E2M = sorted({
    "ʔˌn\u0329": "ʔn", "ʔn\u0329": "ʔn",
    "a^ɪ": "I", "a^ʊ": "W",
    "d^ʒ": "ʤ",
    "e^ɪ": "A", "e": "A",
    "t^ʃ": "ʧ",
    "ɔ^ɪ": "Y",
    "ə^l": "ᵊl",
    "ʲo": "jo", "ʲə": "jə", "ʲ": "",
    "ɚ": "əɹ",
    "r": "ɹ",
    "x": "k", "ç": "k",
    "ɐ": "ə",
    "ɬ": "l",
    "\u0303": "",
}.items(), key=lambda kv: -len(kv[0]))

_CLAUSE_RE = re.compile(r"([^,.;:!?—…]+)([,.;:!?—…]*)")


class PhonemizerError(RuntimeError):
    """espeak-ng is missing or failed; the message says what to install."""


def espeak_to_kokoro(ipa: str) -> str:
    """Map espeak-ng IPA (with '^' ties) to Kokoro v1.0's English symbols, as misaki's espeak fallback does."""
    ps = ipa.strip()
    for old, new in _E2M:
        ps = ps.replace(old, new)
    ps = re.sub(r"(\S)\u0329", r"ᵊ\1", ps).replace(chr(809), "")
    ps = ps.replace("o^ʊ", "O").replace("ɜːɹ", "ɜɹ").replace("ɜː", "ɜɹ").replace("ɪə", "iə").replace("ː", "")
    ps = ps.replace("o", "ɔ")  # espeak < 1.52 writes 'o' where Kokoro expects 'ɔ'
    ps = ps.replace("ɾ", "T").replace("ʔ", "t")  # version None (v1.0): flap and glottal stop as misaki writes them
    return ps.replace("^", "")


class EnglishG2P:
    """English text -> Kokoro phonemes through the espeak-ng command line.

    A process per clause (about 8 ms) rather than libespeak-ng through ctypes: the library keeps one global voice
    and state per process, which pyttsx3's espeak driver (the espeak voice) also holds, and it is not thread-safe.
    A child process shares nothing, so any number of synthesis threads can phonemize at once.
    """

    def __init__(self, *, voice: str = "en-us", executable: str | None = None) -> None:
        self.voice = voice
        self.executable = executable or shutil.which(ESPEAK)
        if self.executable is None:
            raise PhonemizerError("espeak-ng is not installed: apt-get install espeak-ng (it is the English phonemizer)")
        # Hotline text repeats itself (prompts, answers, clauses re-phonemized when a long sentence is split):
        # remember clause phonemes rather than start espeak-ng again. lru_cache is thread-safe.
        self._clause = functools.lru_cache(maxsize=4096)(self._phonemize_clause)

    def ipa(self, text: str) -> str:
        try:
            done = subprocess.run(
                [self.executable, "-q", "--ipa", "--tie=^", "-v", self.voice, "--stdin"],
                input=text.encode("utf-8"), capture_output=True, timeout=10, check=True,
            )
        except (subprocess.SubprocessError, OSError) as exc:
            raise PhonemizerError(f"espeak-ng failed ({type(exc).__name__})") from None
        return " ".join(line.strip() for line in done.stdout.decode("utf-8", "replace").splitlines() if line.strip())

    def _phonemize_clause(self, words: str) -> str:
        return espeak_to_kokoro(self.ipa(words))

    def __call__(self, text: str) -> str:
        # espeak drops punctuation; Kokoro uses it for prosody, so phonemize clause by clause and put it back.
        out = []
        for words, punct in _CLAUSE_RE.findall(text):
            if words.strip():
                ps = self._clause(words.strip())
                out.append(ps + punct[:1] if punct else ps)
            elif punct and out:
                out[-1] += punct[:1]
        return " ".join(out)


class MandarinG2P:
    """Chinese text (already normalised: no digits) -> Kokoro phonemes with misaki's legacy ZHG2P."""

    def __init__(self) -> None:
        from misaki.zh import ZHG2P

        self._g2p = ZHG2P()  # version None: the front end Kokoro v1.0 was trained with
        self._lock = threading.Lock()  # jieba builds its dictionary lazily on first use; guard that one moment

    def __call__(self, text: str) -> str:
        with self._lock:
            ps, _ = self._g2p(text)
        return ps.strip()


# English voiceless stops are aspirated at the start of a word and of a stressed syllable ("talent", "card",
# "per'mit"), not after /s/ ("single", "station"). espeak-ng and misaki write them plain (p t k), and in English
# context Kokoro aspirates them itself; inside Chinese it reads them as Mandarin's plain stops, which are pinyin b d g
# (aspirated ones are written pʰ tʰ kʰ there). Measured on code-switched sentences (not the test's) judged by
# Whisper: "Talent Card" was heard as "Dallant Guard" 4 times out of 4 and "Work Permit" as "workburment"; marking
# the aspiration Mandarin's way fixed both.
_VOWEL_OR_LIQUID = "AIOWYaæɑɒɔəɛɜɪʊʌiuᵊᵻɹlwj"
_ASPIRATED = re.compile(rf"(?<![s])(?:(?<=^)|(?<=\s))([ptk])(?=[ˈˌ]?[{_VOWEL_OR_LIQUID}])"
                        rf"|(?<![s])([ptk])(?=[ɹlwj]?[ˈˌ])")


def aspirate(phonemes: str) -> str:
    """English phonemes to be spoken inside Chinese: mark the aspirated stops with ʰ (see _ASPIRATED)."""
    return _ASPIRATED.sub(lambda m: (m[1] or m[2]) + "ʰ", phonemes)


class Phonemizer:
    """Mixed text -> Kokoro phonemes: each language run goes to its own G2P, then the runs are joined.

    English runs inside Chinese text get their aspiration written out (`aspirate`): there the model reads plain
    p t k the Mandarin way.
    """

    def __init__(self, *, english: EnglishG2P | None = None, mandarin: MandarinG2P | None = None) -> None:
        self.english = english or EnglishG2P()
        self.mandarin = mandarin or MandarinG2P()

    def __call__(self, normalized: str, language: Language) -> str:
        parts = []
        for lang, run in language_runs(normalized, language):
            if lang == "zh":
                parts.append(self.mandarin(run))
            else:
                ps = self.english(run)
                parts.append(aspirate(ps) if language == "zh" else ps)
        return " ".join(p for p in parts if p)
