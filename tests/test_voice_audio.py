"""voice/audio.py: every fixture format decodes; telephone conversions; bad input gets a clear error."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from voice.audio import (
    AudioFormatError, decode_bytes, decode_file, float_to_pcm16, frames, mulaw_decode, mulaw_encode,
    pcm16_to_float, pcm16_to_telephone, resample, telephone_to_pcm16, write_wav,
)
from voice.types import SAMPLE_RATE

from conftest import FIXTURES


@pytest.mark.parametrize("path", sorted(p for p in FIXTURES.iterdir() if p.suffix in {".wav", ".flac", ".mp3"}),
                         ids=lambda p: p.name)
def test_every_fixture_decodes_to_16k_mono_with_its_duration(path, manifest):
    audio = decode_file(path)
    expected = next(c.duration_s for c in manifest if c.path.name == path.name)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) / SAMPLE_RATE - expected) < 0.06  # MP3 decoders differ by a frame
    assert 0.001 < float(np.abs(audio).max()) <= 1.0


def test_stereo_and_aiff_at_other_rates(tmp_path):
    import soundfile as sf

    t = np.arange(44_100) / 44_100
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    stereo = np.stack([left, left], axis=1).astype(np.float32)
    sf.write(tmp_path / "tone.aiff", stereo, 44_100, format="AIFF")
    audio = decode_file(tmp_path / "tone.aiff")
    assert abs(len(audio) - SAMPLE_RATE) <= 2
    spectrum = np.abs(np.fft.rfft(audio))
    assert abs(np.argmax(spectrum) * SAMPLE_RATE / len(audio) - 440) < 3  # the tone survives resampling


def test_mulaw_matches_the_reference_g711_bit_for_bit():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop
    every = np.arange(-32768, 32768, dtype=np.int16)
    assert mulaw_encode(every) == audioop.lin2ulaw(every.tobytes(), 2)
    codes = np.arange(256, dtype=np.uint8).tobytes()
    assert mulaw_decode(codes).tobytes() == audioop.ulaw2lin(codes, 2)


def test_telephone_round_trip_keeps_speech_band_and_length():
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    tone = (0.4 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    pcm = float_to_pcm16(tone)
    phone = pcm16_to_telephone(pcm)
    assert len(phone) == SAMPLE_RATE // 2  # 8 kHz, one byte per sample
    back = pcm16_to_float(telephone_to_pcm16(phone))
    assert len(back) == len(tone)
    assert np.corrcoef(tone[200:-200], back[200:-200])[0, 1] > 0.99


def test_resample_is_identity_at_same_rate_and_rejects_bad_rates():
    x = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    assert resample(x, 16000, 16000) is not None and np.array_equal(resample(x, 16000, 16000), x)
    assert len(resample(x, 16000, 8000)) == 500
    with pytest.raises(AudioFormatError):
        resample(x, 0, 16000)


def test_empty_truncated_and_non_audio_files_give_clear_errors(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudioFormatError, match="empty"):
        decode_file(empty)
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio at all " * 50)
    with pytest.raises(AudioFormatError, match="not a readable audio file"):
        decode_file(text)
    with pytest.raises(AudioFormatError, match="no such file"):
        decode_file(tmp_path / "missing.flac")
    # A WAV cut off after its header: an error or the samples that are there, never a crash or a hang.
    whole = (FIXTURES / "en_one_two_three.wav").read_bytes()
    for cut in (20, 44, 1000, len(whole) // 2):
        try:
            audio = decode_bytes(whole[:cut])
        except AudioFormatError:
            continue
        assert audio.ndim == 1 and len(audio) < 3 * SAMPLE_RATE


def test_pcm16_frames_odd_lengths_and_zero_length(tmp_path):
    with pytest.raises(AudioFormatError):
        pcm16_to_float(b"\x00\x01\x02")
    assert len(pcm16_to_float(b"")) == 0
    chunks = frames(b"\x01\x00" * 500)
    assert [len(c) for c in chunks] == [640, 360 + 280]
    write_wav(tmp_path / "x.wav", b"\x00\x10" * 1600)
    assert len(decode_file(tmp_path / "x.wav")) == 1600


def test_raw_pcm16_and_telephone_mulaw_files(tmp_path):
    speech = decode_file(FIXTURES / "en_one_two_three.wav")
    (tmp_path / "call.pcm").write_bytes(float_to_pcm16(speech))
    (tmp_path / "call.ul").write_bytes(pcm16_to_telephone(float_to_pcm16(speech)))
    raw = decode_file(tmp_path / "call.pcm")
    phone = decode_file(tmp_path / "call.ul")
    assert len(raw) == len(speech) and np.max(np.abs(raw - speech)) < 1e-3
    assert abs(len(phone) - len(speech)) <= 2 and np.corrcoef(speech[:len(phone)], phone[:len(speech)])[0, 1] > 0.9
    (tmp_path / "odd.raw").write_bytes(b"\x00\x01\x02")
    with pytest.raises(AudioFormatError, match="even number"):
        decode_file(tmp_path / "odd.raw")
