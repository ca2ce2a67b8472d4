"""`hotline bench vad`: Silero vs webrtcvad on wideband and on telephone audio (8 kHz μ-law), same clips, one run.

Ground truth is built, not guessed: real speech clips are placed between stretches of silence and noise at known
positions, so every 10 ms frame is known to be speech (inside a clip's voiced region) or not (the gaps). The voiced
regions inside a clip come from a frame-energy threshold on the clean clip, which is reliable for these studio
recordings. Figures: frame accuracy, speech recall, false alarms in the gaps, and time per second of audio.
"""
from __future__ import annotations

import time

import numpy as np

from voice.audio import decode_file, through_telephone
from voice.bench import load_manifest
from voice.types import SAMPLE_RATE

HOP = 160  # 10 ms


def _energy_truth(clip: np.ndarray) -> np.ndarray:
    frames = clip[: len(clip) // HOP * HOP].reshape(-1, HOP)
    db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-10)
    return db > (db.max() - 35)


def build_signal(seed: int = 0, part: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """Served-language clips of one part of the recordings (test: held out, the figures; dev: what tuning saw)."""
    rng = np.random.default_rng(seed)
    parts, truth = [], []
    for clip in load_manifest():
        if not clip.language.startswith(("en", "zh", "mixed")) or clip.split != part:
            continue
        speech = decode_file(clip.path)
        speech = speech[: len(speech) // HOP * HOP]
        gap_s = rng.uniform(1.0, 2.5)
        n = int(gap_s * SAMPLE_RATE) // HOP * HOP
        t = np.arange(n) / SAMPLE_RATE
        noise = rng.standard_normal(n) * 0.01 + 0.02 * np.sin(2 * np.pi * 50 * t)  # line noise + mains hum
        parts += [noise.astype(np.float32), speech + (rng.standard_normal(len(speech)) * 0.01).astype(np.float32)]
        truth += [np.zeros(n // HOP, bool), _energy_truth(speech)]
    return np.concatenate(parts), np.concatenate(truth)


def frame_decisions(vad, audio: np.ndarray, threshold: float = 0.5) -> tuple[np.ndarray, float]:
    vad.reset()
    w = vad.window
    out = np.zeros(len(audio) // HOP, bool)
    t0 = time.perf_counter()
    for i in range(0, len(audio) - w + 1, w):
        if vad.speech_prob(audio[i : i + w]) >= threshold:
            out[i // HOP : (i + w) // HOP] = True
    return out, time.perf_counter() - t0


def run(as_json: bool = False, part: str = "test") -> int:
    import json

    import sys

    from voice.vad import SileroVad, WebRtcVad

    try:
        webrtc = (("webrtc", WebRtcVad(aggressiveness=2)), ("webrtc-3", WebRtcVad(aggressiveness=3)))
    except ModuleNotFoundError as exc:  # the baseline is part of the figure: no comparison without it
        print(f"error: {exc}", file=sys.stderr)
        return 2
    clean, truth = build_signal(part=part)
    phone = through_telephone(clean)
    seconds = len(clean) / SAMPLE_RATE
    rows = []
    for name, vad in (("silero", SileroVad()), *webrtc):
        for channel, audio in (("wideband", clean), ("telephone", phone)):
            dec, spent = frame_decisions(vad, audio)
            n = min(len(dec), len(truth))
            d, t = dec[:n], truth[:n]
            rows.append({"vad": name, "audio": channel, "accuracy": float(np.mean(d == t)),
                         "speech_recall": float(d[t].mean()), "false_alarm": float(d[~t].mean()),
                         "ms_per_audio_s": spent / seconds * 1000})
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{seconds:.0f} s of speech ({part} part of recordings_fixtures/) and noise gaps; 10 ms frames; "
          "truth from clean-clip energy; webrtcvad is the baseline")
    print(f"{'vad':10} {'audio':10} {'accuracy':>9} {'recall':>8} {'false alarm':>12} {'ms per s':>9}")
    for r in rows:
        print(f"{r['vad']:10} {r['audio']:10} {r['accuracy']:9.1%} {r['speech_recall']:8.1%} {r['false_alarm']:12.1%} {r['ms_per_audio_s']:9.2f}")
    return 0
