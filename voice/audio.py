"""Audio formats, in one place: file decoding, resampling, PCM16, telephone μ-law.

Everything inside the core is 16 kHz mono float32 (or PCM16 bytes on the wire). Telephony formats are converted
here, at the edge, and nowhere else (telephony formats stop at the edge).
"""
from __future__ import annotations

import io
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import numpy as np

from voice.types import SAMPLE_RATE

TELEPHONE_RATE = 8_000
MAX_FILE_SECONDS = 15 * 60  # a bound, so a huge upload cannot exhaust memory


class AudioFormatError(ValueError):
    """The input is not audio we can read (empty, truncated, not audio, unsupported layout)."""


# ---------------------------------------------------------------- files

def decode_file(path: str | Path, *, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode WAV / FLAC / MP3 / AIFF / OGG (any rate, any channel count) to mono float32 at `rate`."""
    path = Path(path)
    if not path.is_file():
        raise AudioFormatError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise AudioFormatError(f"{path}: the file is empty")
    suffix = path.suffix.lower()
    if suffix in RAW_PCM16_SUFFIXES:  # headerless: 16 kHz mono PCM16 little-endian, as on the native websocket
        return resample(pcm16_to_float(_even(path.read_bytes(), path)), SAMPLE_RATE, rate)
    if suffix in RAW_MULAW_SUFFIXES:  # headerless: 8 kHz μ-law, as a telephone carrier sends it
        return resample(mulaw_decode(path.read_bytes()).astype(np.float32) / 32768.0, TELEPHONE_RATE, rate)
    return decode_bytes(path.read_bytes(), rate=rate, name=str(path))


RAW_PCM16_SUFFIXES = (".pcm", ".raw", ".s16")
RAW_MULAW_SUFFIXES = (".ul", ".ulaw", ".mulaw", ".mu")


def _even(data: bytes, path: Path) -> bytes:
    if len(data) % 2:
        raise AudioFormatError(f"{path}: raw PCM16 must have an even number of bytes, got {len(data)}")
    return data


def decode_bytes(data: bytes, *, rate: int = SAMPLE_RATE, name: str = "audio") -> np.ndarray:
    if not data:
        raise AudioFormatError(f"{name}: no data")
    try:
        audio, src_rate = _decode_soundfile(data)
    except Exception:  # libsndfile refuses some MP3s and odd containers: PyAV (FFmpeg) reads those
        try:
            audio, src_rate = _decode_av(data)
        except Exception as exc:
            raise AudioFormatError(f"{name}: not a readable audio file ({type(exc).__name__})") from None
    if audio.size == 0:
        raise AudioFormatError(f"{name}: the file holds no audio samples")
    if audio.shape[0] > MAX_FILE_SECONDS * src_rate:
        raise AudioFormatError(f"{name}: longer than {MAX_FILE_SECONDS} s")
    mono = audio.mean(axis=1) if audio.ndim == 2 else audio
    if not np.all(np.isfinite(mono)):
        raise AudioFormatError(f"{name}: the samples are not finite numbers")
    return resample(mono.astype(np.float32), src_rate, rate)


def _decode_soundfile(data: bytes) -> tuple[np.ndarray, int]:
    import soundfile as sf

    audio, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return audio, int(sr)


def _decode_av(data: bytes) -> tuple[np.ndarray, int]:
    import av

    chunks: list[np.ndarray] = []
    with av.open(io.BytesIO(data), mode="r", metadata_errors="ignore") as container:
        if not container.streams.audio:
            raise AudioFormatError("no audio stream")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=stream.rate or SAMPLE_RATE)
        sr = stream.rate or SAMPLE_RATE
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    if not chunks:
        raise AudioFormatError("no audio frames")
    return np.concatenate(chunks).astype(np.float32), int(sr)


def write_wav(path: str | Path, audio: np.ndarray | bytes, *, rate: int = SAMPLE_RATE) -> None:
    """Write mono PCM16 WAV from float32 samples or PCM16 bytes."""
    import soundfile as sf

    samples = pcm16_to_float(audio) if isinstance(audio, (bytes, bytearray)) else audio
    sf.write(str(path), samples, rate, subtype="PCM_16")


# ---------------------------------------------------------------- resampling

@lru_cache(maxsize=32)
def _ratio(src: int, dst: int) -> tuple[int, int]:
    f = Fraction(dst, src)
    return f.numerator, f.denominator


def resample(audio: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Band-limited polyphase resampling (anti-aliased), float32 in and out."""
    if src_rate <= 0 or dst_rate <= 0:
        raise AudioFormatError(f"invalid sample rate {src_rate} -> {dst_rate}")
    audio = np.asarray(audio, dtype=np.float32)
    if src_rate == dst_rate or audio.size == 0:
        return audio
    from scipy.signal import resample_poly

    up, down = _ratio(src_rate, dst_rate)
    return resample_poly(audio, up, down).astype(np.float32)


# ---------------------------------------------------------------- PCM16

def pcm16_to_float(data: bytes | bytearray | memoryview) -> np.ndarray:
    if len(data) % 2:
        raise AudioFormatError(f"PCM16 data must have an even number of bytes, got {len(data)}")
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def float_to_pcm16(audio: np.ndarray) -> bytes:
    clipped = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0)
    return (clipped * 32767.0).round().astype("<i2").tobytes()


# ---------------------------------------------------------------- G.711 μ-law (telephone)

_BIAS = 0x84


def _build_mulaw_tables() -> tuple[np.ndarray, np.ndarray]:
    # Decode table: 256 codes -> linear int16 (ITU-T G.711).
    codes = np.arange(256, dtype=np.int32)
    u = ~codes & 0xFF
    sign = u & 0x80
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    decode = np.where(sign != 0, -magnitude, magnitude).astype(np.int16)
    # Encode table over all 65536 int16 values, so encoding is one lookup. Computed in the 14-bit domain of
    # the reference G.711 code (Sun's g711.c, as audioop does), so codes match other implementations bit for bit.
    x = np.arange(-32768, 32768, dtype=np.int32) >> 2
    negative = x < 0
    mag = np.minimum(np.where(negative, -x, x), 8159) + 0x21
    raw_exp = np.floor(np.log2(mag)).astype(np.int32) - 5
    exp = np.clip(raw_exp, 0, 7)
    man = (mag >> (exp + 1)) & 0x0F
    code = np.where(raw_exp > 7, 0x7F, (exp << 4) | man)  # beyond the last segment: the loudest code
    encode = np.where(negative, ~code & 0x7F, ~code & 0xFF).astype(np.uint8)
    return decode, encode


_MULAW_DECODE, _MULAW_ENCODE = _build_mulaw_tables()


def mulaw_decode(data: bytes) -> np.ndarray:
    """8-bit μ-law codes -> int16 samples."""
    return _MULAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


def mulaw_encode(samples: np.ndarray) -> bytes:
    """int16 samples -> 8-bit μ-law codes."""
    s = np.asarray(samples, dtype=np.int16).astype(np.int32) + 32768
    return _MULAW_ENCODE[s].tobytes()


def telephone_to_pcm16(mulaw_8k: bytes) -> bytes:
    """Carrier audio (8 kHz μ-law) -> internal 16 kHz PCM16."""
    samples = mulaw_decode(mulaw_8k).astype(np.float32) / 32768.0
    return float_to_pcm16(resample(samples, TELEPHONE_RATE, SAMPLE_RATE))


def pcm16_to_telephone(pcm16_16k: bytes) -> bytes:
    """Internal 16 kHz PCM16 -> carrier audio (8 kHz μ-law)."""
    samples = resample(pcm16_to_float(pcm16_16k), SAMPLE_RATE, TELEPHONE_RATE)
    return mulaw_encode((np.clip(samples, -1, 1) * 32767).round().astype(np.int16))


def through_telephone(audio: np.ndarray) -> np.ndarray:
    """16 kHz float audio as it arrives over a phone line: down to 8 kHz μ-law and back (the benchmarks' copies)."""
    return pcm16_to_float(telephone_to_pcm16(pcm16_to_telephone(float_to_pcm16(audio))))


def frames(pcm16: bytes, frame_bytes: int = 640) -> list[bytes]:
    """Split PCM16 into fixed frames (the last one zero-padded), as a caller's phone sends them."""
    out = [pcm16[i : i + frame_bytes] for i in range(0, len(pcm16), frame_bytes)]
    if out and len(out[-1]) < frame_bytes:
        out[-1] = out[-1] + b"\x00" * (frame_bytes - len(out[-1]))
    return out
