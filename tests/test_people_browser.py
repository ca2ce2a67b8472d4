"""The agent and supervisor consoles in Debian's Chromium, headless (Playwright), against a running server.

An English-only agent and a Mandarin-speaking agent sign in; a caller asks for a person in Mandarin; the Mandarin
agent gets the offer (the English-only one does not), accepts, sees the transcript, types a reply that the caller
hears (audio.start with that text, then audio frames); a supervisor finds the call by a Chinese word and exports it
as CSV and JSON.

Fast tier: scripted fake models. Model tier (`model`): the real server with Whisper, the router and the project's
synthesizer; the caller's question is synthesized Mandarin speech streamed in real time; it also takes
docs/screenshots/agent.png and docs/screenshots/supervisor.png.
"""
from __future__ import annotations

import asyncio
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Awaitable, Callable

import pytest

from conftest import require_tool
from fakes import fake_components, silence, tone
from people_helpers import PASSWORD, add_users, build_app, make_settings, serve
from wsclient import NativeCaller

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
# Screenshots go to a temporary folder unless HOTLINE_SCREENSHOTS_DIR names one (docs/screenshots to refresh the
# README's pictures): a test run must not rewrite tracked files.
SHOTS = Path(os.environ.get("HOTLINE_SCREENSHOTS_DIR") or tempfile.mkdtemp(prefix="hotline-shots-"))
ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update",
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream", "--autoplay-policy=no-user-gesture-required"]


@pytest.fixture(autouse=True)
def _chromium():
    require_tool(CHROMIUM, "Debian's chromium (/usr/bin/chromium)", "apt-get install chromium")


async def sign_in(browser: Any, base: str, path: str, name: str, errors: list[str]) -> Any:
    context = await browser.new_context(viewport={"width": 1360, "height": 900}, bypass_csp=True)  # Playwright polls string predicates with eval, which the pages' CSP forbids (the CSP is tested in test_hardening_http)
    page = await context.new_page()
    page.on("pageerror", lambda exc: errors.append(f"{name}: {exc}"))
    await page.goto(base + path)
    await page.fill("#login-name", name)
    await page.fill("#login-password", PASSWORD)
    await page.click("#login-submit")
    await page.wait_for_selector("#signout")
    return page


async def scenario(base: str, ask: Callable[[NativeCaller], Awaitable[None]], *, search_word: str, timeout_s: float,
                   screenshots: bool = False) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    t = int(timeout_s * 1000)
    errors: list[str] = []
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            alice = await sign_in(browser, base, "/agent", "alice", errors)
            mei = await sign_in(browser, base, "/agent", "mei", errors)
            for page in (alice, mei):
                await page.select_option("#availability", "available")
                await page.wait_for_selector("#state.available", timeout=t)

            caller = await NativeCaller.connect(base.replace("http://", "ws://") + "/ws/call")
            await caller.send_json({"event": "call.start", "language": "zh", "caller_id": "+8613812345678"})
            call_id = (await caller.wait_event("call.started", timeout=timeout_s))["call_id"]
            await ask(caller)
            answer = await caller.wait_event("answer", timeout=timeout_s)
            assert answer["route"] == "agent", answer

            # The Mandarin agent rings, with the call's language, topic and the transcript so far.
            await mei.wait_for_selector("#offer:not(.hidden)", timeout=t)
            assert await mei.get_attribute("#offer-language .lang", "data-language") == "zh"
            offer_lines = await mei.locator("#offer-transcript .msg").count()
            assert offer_lines >= 2  # the caller's words and the bot's answer
            assert await alice.locator("#offer:not(.hidden)").count() == 0, "English-only agent must not ring"

            await mei.click("#accept")
            await mei.wait_for_selector("#call:not(.hidden)", timeout=t)
            caller_line = mei.locator("#call-transcript .msg.caller").first
            await caller_line.wait_for(timeout=t)
            heard_text = await caller_line.inner_text()
            assert search_word in heard_text, heard_text

            reply = "您好，我是人工客服，请问有什么可以帮您？"
            frames_before = caller.frames
            await mei.fill("#reply", reply)
            await mei.click("#speak")
            start = await caller.wait_event("audio.start", text=reply, timeout=timeout_s)
            assert start["language"] == "zh"
            await caller.wait_event("audio.end", turn=start["turn"], timeout=timeout_s)
            assert caller.frames > frames_before + 5  # the reply was heard as audio (0.2 s of fake speech = 10 frames)
            await mei.wait_for_selector("#call-transcript .msg.agent", timeout=t)
            # The caller's audio reaches the agent's browser.
            await caller.stream(silence(0.5))
            await mei.wait_for_function("window.hotlineAgent.framesIn > 10", timeout=t)
            if screenshots:
                await mei.screenshot(path=str(SHOTS / "agent.png"), full_page=True)

            await mei.click("#end")
            ended = await caller.wait_event("call.ended", timeout=timeout_s)
            await mei.wait_for_selector("#wrapup:not(.hidden)", timeout=t)
            await mei.select_option("#disposition", "resolved")
            await mei.fill("#note", "Explained how to reach a Mandarin-speaking colleague.")
            await mei.click("#save-wrapup")
            await mei.wait_for_selector("#wrapup.hidden", state="attached", timeout=t)
            await caller.close()

            sup = await sign_in(browser, base, "/supervisor", "sam", errors)
            await sup.click("#tab-history")
            await sup.fill("#q", search_word)
            row = sup.locator(f'#results tr[data-call="{call_id}"]')
            for _ in range(50):  # the store is written just after the call ends
                await sup.click("#search")
                await sup.wait_for_timeout(200)
                if await row.count():
                    break
            assert await row.count() == 1
            assert await sup.locator("#results tr[data-call]").count() == 1
            await row.click()
            await sup.wait_for_selector("#detail-transcript .msg.caller", timeout=t)
            detail = await sup.inner_text("#detail")
            assert "13812345678" not in detail
            assert await sup.locator("#detail-transcript .msg.agent").count() >= 1
            async with sup.expect_download() as info:
                await sup.click("#export-csv")
            csv_path = await (await info.value).path()
            csv_text = Path(csv_path).read_text(encoding="utf-8-sig")
            async with sup.expect_download() as info:
                await sup.click("#export-json")
            exported = json.loads(Path(await (await info.value).path()).read_text(encoding="utf-8"))
            if screenshots:
                await sup.wait_for_timeout(500)
                await sup.screenshot(path=str(SHOTS / "supervisor.png"), full_page=False)
                await sup.click("#tab-dashboard")
                await sup.wait_for_selector("#charts svg", timeout=t)
                await sup.screenshot(path=str(SHOTS / "supervisor-dashboard.png"), full_page=True)
        finally:
            await browser.close()
    assert not errors, errors
    return {"call_id": call_id, "ended": ended, "csv": csv_text, "json": exported}


async def test_consoles_with_scripted_models(tmp_path):
    settings = make_settings(tmp_path)
    add_users(settings, [("alice", "agent", "en"), ("mei", "agent", "zh"), ("sam", "supervisor", "")])
    comps = fake_components(script=[("我要转人工，我的电话是13812345678", "zh")])
    app = build_app(settings, components=comps)

    async def ask(caller: NativeCaller) -> None:
        await caller.wait_event("audio.end", count=2)
        await asyncio.sleep(0.4)
        await caller.stream(tone(0.6) + silence(0.5))

    with serve(app, settings) as base:
        result = await scenario(base, ask, search_word="人工", timeout_s=20)
    assert result["ended"]["state"] == "transferred_to_agent"
    assert result["call_id"] in result["csv"] and "13812345678" not in result["csv"]
    assert [c["call_id"] for c in result["json"]["calls"]] == [result["call_id"]]


@pytest.mark.model
async def test_consoles_with_real_models(tmp_path):
    """The whole path for real: synthesized Mandarin speech -> Whisper -> router -> queue -> agent console."""
    from server.settings import Settings

    # No background synthesis of every knowledge-base answer: minutes of CPU this test does not need.
    quiet = {"warm_answers": False} if "warm_answers" in Settings.model_fields else {}
    settings = make_settings(tmp_path, no_input_s=60.0, **quiet)
    add_users(settings, [("alice", "agent", "en"), ("mei", "agent", "zh"), ("sam", "supervisor", "")])
    app = build_app(settings)  # the real models (loaded once, warm, before /readyz)
    SHOTS.mkdir(parents=True, exist_ok=True)

    async def ask(caller: NativeCaller) -> None:
        import numpy as np

        from voice.audio import resample

        synth = app.state.context.components.synthesizer  # the project's synthesizer, as the server uses it
        chunks = await asyncio.to_thread(lambda: list(synth.synthesize("你好，我要转人工。", "zh")))
        pcm = b"".join(c.pcm16 if getattr(c, "sample_rate", 16000) == 16000 else
                       (np.clip(resample(np.frombuffer(c.pcm16, "<i2").astype(np.float32) / 32768, c.sample_rate, 16000),
                                -1, 1) * 32767).astype("<i2").tobytes() for c in chunks)
        await caller.wait_event("audio.end", count=2, timeout=120)
        await asyncio.sleep(0.5)
        await caller.stream(silence(0.3) + pcm + silence(1.2), realtime=True)

    with serve(app, settings, ready_timeout=900) as base:
        result = await scenario(base, ask, search_word="人工", timeout_s=120, screenshots=True)
    assert result["ended"]["state"] == "transferred_to_agent"
    assert result["call_id"] in result["csv"]
    exported = result["json"]["calls"]
    assert [c["call_id"] for c in exported] == [result["call_id"]]
    assert any(t["speaker"] == "caller" and "人工" in t["text"] for t in exported[0]["transcript"])
