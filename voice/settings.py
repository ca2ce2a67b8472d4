"""Settings of the voice layer: validated once, passed in (never a module-level singleton)."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


def default_cache_dir() -> Path:
    # A folder the project owns, beside the code: assembled model files live here (configurable).
    return Path(__file__).resolve().parent.parent / "var" / "models"


class VoiceSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # --- recognition ---
    engine: Literal["faster-whisper", "openai-whisper"] = "faster-whisper"  # faster: see `hotline bench asr`
    device: Literal["auto", "cpu", "cuda"] = "auto"
    cache_dir: Path = Field(default_factory=default_cache_dir)
    threads: int = Field(default=2, ge=1, le=64)
    # Finals (and files) are decoded with beam search, as the plain engine call does; partials, a preview recomputed
    # every partial_interval_s while the caller speaks, stay greedy (`hotline bench window` measures both).
    beam_size: int = Field(default=5, ge=1, le=10)
    partial_beam_size: int = Field(default=1, ge=1, le=10)
    # What the encoder sees (faster-whisper only): "utterance" = the utterance plus encoder_margin_s of silence, at
    # least encoder_min_s; "full" = Whisper's padded 30 s window. Figures in voice/asr.py and `hotline bench window`.
    encoder_window: Literal["utterance", "full"] = "utterance"
    encoder_margin_s: float = Field(default=1.0, ge=0, le=30)
    encoder_min_s: float = Field(default=8.0, ge=0, le=30)
    # CTranslate2 precision; auto = int8 on the CPU (fastest here), float16 on CUDA.
    compute_type: Literal["auto", "int8", "int8_float32", "float32", "float16", "int8_float16"] = "auto"
    use_vocabulary_prompt: bool = True  # hotline terms in the initial prompt (see bench asr --vocabulary)
    # Measured with `hotline bench asr --vocabulary both` (faster-whisper, beam 1). Real recordings: the English
    # prompt lowers WER 5.0% -> 3.4%; the Chinese prompt raises CER 12.1% -> 15.9% (a 1 s clip is then judged
    # silence). Hotline sentences (`--domain`): EN 7.8% -> 5.0%, ZH 13.8% -> 13.3% ("单一窗口", "居留许可" come
    # out right only with the prompt). The Chinese gain on terms is small and routing already matches homophones
    # by pinyin, while the loss on ordinary speech is large, so by default only English utterances are prompted.
    vocabulary_languages: tuple[str, ...] = ("en",)
    no_speech_threshold: float = Field(default=0.6, ge=0, le=1)
    logprob_threshold: float = -1.0

    # --- VAD and endpointing (seconds) ---
    # `hotline bench vad` (test part): on 8 kHz telephone audio Silero and webrtcvad classify frames about equally
    # well (86.9% vs 87.8%) but Silero raises fewer false alarms in line noise (4.8% vs 6.8%), which is what feeds
    # Whisper hallucinations and false barge-ins; so Silero stays the default.
    vad: Literal["silero", "webrtc"] = "silero"
    vad_threshold: float = Field(default=0.5, gt=0, lt=1)
    min_speech_s: float = Field(default=0.25, ge=0)  # shorter bursts are noise (clicks, coughs)
    end_silence_s: float = Field(default=0.6, gt=0)  # silence that ends an utterance
    # Adaptive end silence (voice.streaming.ending_kind on the speculative transcript): a question of 4 words or
    # more that has plainly ended ("...permit?", "...吗") ends after end_silence_complete_s, a trailing "and", "um",
    # "那个" or comma waits end_silence_hesitation_s. It takes effect once the speculative recognition is done, so
    # either only helps if that recognition finishes before end_silence_s.
    adaptive_end_silence: bool = True
    end_silence_complete_s: float = Field(default=0.35, gt=0)
    end_silence_hesitation_s: float = Field(default=1.0, gt=0)
    # Kept before/after the speech. The early speculative recognition (below) needs it at 0.15 s or less.
    speech_pad_s: float = Field(default=0.2, ge=0)
    max_utterance_s: float = Field(default=25.0, gt=1, le=30)  # Whisper's window is 30 s
    partial_interval_s: float = Field(default=0.8, gt=0)  # how often partial hypotheses are computed
    # After this much silence the utterance is recognised speculatively; if the caller stays silent until
    # end_silence_s, the final reuses that result, so recognition hides behind the end-of-utterance wait.
    # Must be ≥ speech_pad_s (the final's audio includes that much trailing padding). None = off.
    prefinal_silence_s: float | None = Field(default=0.25, gt=0)
    # The same recognition may start earlier while the recognizer has nothing else to do (one call, a quiet
    # process): the final is then ready sooner, and a complete question ends after end_silence_complete_s instead
    # of waiting for it. Under load the early one is skipped (more of the short pauses inside an utterance reach
    # it, and each wasted recognition delays other calls' finals) and the one at prefinal_silence_s runs as before.
    # Between speech_pad_s and prefinal_silence_s. None = off, the default: on with 0.15 s (and speech_pad_s 0.15 s)
    # cached answers came 0.18 s sooner at 1 call on an Intel Xeon (docs/latency.md), but the smaller padding
    # changed a recognized word in two real-model browser tests (tests/test_people_browser.py,
    # tests/test_knowledge_browser.py), so it is not the default until that is understood.
    early_prefinal_silence_s: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _prefinal_after_padding(self) -> "VoiceSettings":
        if self.prefinal_silence_s is not None and not (
            self.speech_pad_s <= self.prefinal_silence_s < self.end_silence_s
        ):
            raise ValueError("prefinal_silence_s must lie between speech_pad_s and end_silence_s")
        if self.early_prefinal_silence_s is not None and not (
            self.prefinal_silence_s is not None and self.speech_pad_s <= self.early_prefinal_silence_s
            < self.prefinal_silence_s
        ):
            raise ValueError("early_prefinal_silence_s must lie between speech_pad_s and prefinal_silence_s "
                             "(and needs prefinal_silence_s)")
        if not self.speech_pad_s <= self.end_silence_complete_s <= self.end_silence_s <= self.end_silence_hesitation_s:
            raise ValueError("end silences must satisfy speech_pad_s <= end_silence_complete_s <= end_silence_s "
                             "<= end_silence_hesitation_s")
        return self

    # --- language ---
    language_switch_min_s: float = Field(default=1.5, ge=0)  # shorter utterances cannot flip the call's language
    other_language_min_prob: float = Field(default=0.5, ge=0, le=1)
    # Once the caller has spoken a served language in the call, an utterance Whisper's audio alone calls another
    # language below this probability is decoded again in the call's language (voice.language.heard_in_call_language).
    # Development clips of other languages score 0.97 (ru) and 1.0 (ja); accented English called Portuguese scored
    # 0.53-0.72.
    other_language_in_call_min_prob: float = Field(default=0.9, ge=0, le=1)

    # --- synthesis ---
    voice: Literal["neural", "espeak"] = "neural"
    tts_speed: float = Field(default=1.0, gt=0.5, lt=2.0)
    tts_cache_size: int = Field(default=512, ge=0)
    # A long first sentence is spoken as its opening clause, then the rest (voice/tts/lead.py): an uncached answer
    # starts sooner. The round trip stays within its targets with it (tests/test_voice_tts_kokoro.py).
    tts_lead_chunk: bool = True
    tts_disk_cache: bool = True  # keep synthesized prompts and answers in cache_dir/tts across restarts
