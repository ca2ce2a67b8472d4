"""`hotline bench asr`: recognition accuracy, language identification and speed, beside a baseline, in one run.

What it measures, on the real recordings of recordings_fixtures/:
- the project's recognizer (voice.asr.build_recognizer(...).transcribe: VAD gate, vocabulary prompt as configured,
  language rules), called through its public interface so that it measures whatever the recognizer does today;
- the baseline: the plain engine call, faster-whisper's own `WhisperModel.transcribe` on the same weights (int8,
  beam 5, language detected, no vocabulary prompt, no VAD gate), so every figure has its "without the project"
  beside it;
- each on the recordings as they are (wideband) and on telephone-band copies made here (8 kHz μ-law and back,
  voice.audio.through_telephone), the audio a carrier delivers.

Figures are reported on the test part of the set (clips that no tuning has looked at), the development part
beside it; each error rate carries a 95% confidence interval from a bootstrap over clips with a fixed seed.
References that are another recognizer's output (`reference_source` = model) are kept out of the figures and
reported on their own line.
"""
from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from voice.audio import decode_file, through_telephone
from voice.evaluation import bootstrap_ci, error_counts, pooled_rate
from voice.settings import VoiceSettings
from voice.types import SAMPLE_RATE

FIXTURES = Path(__file__).resolve().parent.parent / "recordings_fixtures"
SCORED = ("en", "zh", "mixed")  # languages scored by WER/CER; "other:<code>" clips only test identification
CHANNELS = ("wideband", "telephone")
BOOTSTRAP = {"resamples": 2000, "seed": 0}


@dataclass(frozen=True)
class Clip:
    path: Path
    language: str  # en | zh | mixed | other:<code>
    reference: str
    duration_s: float
    split: str = "test"  # dev: tuning may look at it; test: held out (recordings_fixtures/README.md)
    reference_source: str = "dataset"  # dataset | human | model (another recognizer's output) | synthesized

    @property
    def in_figures(self) -> bool:
        """Scored for WER/CER: a served language and a reference that no model wrote."""
        return self.language in SCORED and self.reference_source != "model"


def load_manifest(folder: Path = FIXTURES) -> list[Clip]:
    with (folder / "manifest.tsv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [Clip(folder / r["file"], r["language"], r["reference_text"], float(r["duration_seconds"]),
                 r.get("split") or "test", r.get("reference_source") or "dataset") for r in rows]


class Heard(NamedTuple):
    text: str
    label: str  # en | zh | other | unknown (nothing heard)
    code: str


@dataclass
class System:
    """One way of turning audio into text: the project's recognizer or the plain engine call."""

    name: str
    hear: Callable[[np.ndarray], Heard]
    load_s: float
    engine: str
    baseline: bool = False
    vocabulary: bool | None = None


def hotline_system(engine: str, settings: VoiceSettings, *, vocabulary: bool | None) -> System:
    from voice.asr import build_recognizer

    t0 = time.perf_counter()
    # vocabulary None: as the settings say (by default English only); True ("on"): every served language is
    # prompted, so the effect shows per language; False: no prompt.
    update: dict = {"engine": engine}
    if vocabulary is not None:
        update.update(use_vocabulary_prompt=vocabulary, vocabulary_languages=("en", "zh"))
    tuned = settings.model_copy(update=update)
    rec = build_recognizer(tuned)
    rec.warm_up()

    def hear(audio: np.ndarray) -> Heard:
        tr = rec.transcribe(audio)
        return Heard(tr.text, tr.language.label, tr.language.code or "") if tr else Heard("", "unknown", "")

    return System(f"hotline {engine} vocab={_vocab(vocabulary, tuned)}", hear, time.perf_counter() - t0, engine,
                  vocabulary=vocabulary)


def plain_system(settings: VoiceSettings) -> System:
    """The baseline: faster-whisper as its README calls it, on the same Whisper base weights."""
    from faster_whisper import WhisperModel

    from voice.models import whisper_ct2_dir

    t0 = time.perf_counter()
    model = WhisperModel(str(whisper_ct2_dir(settings.cache_dir)), device="auto", compute_type="int8",
                         cpu_threads=settings.threads)

    def hear(audio: np.ndarray) -> Heard:
        segments, info = model.transcribe(audio, beam_size=5, language=None, vad_filter=False)
        text = "".join(s.text for s in segments).strip()
        code = info.language or ""
        return Heard(text, code if code in ("en", "zh") else "other", code)

    hear(np.zeros(SAMPLE_RATE, np.float32) + 0.01 * np.random.default_rng(0).standard_normal(SAMPLE_RATE, np.float32))
    return System("plain faster-whisper int8 beam 5", hear, time.perf_counter() - t0, "faster-whisper", baseline=True)


@dataclass
class Outcome:
    clip: Clip
    channel: str
    heard: Heard
    errors: int
    length: int
    seconds: float


@dataclass
class Run:
    system: System
    channel: str
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def rtf(self) -> float:
        return sum(o.seconds for o in self.outcomes) / max(sum(o.clip.duration_s for o in self.outcomes), 1e-9)

    def part(self, split: str) -> list[Outcome]:
        return [o for o in self.outcomes if o.clip.split == split]


def hear_all(system: System, clips: list[Clip], audio: dict[tuple[Path, str], np.ndarray], channel: str) -> Run:
    run = Run(system, channel)
    for clip in clips:
        t = time.perf_counter()
        heard = system.hear(audio[clip.path, channel])
        spent = time.perf_counter() - t
        e, n = error_counts(clip.reference, heard.text, "en" if clip.language == "en" else "zh") \
            if clip.language in SCORED else (0, 0)
        run.outcomes.append(Outcome(clip, channel, heard, e, n, spent))
    return run


def summarize(outcomes: list[Outcome]) -> dict:
    """The figures of one system on one channel and one part of the set."""
    out: dict = {"clips": len(outcomes)}
    for language in SCORED:
        counts = [(o.errors, o.length) for o in outcomes if o.clip.language == language and o.clip.in_figures]
        out[language] = {"rate": pooled_rate(counts) if counts else None, "n": len(counts),
                         "ci95": bootstrap_ci(counts, **BOOTSTRAP) if len(counts) > 1 else None}
    model_refs = [(o.errors, o.length) for o in outcomes if o.clip.language in SCORED and not o.clip.in_figures]
    out["model_reference"] = {"rate": pooled_rate(model_refs) if model_refs else None, "n": len(model_refs)}
    served = [o for o in outcomes if o.clip.language in SCORED and o.clip.duration_s >= 1.0]
    out["language_ok"] = sum(o.heard.label == ("en" if o.clip.language == "en" else "zh") for o in served)
    out["language_n"] = len(served)
    # Whisper base has no Cantonese token: `yue` is reported per clip, not counted (recordings README).
    other = [o for o in outcomes if o.clip.language.startswith("other:") and o.clip.language != "other:yue"]
    out["other_ok"] = sum(o.heard.label == "other" for o in other)
    out["other_n"] = len(other)
    return out


def run(engines: list[str], *, vocabulary: str = "settings", settings: VoiceSettings | None = None,
        as_json: bool = False, verbose: bool = False, domain: bool = False, parts: tuple[str, ...] = ("test", "dev"),
        baseline: bool = True) -> int:
    import tempfile

    settings = settings or VoiceSettings()
    if domain:
        clips = domain_clips(settings, Path(tempfile.mkdtemp(prefix="hotline-domain-")))
        parts = ("domain",)
    else:
        clips = [c for c in load_manifest() if c.split in parts]
    audio: dict[tuple[Path, str], np.ndarray] = {}
    for clip in clips:
        wide = decode_file(clip.path)
        audio[clip.path, "wideband"], audio[clip.path, "telephone"] = wide, through_telephone(wide)
    modes = {"settings": [None], "on": [True], "off": [False], "both": [False, True]}[vocabulary]
    runs: list[Run] = []
    systems = [lambda e=e, v=v: hotline_system(e, settings, vocabulary=v) for e in engines for v in modes]
    if baseline:
        systems.append(lambda: plain_system(settings))
    for make in systems:
        system = make()  # one model in memory at a time
        runs += [hear_all(system, clips, audio, channel) for channel in CHANNELS]
    table = [{"part": part, "audio": r.channel, "system": r.system.name, "baseline": r.system.baseline,
              "load_s": round(r.system.load_s, 2), "rtf": round(r.rtf, 4), **summarize(r.part(part))}
             for part in parts for r in runs]
    if as_json:
        print(json.dumps({"bootstrap": BOOTSTRAP, "figures": table, "clips": [
            {"system": r.system.name, "audio": o.channel, "file": o.clip.path.name, "part": o.clip.split,
             "expected": o.clip.language, "reference_source": o.clip.reference_source, "label": o.heard.label,
             "code": o.heard.code, "text": o.heard.text, "errors": o.errors, "length": o.length,
             "seconds": round(o.seconds, 3)} for r in runs for o in r.outcomes]}, ensure_ascii=False, indent=2))
        return 0
    _print(table, clips, runs, settings, domain=domain, verbose=verbose)
    return 0


def _describe(clips: list[Clip], part: str) -> str:
    mine = [c for c in clips if c.split == part]
    langs = {}
    for c in mine:
        key = c.language if c.language in SCORED else "other"
        langs[key] = langs.get(key, 0) + 1
    model = sum(not c.in_figures and c.language in SCORED for c in mine)
    extra = f"; {model} with another model's output as reference, not in the figures" if model else ""
    return f"{part} {len(mine)} clips (" + ", ".join(f"{k} {v}" for k, v in langs.items()) + extra + ")"


def _rate(cell: dict) -> str:
    if cell["rate"] is None:
        return "-"
    if cell["ci95"] is None:
        return f"{cell['rate']:5.1%} (1 clip, no CI)"
    lo, hi = cell["ci95"]
    return f"{cell['rate']:5.1%} [{lo:5.1%}, {hi:5.1%}] n={cell['n']}"


def _print(table: list[dict], clips: list[Clip], runs: list[Run], settings: VoiceSettings, *, domain: bool,
           verbose: bool) -> None:
    parts = list(dict.fromkeys(row["part"] for row in table))
    if domain:
        print(f"{len(clips)} hotline sentences spoken by the neural voice (synthesized: shows what the vocabulary "
              "prompt does for the hotline's words; not a recognition figure)")
    else:
        print(f"{FIXTURES.name}/: " + "; ".join(_describe(clips, p) for p in parts))
    print(f"hotline = voice.asr recognizer (threads={settings.threads}, beam={settings.beam_size}, VAD gate, "
          "vocabulary prompt as shown); plain = faster-whisper WhisperModel.transcribe on the same weights "
          "(int8, beam 5, language detected, no prompt, no VAD)")
    print("telephone = the same clips through 8 kHz μ-law and back; 95% CI: bootstrap over clips "
          f"({BOOTSTRAP['resamples']} resamples, seed {BOOTSTRAP['seed']})")
    header = (f"{'part':6} {'audio':9} {'system':34} {'EN WER [95% CI]':27} {'ZH CER [95% CI]':27} "
              f"{'mixed CER':21} {'lang':>6} {'other':>6} {'RTF':>6}")
    print(header)
    print("-" * len(header))
    for row in table:
        print(f"{row['part']:6} {row['audio']:9} {row['system']:34} {_rate(row['en']):27} {_rate(row['zh']):27} "
              f"{_rate(row['mixed']):21} {row['language_ok']:>3}/{row['language_n']:<2} "
              f"{row['other_ok']:>3}/{row['other_n']:<2} {row['rtf']:6.3f}")
    model_rows = [r for r in table if r["model_reference"]["n"]]
    for row in model_rows:
        print(f"  not in the figures: {row['part']} {row['audio']} {row['system']}: CER {row['model_reference']['rate']:.1%} "
              f"on {row['model_reference']['n']} clips whose reference is another recognizer's output")
    hotline = [r for r in runs if not r.system.baseline and r.channel == "wideband"]
    plain = next((r for r in runs if r.system.baseline and r.channel == "wideband"), None)
    for r in hotline:
        if plain is not None:
            print(f"speed: {r.system.name} RTF {r.rtf:.3f} vs plain call {plain.rtf:.3f} "
                  f"({plain.rtf / max(r.rtf, 1e-9):.2f}x its speed), wideband, same clips, same run")
    engines = {r.system.engine: r for r in hotline}
    if len(engines) > 1:
        fast, torch_ = engines["faster-whisper"], engines["openai-whisper"]
        print(f"speed: faster-whisper is {torch_.rtf / max(fast.rtf, 1e-9):.2f}x the speed of openai-whisper "
              "behind the same recognizer (same clips, same run)")
    if verbose:
        for r in runs:
            for o in r.outcomes:
                print(f"  [{r.system.name} {o.channel}] {o.clip.split:4} {o.clip.path.name:40} "
                      f"{o.heard.label:>6}:{o.heard.code:<4} {o.errors}/{o.length} {o.heard.text[:70]}")


def domain_clips(settings: VoiceSettings, folder: Path) -> list[Clip]:
    """Hotline sentences (work permit, residence permit, single window, 购付汇 …) spoken by the neural voice.

    The real recordings hold none of the hotline's vocabulary, so they cannot show what the vocabulary prompt
    does for it; these can (synthesized once, then cached on disk by the synthesizer). Synthesized speech is never
    a recognition figure: it is labelled as such wherever it is printed.
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
            clips.append(Clip(path, language, text, len(pcm) / 2 / SAMPLE_RATE, "domain", "synthesized"))
    return clips


def _vocab(mode: bool | None, settings: VoiceSettings) -> str:
    if mode is None:
        return "+".join(settings.vocabulary_languages) if settings.use_vocabulary_prompt else "off"
    return "on" if mode else "off"
