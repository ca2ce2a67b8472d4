"""Two real `hotline serve` processes on the machine's PostgreSQL and Redis, nginx in front with the documented
configuration, one of them killed with SIGKILL:
- the agent console (headless Chromium, through nginx) reconnects by itself to the survivor, and the agent is
  available there again;
- the call the dead process held is recorded `dropped` by the survivor within 10 s, and the turns it had
  finished are in the store;
- a supervisor on one process sees and hears a call held by the other;
and (model tier) a Mandarin caller on A served by the Mandarin agent on B, then A killed during that call and while
a second caller of A waits.
"""
from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from cluster_helpers import REDIS_URL, delete_prefix, unique_prefix
from cluster_processes import Nginx, ServeProcess
from people_helpers import PASSWORD, Console, add_users, login, make_settings
from server.store import Store
from wsclient import NativeCaller

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.postgres, pytest.mark.browser]

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-background-networking", "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream", "--autoplay-policy=no-user-gesture-required"]
# Lexical routing is enough for what this test checks (processes, presence, reconnection); the default voice, whose
# greeting comes from the disk cache (espeak-ng's warm-up timed out on a loaded machine).
LIGHT = {"HOTLINE_ROUTING__USE_EMBEDDINGS": "false"}


def _agent_process(prefix: str, name: str) -> str | None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        value = client.get(f"{prefix}:cluster:agent:{name}")
        return value.decode() if value else None
    finally:
        client.close()


async def _available_agent(browser, base: str, name: str, errors: list[str]):
    """An agent console page signed in at `base` and set available."""
    page = await (await browser.new_context(bypass_csp=True)).new_page()  # Playwright polls string predicates with eval, which the pages' CSP forbids (the CSP is tested in test_hardening_http)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(base + "/agent")
    await page.fill("#login-name", name)
    await page.fill("#login-password", PASSWORD)
    await page.click("#login-submit")
    await page.wait_for_selector("#signout")
    await page.select_option("#availability", "available")
    await page.wait_for_selector("#state.available", timeout=20000)
    return page


def _lost_lines(*procs: ServeProcess) -> list[str]:
    """What the processes said about lost processes (for a failure's message)."""
    return [f"{p.name}: {line[:300]}" for p in procs for line in p.log_tail(200_000).splitlines()
            if "process lost" in line or "redis unreachable" in line]


async def _until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s: {what}")


async def test_kill_9_behind_nginx(pg_url, tmp_path):
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is not installed at /usr/bin/chromium (setup.sh installs it)")
    from playwright.async_api import async_playwright

    prefix = unique_prefix()
    add_users(make_settings(tmp_path, db_url=pg_url), [("mei", "agent", "zh"), ("sam", "supervisor", "")])
    procs = [ServeProcess(n, db_url=pg_url, prefix=prefix, workdir=tmp_path, env=LIGHT) for n in ("a", "b")]
    nginx = None
    try:
        for p in procs:
            p.start()
        for p in procs:
            p.wait_ready()
        nginx = Nginx(tmp_path, [p.port for p in procs])
        by_id = {p.process_id(): p for p in procs}

        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
            errors: list[str] = []
            try:
                page = await _available_agent(browser, nginx.base, "mei", errors)
                holder_id = await _until(lambda: asyncio.sleep(0, _agent_process(prefix, "mei")), 10,
                                         "the agent console's heartbeat in Redis")
                victim = by_id[holder_id]
                survivor = next(p for p in procs if p is not victim)

                # A caller on the process that holds the console; a supervisor on the other sees and hears it.
                caller = await NativeCaller.connect(victim.base.replace("http://", "ws://") + "/ws/call")
                await caller.send_json({"event": "call.start", "language": "zh"})
                call_id = (await caller.wait_event("call.started", timeout=30))["call_id"]
                await caller.wait_event("audio.end", count=2, timeout=60)  # both greetings played: two turns
                sup = await Console.connect(survivor.base, "/ws/supervisor", login(survivor.base, "sam"))
                live = await sup.wait(lambda c: next((e for e in c.named("live") for x in e["calls"]
                                                      if x["call_id"] == call_id), None), timeout=15)
                assert next(x for x in live["calls"] if x["call_id"] == call_id)["process_id"] == holder_id
                await sup.send(type="listen", call_id=call_id)
                await sup.wait_event("listening", call_id=call_id)
                await caller.stream(b"\x00\x00" * 16000, realtime=True)  # one second of the caller's line
                await sup.wait(lambda c: len(c.audio) > 0, timeout=10)

                killed_at = time.monotonic()
                victim.kill9()
                store = Store(url=pg_url)
                try:
                    async def dropped():
                        call = await store.get_call(call_id)
                        return call if call is not None and call.ended_at is not None else None

                    call = await _until(dropped, 10, "the dead process's call recorded as ended")
                    took = time.monotonic() - killed_at
                    assert (call.state, call.reason) == ("dropped", "process_lost"), (call.state, call.reason)
                    assert took <= 10
                    turns = await store.turns(call_id)
                    assert len([t for t in turns if t.kind == "prompt"]) >= 2, "finished turns are kept"
                finally:
                    await store.close()

                # The console reconnects through nginx to the survivor, and the agent is available there.
                await page.wait_for_function("window.hotlineAgent.ws.reconnects >= 1", timeout=30000)
                await page.wait_for_selector("#reconnecting", state="detached", timeout=30000)
                survivor_id = next(i for i, p in by_id.items() if p is survivor)
                await _until(lambda: asyncio.sleep(0, _agent_process(prefix, "mei") == survivor_id), 15,
                             "the agent's heartbeat now from the survivor")
                await page.wait_for_selector("#state.available", timeout=15000)
                await sup.close()
                await caller.close()
            finally:
                await browser.close()
        assert not errors, errors
    finally:
        if nginx is not None:
            nginx.stop()
        for p in procs:
            p.stop()
        delete_prefix(REDIS_URL, prefix)


def _mandarin_request() -> bytes:
    """"你好，我要转人工。" spoken by the project's synthesizer (Kokoro, from its disk cache after the first run),
    16 kHz PCM16: the caller's question."""
    import numpy as np

    from voice.audio import resample
    from voice.settings import VoiceSettings
    from voice.tts import build_synthesizer

    synth = build_synthesizer(VoiceSettings())
    pcm = b""
    for c in synth.synthesize("你好，我要转人工。", "zh"):
        if getattr(c, "sample_rate", 16000) != 16000:
            x = resample(np.frombuffer(c.pcm16, "<i2").astype(np.float32) / 32768, c.sample_rate, 16000)
            pcm += (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()
        else:
            pcm += c.pcm16
    return pcm


async def _asks_for_a_person(base: str, speech: bytes) -> tuple[NativeCaller, str]:
    caller = await NativeCaller.connect(base.replace("http://", "ws://") + "/ws/call")
    await caller.send_json({"event": "call.start", "language": "zh"})
    call_id = (await caller.wait_event("call.started", timeout=60))["call_id"]
    await caller.wait_event("audio.end", count=2, timeout=120)
    await asyncio.sleep(0.5)
    silence = b"\x00\x00" * 3200
    await caller.stream(silence + speech + silence * 4, realtime=True)
    answer = await caller.wait_event("answer", timeout=120)
    assert answer["route"] == "agent", answer
    return caller, call_id


@pytest.mark.model
async def test_mandarin_caller_on_a_agent_on_b_then_a_dies(pg_url, tmp_path):
    """A Mandarin caller on A asks for a person; the Mandarin agent signed in on B (Chromium) gets the offer,
    accepts and hears the caller; a supervisor on A sees the call and listens in. Then A is killed while that call
    is with the agent and a second caller of A waits: both are recorded `dropped` within 10 s, no finished turn is
    lost, and the agent on B is offered the next waiting call (a caller on B), takes it and types a reply the
    caller hears."""
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is not installed at /usr/bin/chromium (setup.sh installs it)")
    from playwright.async_api import async_playwright

    speech = await asyncio.to_thread(_mandarin_request)
    prefix = unique_prefix()
    add_users(make_settings(tmp_path, db_url=pg_url), [("lin", "agent", "zh"), ("kai", "supervisor", "")])
    env = {**LIGHT, "HOTLINE_PEOPLE__ACD__WRAP_UP_S": "1", "HOTLINE_PEOPLE__ACD__OFFER_TIMEOUT_S": "60"}
    a, b = (ServeProcess(n, db_url=pg_url, prefix=prefix, workdir=tmp_path, env=env) for n in ("a", "b"))
    try:
        for p in (a, b):
            p.start()
        for p in (a, b):
            p.wait_ready()
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
            errors: list[str] = []
            try:
                page = await _available_agent(browser, b.base, "lin", errors)

                first, first_id = await _asks_for_a_person(a.base, speech)
                await page.wait_for_selector("#offer:not(.hidden)", timeout=60000)
                assert await page.get_attribute("#offer-language .lang", "data-language") == "zh"
                sup = await Console.connect(a.base, "/ws/supervisor", login(a.base, "kai"))
                await sup.wait(lambda c: any(x["call_id"] == first_id for e in c.named("live") for x in e["calls"]),
                               timeout=15)
                await sup.send(type="listen", call_id=first_id)
                await sup.wait_event("listening", call_id=first_id)
                await page.click("#accept")
                await page.wait_for_selector("#call:not(.hidden)", timeout=30000)
                await page.locator("#call-transcript .msg.caller").first.wait_for(timeout=30000)
                await first.stream(b"\x00\x01" * 16000, realtime=True)  # one second more of the caller
                await page.wait_for_function("window.hotlineAgent.framesIn > 10", timeout=30000)
                await sup.wait(lambda c: len(c.frames) > 10, timeout=15)  # the supervisor on A hears the call

                second, second_id = await _asks_for_a_person(a.base, speech)  # waits: Mei is busy
                third, third_id = await _asks_for_a_person(b.base, speech)  # waits on B, behind the second
                killed_at = time.monotonic()
                a.kill9()
                store = Store(url=pg_url)
                try:
                    for cid in (first_id, second_id):
                        async def ended(cid=cid):
                            call = await store.get_call(cid)
                            return call if call is not None and call.ended_at is not None else None

                        call = await _until(ended, 10 - (time.monotonic() - killed_at), f"call {cid} ended")
                        assert call.state == "dropped", (call.state, call.reason, _lost_lines(a, b))
                    turns = await store.turns(first_id)
                    assert any(t.speaker == "caller" and "人工" in t.text for t in turns), "finished turns are kept"
                finally:
                    await store.close()
                # The agent on B is offered the next waiting call (the caller on B), takes it and types a reply that
                # the caller hears. (A typed reply across processes: tests/test_cluster_live.py.)
                await page.wait_for_function(
                    f"window.hotlineAgent.offer && window.hotlineAgent.offer.call_id === '{third_id}'", timeout=60000)
                await page.click("#accept")
                await page.wait_for_selector("#call:not(.hidden)", timeout=30000)
                reply = "您好，我是人工客服小美。"
                await page.fill("#reply", reply)
                await page.click("#speak")
                # Synthesis of a new sentence by the neural voice on a loaded 2-core machine: as in the one-process
                # browser test, up to two minutes.
                said = await third.wait_event("audio.start", text=reply, timeout=120)
                await third.wait_event("audio.end", turn=said["turn"], timeout=120)
                await third.close()
                await sup.close()
            finally:
                await browser.close()
        assert not errors, errors
    finally:
        for p in (a, b):
            p.stop()
        delete_prefix(REDIS_URL, prefix)
