"""`hotline bench asr`: accuracy, language identification and speed per engine, side by side in one run."""
from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from voice.audio import decode_file
from voice.evaluation import error_counts
from voice.settings import VoiceSettings
from voice.types import SAMPLE_RATE

FIXTURES = Path(__file__).resolve().parent.parent / "recordings_fixtures"


@dataclass(frozen=True)
class Clip:
    path: Path
    language: str  # en | zh | mixed | other:<code>
    reference: str
    duration_s: float


def load_manifest(folder: Path = FIXTURES) -> list[Clip]:
    with (folder / "manifest.tsv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [Clip(folder / r["file"], r["language"], r["reference_text"], float(r["duration_seconds"])) for r in rows]


@dataclass
class EngineResult:
    engine: str
    vocabulary: bool
    errors: dict[str, list[int]] = field(default_factory=lambda: {"en": [0, 0], "zh": [0, 0], "mixed": [0, 0]})
    language_ok: int = 0
    language_n: int = 0
    other_ok: int = 0
    other_n: int = 0
    audio_s: float = 0.0
    compute_s: float = 0.0
    load_s: float = 0.0
    rows: list[dict] = field(default_factory=list)

    def rate(self, key: str) -> float:
        e, n = self.errors[key]
        return e / max(n, 1)

    @property
    def rtf(self) -> float:
        return self.compute_s / max(self.audio_s, 1e-9)


def run_engine(engine: str, clips: list[Clip], settings: VoiceSettings, *, vocabulary: bool | None) -> EngineResult:
    from voice.asr import build_recognizer

    t0 = time.perf_counter()
    # vocabulary None: as the settings say (by default English only); True ("on"): every served language is
    # prompted, so the effect shows per language; False: no prompt.
    update: dict = {"engine": engine}
    if vocabulary is not None:
        update.update(use_vocabulary_prompt=vocabulary, vocabulary_languages=("en", "zh"))
    rec = build_recognizer(settings.model_copy(update=update))
    rec.warm_up()
    res = EngineResult(engine=engine, vocabulary=vocabulary, load_s=time.perf_counter() - t0)
    for clip in clips:
        audio = decode_file(clip.path)
        t = time.perf_counter()
        tr = rec.transcribe(audio)
        res.compute_s += time.perf_counter() - t
        res.audio_s += len(audio) / SAMPLE_RATE
        text = tr.text if tr else ""
        label = tr.language.label if tr else "unknown"
        code = tr.language.code if tr else ""
        if clip.language.startswith("other:"):
            expected = clip.language.split(":", 1)[1]
            # Whisper base has no Cantonese token: `yue` is reported, not counted (recordings README).
            if expected != "yue":
                res.other_n += 1
                res.other_ok += label == "other"
        else:
            key = clip.language
            e, n = error_counts(clip.reference, text, "en" if key == "en" else "zh")
            res.errors[key][0] += e
            res.errors[key][1] += n
            if clip.duration_s >= 1.0:
                res.language_n += 1
                res.language_ok += label == ("en" if key == "en" else "zh")
        res.rows.append({"file": clip.path.name, "expected": clip.language, "label": label, "code": code,
                         "text": text, "seconds": round(tr.recognition_s, 3) if tr else None})
    return res


def domain_clips(settings: VoiceSettings, folder: Path) -> list[Clip]:
    """Hotline sentences (work permit, residence permit, single window, 购付汇 …) spoken by the neural voice.

    The real recordings hold none of the hotline's vocabulary, so they cannot show what the vocabulary prompt
    does for it; these can (synthesized once, then cached on disk by the synthesizer).
    """
    from voice.audio import write_wav
    from voice.tts import build_synthesizer, pcm16_of
    from voice.tts.cli import BENCH_SENTENCES

    synth = build_synthesizer(settings, voice="neural")
    clips = []
    for language, sentences in BENCH_SENTENCES.items():
        for i, text in enumerate(sentences):
            path = folder / f"domain_{language}_{i:02d}.wav"
            pcm = pcm16_of(list(synth.synthesize(text, language)))
            write_wav(path, pcm)
            clips.append(Clip(path, language, text, len(pcm) / 2 / SAMPLE_RATE))
    return clips


def run(engines: list[str], *, vocabulary: str = "settings", settings: VoiceSettings | None = None,
        as_json: bool = False, verbose: bool = False, domain: bool = False) -> int:
    import tempfile

    settings = settings or VoiceSettings()
    clips = load_manifest()
    if domain:
        tmp = Path(tempfile.mkdtemp(prefix="hotline-domain-"))
        clips = domain_clips(settings, tmp)
    modes = {"settings": [None], "on": [True], "off": [False], "both": [False, True]}[vocabulary]
    results = [run_engine(e, clips, settings, vocabulary=v) for e in engines for v in modes]
    if as_json:
        print(json.dumps([{
            "engine": r.engine, "vocabulary_prompt": r.vocabulary, "en_wer": r.rate("en"), "zh_cer": r.rate("zh"),
            "mixed_cer": r.rate("mixed"), "language_accuracy": r.language_ok / max(r.language_n, 1),
            "other_detected": f"{r.other_ok}/{r.other_n}", "rtf": r.rtf, "load_s": r.load_s, "clips": r.rows,
        } for r in results], ensure_ascii=False, indent=2))
        return 0
    source = "hotline sentences spoken by the neural voice" if domain else f"{FIXTURES.name}/"
    print(f"{len(clips)} clips from {source}, threads={settings.threads}, beam={settings.beam_size}")
    header = f"{'engine':16} {'vocab':>5} {'EN WER':>7} {'ZH CER':>7} {'mixed':>7} {'lang':>7} {'other':>6} {'RTF':>6} {'load s':>7}"
    print(header)
    print("-" * len(header))
    for r in results:
        print(f"{r.engine:16} {_vocab(r.vocabulary, settings):>5} {r.rate('en'):7.1%} {r.rate('zh'):7.1%} "
              f"{r.rate('mixed'):7.1%} {r.language_ok}/{r.language_n:<5} {r.other_ok}/{r.other_n:<4} "
              f"{r.rtf:6.3f} {r.load_s:7.1f}")
    if len({r.engine for r in results}) > 1:
        base = next(r for r in results if r.engine == "openai-whisper")
        fast = next(r for r in results if r.engine == "faster-whisper" and r.vocabulary == base.vocabulary)
        print(f"speed ratio: faster-whisper is {base.rtf / fast.rtf:.2f}x the speed of openai-whisper (same clips, same run)")
    if verbose:
        for r in results:
            for row in r.rows:
                print(f"  [{r.engine} vocab={_vocab(r.vocabulary, settings)}] {row['file']:40} {row['label']:>6}:{row['code']:<4} {row['text'][:70]}")
    return 0


def _vocab(mode: bool | None, settings: VoiceSettings) -> str:
    if mode is None:
        return "+".join(settings.vocabulary_languages) if settings.use_vocabulary_prompt else "off"
    return "on" if mode else "off"
