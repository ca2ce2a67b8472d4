"""Voice activity detection: Silero VAD (the ONNX model faster-whisper bundles), streamed window by window.

faster-whisper runs Silero over a whole file at once; a call needs it incrementally, so this adapter keeps the
model's recurrent state and the 64-sample context between 32 ms windows. webrtcvad is the alternative backend.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from voice.settings import VoiceSettings
from voice.types import SAMPLE_RATE

WINDOW = 512  # samples at 16 kHz = 32 ms: the window Silero v5/v6 was trained on
CONTEXT = 64


class Vad(Protocol):
    window: int

    def speech_prob(self, window: np.ndarray) -> float: ...

    def reset(self) -> None: ...


def silero_model_path() -> Path:
    import faster_whisper

    path = Path(faster_whisper.__file__).parent / "assets" / "silero_vad_v6.onnx"
    if not path.is_file():
        from voice.models import ModelMissingError

        raise ModelMissingError(f"{path} missing: pip install --force-reinstall faster-whisper==1.2.1")
    return path


class SileroVad:
    window = WINDOW

    def __init__(self, *, session=None) -> None:
        import onnxruntime

        if session is None:
            opts = onnxruntime.SessionOptions()
            # One thread: a 32 ms window costs well under a millisecond, and every call has its own VAD.
            opts.inter_op_num_threads = 1
            opts.intra_op_num_threads = 1
            opts.log_severity_level = 4
            session = onnxruntime.InferenceSession(
                str(silero_model_path()), providers=["CPUExecutionProvider"], sess_options=opts
            )
        self._session = session
        self.reset()

    def fork(self) -> "SileroVad":
        """A VAD with its own state sharing the loaded model (one per call)."""
        return SileroVad(session=self._session)

    def reset(self) -> None:
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)

    def speech_prob(self, window: np.ndarray) -> float:
        window = np.asarray(window, dtype=np.float32)
        if window.shape != (WINDOW,):
            raise ValueError(f"Silero needs windows of {WINDOW} samples, got {window.shape}")
        x = np.concatenate([self._context, window])[None, :]
        out, self._h, self._c = self._session.run(None, {"input": x, "h": self._h, "c": self._c})
        self._context = window[-CONTEXT:].copy()
        return float(np.asarray(out).reshape(-1)[0])


class WebRtcVad:
    """webrtcvad (GMM): cheaper, but gives a 0/1 decision per 30 ms rather than a probability."""

    window = 480  # 30 ms at 16 kHz

    def __init__(self, *, aggressiveness: int = 2) -> None:
        try:
            import webrtcvad
        except ModuleNotFoundError:
            raise ModuleNotFoundError("webrtcvad is not installed: it is the optional extra 'bench' "
                                      "(pip install -e '.[bench]'; setup.sh installs it)", name="webrtcvad") from None
        self._vad = webrtcvad.Vad(aggressiveness)

    def fork(self) -> "WebRtcVad":
        return WebRtcVad()

    def reset(self) -> None:
        pass

    def speech_prob(self, window: np.ndarray) -> float:
        pcm = (np.clip(window, -1, 1) * 32767).astype("<i2").tobytes()
        return 1.0 if self._vad.is_speech(pcm, SAMPLE_RATE) else 0.0


def build_vad(settings: VoiceSettings) -> Vad:
    return SileroVad() if settings.vad == "silero" else WebRtcVad()


def speech_regions(vad: Vad, audio: np.ndarray, *, threshold: float = 0.5) -> list[tuple[float, float]]:
    """Offline helper: (start_s, end_s) of windows the VAD calls speech (for files and tests)."""
    vad.reset()
    w = vad.window
    regions: list[tuple[float, float]] = []
    start = None
    for i in range(0, len(audio) - w + 1, w):
        p = vad.speech_prob(audio[i : i + w])
        t = i / SAMPLE_RATE
        if p >= threshold and start is None:
            start = t
        elif p < threshold and start is not None:
            regions.append((start, t))
            start = None
    if start is not None:
        regions.append((start, len(audio) / SAMPLE_RATE))
    vad.reset()
    return regions
