"""The softphone's microphone resampler (server/web/static/capture-worklet.js), run outside the browser in Node with
a minimal AudioWorklet shim: device-rate audio in, 16 kHz PCM16 frames of 320 samples out, no aliasing."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import require_tool

WORKLET = Path(__file__).resolve().parent.parent / "server" / "web" / "static" / "capture-worklet.js"
NODE = shutil.which("node")


@pytest.fixture(autouse=True)
def _node():
    require_tool(NODE, "Node.js (node)", "apt-get install nodejs")


HARNESS = r"""
const fs = require("fs");
const [rate, freq, seconds] = process.argv.slice(2).map(Number);
let Proc = null;
globalThis.sampleRate = rate;
globalThis.AudioWorkletProcessor = class { constructor() { this.port = { postMessage: (m) => frames.push(m) }; } };
globalThis.registerProcessor = (name, cls) => { Proc = cls; };
const frames = [];
eval(fs.readFileSync(process.argv[5], "utf8"));
const p = new Proc({ processorOptions: { targetRate: 16000, frameSamples: 320 } });
const total = Math.round(rate * seconds);
for (let start = 0; start < total; start += 128) {
  const block = new Float32Array(Math.min(128, total - start));
  for (let i = 0; i < block.length; i++) block[i] = 0.5 * Math.sin(2 * Math.PI * freq * (start + i) / rate);
  p.process([[block]]);
}
const out = [];
for (const f of frames) out.push(...new Int16Array(f.pcm));
process.stdout.write(JSON.stringify({ frames: frames.length, sizes: [...new Set(frames.map(f => f.pcm.byteLength))], samples: out }));
"""


def run_worklet(tmp_path: Path, rate: int, freq: float, seconds: float = 1.0) -> dict:
    harness = tmp_path / "harness.js"
    harness.write_text(HARNESS)
    result = subprocess.run([NODE, str(harness), str(rate), str(freq), str(seconds), str(WORKLET)],
                            capture_output=True, text=True, timeout=60, check=True)
    return json.loads(result.stdout)


def tone_level(samples: np.ndarray, freq: float) -> float:
    """Amplitude of `freq` in 16 kHz samples (single-bin DFT over whole seconds)."""
    t = np.arange(len(samples)) / 16000
    return float(2 * np.abs(np.mean(samples * np.exp(-2j * np.pi * freq * t))))


@pytest.mark.parametrize("rate", [48000, 44100, 16000])
def test_device_rate_becomes_16k_frames(tmp_path, rate):
    out = run_worklet(tmp_path, rate, 1000.0)
    samples = np.array(out["samples"], dtype=np.float64) / 32768
    assert out["sizes"] == [640]  # every frame is 20 ms of PCM16
    assert len(samples) == pytest.approx(16000, abs=320)  # one second in, one second out (less a partial frame)
    assert tone_level(samples[:16000], 1000.0) == pytest.approx(0.5, rel=0.05)  # in-band: kept


def test_no_aliasing_from_above_8khz(tmp_path):
    """A 10 kHz tone at 48 kHz would fold to 6 kHz if decimated without a low-pass: it must be (mostly) gone."""
    out = run_worklet(tmp_path, 48000, 10000.0)
    samples = np.array(out["samples"], dtype=np.float64) / 32768
    assert tone_level(samples, 6000.0) < 0.05 * 0.5  # at least 26 dB down
