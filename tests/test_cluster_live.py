"""Two processes (two apps, each on its own uvicorn and event loop) sharing PostgreSQL and Redis: a supervisor on B
sees and hears a call held by A; B drives A's caller through the remote CallPort (what the agent bridge does)."""
from __future__ import annotations

import asyncio
import time

import pytest

from cluster_helpers import REDIS_URL, delete_prefix, unique_prefix
from fakes import fake_components
from people_helpers import Console, add_users, build_app, login, make_settings, serve
from server.call.messages import AudioEnd, AudioOut, AudioStart
from server.people.live import CHANNEL_CALLER, CHANNEL_LINE
from test_server_calls import ask, greeted
from wsclient import NativeCaller

pytestmark = [pytest.mark.redis, pytest.mark.postgres]

FAST = dict(heartbeat_interval_s=0.2, heartbeat_ttl_s=1.0, sweep_interval_s=0.2, health_interval_s=0.5)


def on_loop_of(app, coro_fn, timeout: float = 10.0):
    """Run `coro_fn()` on the app's own event loop (it serves from another thread) and return its result."""
    loop = app.state.people.live.cluster._task.get_loop()

    async def run():
        return await coro_fn()

    return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(run(), loop))


def two_processes(pg_url: str, tmp_path):
    """Settings of two processes A and B sharing the test's PostgreSQL database and a Redis prefix of their own."""
    prefix = unique_prefix()
    common = dict(db_url=pg_url, redis_url=REDIS_URL, redis_prefix=prefix, cluster=FAST)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    return prefix, make_settings(tmp_path / "a", **common), make_settings(tmp_path / "b", **common)


async def test_supervisor_on_b_watches_and_listens_to_a_call_on_a(fresh_pg_url, tmp_path):
    prefix, a_settings, b_settings = two_processes(fresh_pg_url, tmp_path)
    add_users(a_settings, [("sam", "supervisor", "")])
    script = [("how do I get a work permit", "en"), ("thanks", "en")]
    app_a = build_app(a_settings, components=fake_components(script=script))
    app_b = build_app(b_settings, components=fake_components())
    try:
        with serve(app_a, a_settings) as base_a, serve(app_b, b_settings) as base_b:
            caller = await NativeCaller.connect(base_a.replace("http://", "ws://") + "/ws/call")
            await caller.send_json({"event": "call.start", "language": "en"})
            call_id = (await caller.wait_event("call.started"))["call_id"]
            await greeted(caller)

            sup = await Console.connect(base_b, "/ws/supervisor", login(base_b, "sam"))
            live = await sup.wait(lambda c: next((e for e in c.named("live") for x in e["calls"]
                                                      if x["call_id"] == call_id), None), timeout=10)
            row = next(x for x in live["calls"] if x["call_id"] == call_id)
            assert row["process_id"] == app_a.state.process_id != app_b.state.process_id
            await sup.send(type="watch", call_id=call_id)
            await sup.wait_event("watching", call_id=call_id)
            await sup.send(type="listen", call_id=call_id)
            await sup.wait_event("listening", call_id=call_id)
            await asyncio.sleep(0.5)  # the tap request reaches A
            frames_before = len(sup.frames)
            await ask(caller, realtime=True)
            line = await sup.wait_event("transcript", speaker="caller", timeout=10)
            assert line["text"] == "how do I get a work permit" and line["call_id"] == call_id
            await sup.wait_event("transcript", speaker="bot", kind="answer", timeout=10)
            channels = {f[0] for f in sup.frames[frames_before:]}
            assert channels == {CHANNEL_CALLER, CHANNEL_LINE}, "the caller and what the caller hears, both heard on B"
            # B speaks to A's caller through the remote port, as the agent bridge does.
            got: list[bytes] = []

            async def speak_from_b():
                remote = app_b.state.people.live.get(call_id)
                assert type(remote).__name__ == "RemoteLiveCall"
                remote.on_caller_audio.append(got.append)
                port = remote.port
                turn = port.next_turn()
                remote.next_speaker = "agent"
                port.send(AudioStart(turn=turn, text="Hello from the agent.", language="en"))
                for _ in range(25):
                    port.send(AudioOut(pcm16=b"\x10\x00" * 320, turn=turn))
                port.send(AudioEnd(turn=turn))

            await on_loop_of(app_b, speak_from_b)
            said = await caller.wait_event("audio.start", text="Hello from the agent.", timeout=10)
            await caller.wait_event("audio.end", turn=said["turn"], timeout=10)
            agent_line = await sup.wait_event("transcript", speaker="agent", timeout=10)
            assert agent_line["text"] == "Hello from the agent."
            await ask(caller, realtime=True)
            deadline = time.monotonic() + 10
            while not got and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert got and all(len(f) == 640 for f in got), "the caller's 20 ms frames reach B"
            await caller.send_json({"event": "hangup"})
            await caller.wait_event("call.ended")
            await sup.wait_event("call.ended", call_id=call_id, timeout=10)
            await sup.close()
    finally:
        delete_prefix(REDIS_URL, prefix)


async def test_agent_on_b_takes_a_caller_on_a(fresh_pg_url, tmp_path):
    """The shared queue (Redis) offers A's Mandarin caller to the Mandarin agent whose console is on B; B accepts;
    the caller's audio reaches the agent, the agent's microphone and typed reply reach the caller, and the
    transcript goes on for the agent on B and for a supervisor on A."""
    from fakes import silence, tone

    prefix, a_settings, b_settings = two_processes(fresh_pg_url, tmp_path)
    add_users(a_settings, [("mei", "agent", "zh"), ("sam", "supervisor", "")])
    app_a = build_app(a_settings, components=fake_components(script=[("我要转人工", "zh"), ("谢谢", "zh")]))
    app_b = build_app(b_settings, components=fake_components())
    try:
        with serve(app_a, a_settings) as base_a, serve(app_b, b_settings) as base_b:
            mei = await Console.connect(base_b, "/ws/agent", login(base_b, "mei"))
            await mei.wait_event("hello")
            await mei.send(type="availability", state="available")
            await mei.wait_event("agent.state", state="available")
            caller = await NativeCaller.connect(base_a.replace("http://", "ws://") + "/ws/call")
            await caller.send_json({"event": "call.start", "language": "zh"})
            call_id = (await caller.wait_event("call.started"))["call_id"]
            await greeted(caller)
            await caller.stream(tone(0.6) + silence(0.5))
            assert (await caller.wait_event("answer"))["route"] == "agent"
            offer = await mei.wait_event("offer", call_id=call_id, timeout=15)
            assert offer["language"] == "zh"
            sup = await Console.connect(base_a, "/ws/supervisor", login(base_a, "sam"))
            await sup.send(type="watch", call_id=call_id)
            await sup.wait_event("watching", call_id=call_id)
            await mei.send(type="accept", call_id=call_id)
            await mei.wait_event("call.connected", call_id=call_id, timeout=15)
            before = len(mei.audio)
            await caller.stream(silence(0.4), realtime=True)
            await mei.wait(lambda c: len(c.audio) >= before + 6400, timeout=15)  # the caller, heard on B
            frames = caller.frames
            await mei.ws.send(tone(0.2, amplitude=0.1))
            await caller.wait_for(lambda c: c.frames >= frames + 10, timeout=15)  # the agent's microphone, on A
            reply = "您好，我是人工客服小美。"
            await mei.send(type="reply", text=reply)
            start = await caller.wait_event("audio.start", text=reply, timeout=15)
            await caller.wait_event("audio.end", turn=start["turn"], timeout=15)
            await sup.wait_event("transcript", speaker="agent", text=reply, timeout=15)
            await caller.stream(tone(0.5) + silence(0.5))
            await mei.wait_event("transcript", speaker="caller", text="谢谢", timeout=15)
            await sup.wait_event("transcript", speaker="caller", text="谢谢", timeout=15)
            await mei.send(type="end", call_id=call_id)
            ended = await caller.wait_event("call.ended", timeout=15)
            assert ended["state"] == "transferred_to_agent"
            for c in (mei, sup):
                await c.close()
            await caller.close()
    finally:
        delete_prefix(REDIS_URL, prefix)
