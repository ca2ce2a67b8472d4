"""Shared fixtures. Models load once per test session (they are the slow part)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "recordings_fixtures"


@pytest.fixture(scope="session")
def voice_settings():
    from voice.settings import VoiceSettings

    return VoiceSettings()


@pytest.fixture(scope="session")
def recognizer(voice_settings):
    from voice.asr import build_recognizer

    rec = build_recognizer(voice_settings, engine="faster-whisper")
    rec.warm_up()
    return rec


@pytest.fixture(scope="session")
def openai_recognizer(voice_settings):
    from voice.asr import build_recognizer

    return build_recognizer(voice_settings, engine="openai-whisper")


@pytest.fixture(scope="session")
def manifest():
    from voice.bench import load_manifest

    return load_manifest(FIXTURES)


def espeak_say(text: str, voice: str, tmp_path: Path) -> np.ndarray:
    """Synthesise with espeak-ng for languages no real recording covers here (Korean, French)."""
    from voice.audio import decode_file

    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.fail("espeak-ng is not installed: run setup.sh (apt-get install espeak-ng)")
    out = tmp_path / f"{voice}.wav"
    subprocess.run([exe, "-v", voice, "-w", str(out), text], check=True, capture_output=True, timeout=60)
    return decode_file(out)
