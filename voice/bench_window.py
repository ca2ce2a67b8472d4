"""`hotline bench window`: the recognizer's final against the plain engine call, encoder window by window.

One model, one run, the same real recordings for every row:
- plain: faster-whisper base int8 `WhisperModel.transcribe(audio, beam_size=5)`, language detected (the reference
  a final must be at least as accurate as);
- the project's recognizer with Whisper's padded 30 s window and with the utterance window (the utterance plus a
  margin, VoiceSettings.encoder_window), each with the final's beam and the partials' beam.

Per row: English WER, Mandarin CER (mixed speech apart), language identification, and where the recognition time
goes (encoder, then language detection + decoding) per clip. Speed figures from a loaded machine are only
comparable within one run. By default on the development part (the window and its margins are settings chosen by
looking at clips; `--part test` checks them on the held-out clips). Clips whose reference is another recognizer's
output are left out of the error rates, as in `hotline bench asr`.
"""
from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from voice.audio import decode_file
from voice.bench import FIXTURES, Clip, load_manifest
from voice.evaluation import error_counts
from voice.language import to_simplified
from voice.settings import VoiceSettings


@dataclass
class Row:
    name: str
    errors: dict[str, list[int]] = field(default_factory=lambda: {"en": [0, 0], "zh": [0, 0], "mixed": [0, 0]})
    language_ok: int = 0
    language_n: int = 0
    encoder_s: list[float] = field(default_factory=list)
    total_s: list[float] = field(default_factory=list)
    texts: list[tuple[str, str]] = field(default_factory=list)

    def rate(self, key: str) -> float | None:
        e, n = self.errors[key]
        return e / n if n else None

    def add(self, clip: Clip, text: str, label: str, total_s: float, encoder_s: float | None) -> None:
        key = clip.language
        if clip.in_figures:
            e, n = error_counts(clip.reference, text, "en" if key == "en" else "zh")
            self.errors[key][0] += e
            self.errors[key][1] += n
        if clip.duration_s >= 1.0:
            self.language_n += 1
            self.language_ok += label == ("en" if key == "en" else "zh")
        self.total_s.append(total_s)
        if encoder_s is not None:
            self.encoder_s.append(encoder_s)
        self.texts.append((clip.path.name, text))


def plain_call(model, audio) -> tuple[str, str]:
    """The plain engine call: what a user of faster-whisper gets without the project's recognizer."""
    segments, info = model.transcribe(audio, beam_size=5)
    text = "".join(s.text for s in segments).strip()
    return (to_simplified(text) if info.language == "zh" else text), info.language


def run(*, folder: Path = FIXTURES, settings: VoiceSettings | None = None, as_json: bool = False,
        verbose: bool = False, limit_s: float | None = None, part: str = "dev") -> int:
    from voice.asr import FasterWhisperEngine, Recognizer

    settings = (settings or VoiceSettings()).model_copy(update={"engine": "faster-whisper"})
    clips = [c for c in load_manifest(folder) if c.language in ("en", "zh", "mixed") and part in ("both", c.split)]
    if limit_s is not None:
        clips = [c for c in clips if c.duration_s <= limit_s]
    engine = FasterWhisperEngine(settings)
    variants = []
    for window in ("full", "utterance"):
        for beam, role in ((settings.beam_size, "final"), (settings.partial_beam_size, "partial")):
            s = settings.model_copy(update={"encoder_window": window, "beam_size": beam})
            variants.append((f"{role} {window} beam {beam}", Recognizer(engine=engine, settings=s)))
    variants[0][1].warm_up()
    rows = [Row("plain call beam 5")] + [Row(name) for name, _ in variants]
    for clip in clips:
        audio = decode_file(clip.path)
        t0 = time.perf_counter()
        text, code = plain_call(engine._model, audio)
        rows[0].add(clip, text, code, time.perf_counter() - t0, None)
        for row, (_, rec) in zip(rows[1:], variants):
            t = rec.transcribe(audio, gate=False)
            row.add(clip, t.text if t else "", t.language.label if t else "unknown",
                    t.recognition_s if t else 0.0, t.encoder_s if t else None)
    audio_s = sum(c.duration_s for c in clips)
    if as_json:
        print(json.dumps([{"row": r.name, "en_wer": r.rate("en"), "zh_cer": r.rate("zh"), "mixed_cer": r.rate("mixed"),
                           "language": f"{r.language_ok}/{r.language_n}",
                           "encoder_ms_median": _ms(r.encoder_s), "recognition_ms_median": _ms(r.total_s),
                           "rtf": sum(r.total_s) / audio_s, "texts": r.texts} for r in rows],
                         ensure_ascii=False, indent=2))
        return 0
    left_out = sum(not c.in_figures for c in clips)
    print(f"{len(clips)} clips ({audio_s:.0f} s, part {part}) from {folder}"
          + (f" ({left_out} with another model's output as reference: timed, not scored)" if left_out else "")
          + f", faster-whisper {engine.compute_type}, "
          f"threads={settings.threads}, margin {settings.encoder_margin_s} s, min window {settings.encoder_min_s} s")
    header = (f"{'recognizer':28} {'EN WER':>7} {'ZH CER':>7} {'mixed':>7} {'lang':>7} "
              f"{'enc ms':>7} {'total ms':>9} {'RTF':>6}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r.name:28} {_pct(r.rate('en')):>7} {_pct(r.rate('zh')):>7} {_pct(r.rate('mixed')):>7} "
              f"{r.language_ok:>3}/{r.language_n:<3} {_ms(r.encoder_s):>7} {_ms(r.total_s):>9} "
              f"{sum(r.total_s) / audio_s:6.3f}")
    print("enc ms / total ms: median per clip; plain call: the whole transcribe() (encoder not separable)")
    if verbose:
        for r in rows:
            for name, text in r.texts:
                print(f"  [{r.name}] {name:40} {text[:80]}")
    return 0


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.0f}" if values else "-"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


if __name__ == "__main__":  # pragma: no cover - `hotline bench window` is the entry point
    raise SystemExit(run())
