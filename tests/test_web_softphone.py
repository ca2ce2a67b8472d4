"""The browser softphone (`GET /`) in Debian's Chromium, headless, driven by Playwright.

The microphone is a recording, fed through Chromium's fake capture device (it loops the file), so the whole path
runs for real: getUserMedia -> AudioWorklet resampling -> 20 ms PCM16 frames -> the server -> events and answer audio
-> WebAudio playback and the transcript.

Fast tier: the real app with scripted fake models. Model tier (`model`): the real server and a real recording; it
also takes docs/screenshots/softphone.png.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

from conftest import require_tool
from fakes import fake_components
from live_server import serve_app, shared_real_server, with_softphone
from server.app import create_app
from server.settings import Settings
from voice.audio import decode_file, write_wav

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
# A temporary folder unless HOTLINE_SCREENSHOTS_DIR names one (docs/screenshots refreshes the README's picture).
SCREENSHOT = Path(os.environ.get("HOTLINE_SCREENSHOTS_DIR") or tempfile.mkdtemp(prefix="hotline-shots-")) / "softphone.png"
RECORDINGS = ROOT / "recordings_fixtures"


@pytest.fixture(autouse=True)
def _chromium():
    require_tool(CHROMIUM, "Debian's chromium (/usr/bin/chromium)", "apt-get install chromium")


def microphone_file(tmp: Path, speech: np.ndarray, *, lead_s: float = 1.5) -> Path:
    """Speech between silences, as 16-bit PCM WAV: Chromium loops it; the lead leaves room for the greeting and
    the tail lets the server's endpointer close the utterance."""
    path = tmp / "microphone.wav"
    write_wav(path, np.concatenate([np.zeros(int(lead_s * 16000), np.float32), speech, np.zeros(48000, np.float32)]))
    return path


def open_softphone(playwright, base: str, mic: Path):
    browser = playwright.chromium.launch(
        executable_path=str(CHROMIUM),
        headless=True,
        args=[
            "--no-sandbox",
            "--disable-background-networking",
            "--disable-component-update",
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={mic}",
            "--autoplay-policy=no-user-gesture-required",
        ],
    )
    page = browser.new_page(viewport={"width": 900, "height": 900}, bypass_csp=True)  # Playwright polls string predicates with eval, which the pages' CSP forbids (the CSP is tested in test_hardening_http)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(base + "/")
    return browser, page, errors


def run_call_in_page(page, *, timeout_ms: int) -> dict:
    page.click("#call")
    # The greeting: a bot message before the caller has said anything, with audio behind it.
    greeting = page.wait_for_selector("#transcript .msg.bot", timeout=timeout_ms)
    assert greeting.inner_text().strip()
    # The caller's words come back as a final transcript labelled with its language, then the answer.
    final = page.wait_for_selector("#transcript .msg.caller.final[data-language]", timeout=timeout_ms)
    answer = page.wait_for_selector("#transcript .msg.bot[data-route]", timeout=timeout_ms)
    page.wait_for_function("window.hotline.framesReceived > 50", timeout=timeout_ms)
    stats = page.evaluate("() => ({...window.hotline})")
    return {"final_language": final.get_attribute("data-language"), "final_text": final.inner_text(),
            "route": answer.get_attribute("data-route"), "answer_language": answer.get_attribute("data-language"),
            "stats": stats}


def hang_up(page, timeout_ms: int = 10_000) -> dict:
    page.click("#hangup")
    page.wait_for_function("window.hotline.state === 'ended'", timeout=timeout_ms)
    return page.evaluate("() => ({...window.hotline})")


@pytest.fixture(scope="module")
def playwright():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


def test_softphone_page_is_served_offline(tmp_path):
    """The page and its assets come from the server itself: no CDN, no external URL."""
    import httpx

    settings = Settings(db_url=f"sqlite+aiosqlite:///{tmp_path / 'calls.db'}", log_level="WARNING")
    app = with_softphone(create_app(settings, components=fake_components(), configure_logs=False))
    with serve_app(app, settings, ready_timeout_s=60) as base:
        page = httpx.get(base + "/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        for asset in ("/softphone/softphone.js", "/softphone/capture-worklet.js", "/softphone/softphone.css"):
            r = httpx.get(base + asset)
            assert r.status_code == 200 and "http://" not in r.text and "https://" not in r.text, asset
        assert "http://" not in page.text and "https://" not in page.text
        assert httpx.get(base + "/softphone/../settings.py").status_code == 404


def test_browser_call_with_fake_models(playwright, tmp_path):
    settings = Settings(db_url=f"sqlite+aiosqlite:///{tmp_path / 'calls.db'}", log_level="WARNING", no_input_s=30.0)
    script = [("How do I apply for a work permit", "en")] * 20
    app = with_softphone(create_app(settings, components=fake_components(script=script), configure_logs=False))
    mic = microphone_file(tmp_path, decode_file(RECORDINGS / "en_ljspeech_LJ001-0004.wav"))
    with serve_app(app, settings, ready_timeout_s=60) as base:
        browser, page, errors = open_softphone(playwright, base, mic)
        try:
            seen = run_call_in_page(page, timeout_ms=30_000)
            assert seen["final_language"] == "en" and seen["answer_language"] == "en"
            assert seen["route"] == "answer"
            assert seen["stats"]["framesSent"] > 50  # the microphone reached the server as 20 ms frames
            assert seen["stats"]["events"][0] == "call.started"
            if not SCREENSHOT.exists():  # the model test's screenshot (real words) is the better one
                SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(SCREENSHOT), full_page=True)
            after = hang_up(page)
            assert after["events"][-1] == "call.ended"
            assert errors == []
        finally:
            browser.close()


def synthesized_question(text: str, language: str) -> np.ndarray:
    """A hotline question spoken by the project's own synthesizer (public recordings hold no hotline questions)."""
    from voice.settings import VoiceSettings
    from voice.tts import build_synthesizer

    pcm = b"".join(c.pcm16 for c in build_synthesizer(VoiceSettings()).synthesize(text, language))
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0


@pytest.mark.model
def test_browser_call_with_real_models(playwright, tmp_path, tmp_path_factory):
    """The real pipeline: the whole bilingual greeting plays (the microphone stays quiet through it), then a spoken
    work-permit question is transcribed as English and answered in English about work permits."""
    base = shared_real_server(tmp_path_factory.getbasetemp())
    speech = synthesized_question("How do I apply for a work permit?", "en")
    mic = microphone_file(tmp_path, speech, lead_s=16.0)
    browser, page, errors = open_softphone(playwright, base, mic)
    try:
        seen = run_call_in_page(page, timeout_ms=120_000)
        assert seen["final_language"] == "en" and "permit" in seen["final_text"].lower()
        assert seen["answer_language"] == "en"
        assert seen["route"] == "answer"
        assert page.get_attribute("#transcript .msg.bot[data-route]", "data-topic").startswith("work_permit")
        greeting = page.inner_text("#transcript")
        assert "Welcome" in greeting and "您好" in greeting
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.wait_for_timeout(1500)  # let the answer's first words play before the picture
        page.screenshot(path=str(SCREENSHOT), full_page=True)
        hang_up(page)
        assert errors == []
    finally:
        browser.close()
