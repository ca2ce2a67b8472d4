"""The agent queue wired into the call service, over real websockets with scripted fake models (fast tier).

A caller asks for a person in Mandarin; the Mandarin-speaking agent gets the offer (the English-only one does not),
accepts, hears the caller, speaks into the call and types a reply that the caller hears; the call ends in exactly
one final state, stored with the agent's wrap-up; a supervisor finds it by a Chinese word and exports it masked.
"""
from __future__ import annotations

import asyncio
import json
import wave

import httpx
import pytest

from fakes import fake_components, silence, tone
from people_helpers import Console, add_users, build_app, login, make_settings, serve
from wsclient import NativeCaller


async def _caller_asks_for_person(base: str) -> tuple[NativeCaller, str]:
    caller = await NativeCaller.connect(base.replace("http://", "ws://") + "/ws/call")
    await caller.send_json({"event": "call.start", "language": "zh", "caller_id": "+8613812345678"})
    call_id = (await caller.wait_event("call.started"))["call_id"]
    await caller.wait_event("audio.end", count=2)
    await asyncio.sleep(0.4)
    await caller.stream(tone(0.6) + silence(0.5))
    answer = await caller.wait_event("answer")
    assert answer["route"] == "agent" and answer["language"] == "zh"
    return caller, call_id


async def test_mandarin_caller_reaches_the_mandarin_agent_and_is_stored(tmp_path):
    settings = make_settings(tmp_path)
    add_users(settings, [("alice", "agent", "en"), ("mei", "agent", "zh"), ("sam", "supervisor", "")])
    comps = fake_components(script=[("我要转人工，我的手机是13812345678", "zh"), ("谢谢", "zh")])
    app = build_app(settings, components=comps)
    with serve(app, settings) as base:
        alice = await Console.connect(base, "/ws/agent", login(base, "alice"))
        mei = await Console.connect(base, "/ws/agent", login(base, "mei"))
        for agent in (alice, mei):
            await agent.wait_event("hello")
            await agent.send(type="availability", state="available")
            await agent.wait_event("agent.state", state="available")

        caller, call_id = await _caller_asks_for_person(base)
        offer = await mei.wait_event("offer", call_id=call_id)
        assert offer["language"] == "zh" and offer["topic"] == "human_agent"
        said = [t["text"] for t in offer["transcript"] if t["speaker"] == "caller"]
        assert said and "13812345678" not in said[0] and "[PHONE]" in said[0]  # masked before accepting
        assert any(t["speaker"] == "bot" for t in offer["transcript"])  # the bot's answers are part of the context
        assert not alice.named("offer"), "the English-only agent must not get a Mandarin call while Mei is free"

        # A supervisor follows the call live (masked) and listens in; both are audited.
        sup = await Console.connect(base, "/ws/supervisor", login(base, "sam"))
        live = await sup.wait(lambda c: next((e for e in c.named("live") if e["calls"]), None))
        assert [c["call_id"] for c in live["calls"]] == [call_id] and live["calls"][0]["state"] == "offered"
        await sup.send(type="watch", call_id=call_id)
        watching = await sup.wait_event("watching", call_id=call_id)
        assert any("[PHONE]" in t["text"] for t in watching["transcript"])
        await sup.send(type="listen", call_id=call_id)
        await sup.wait_event("listening")

        await mei.send(type="accept", call_id=call_id)
        connected = await mei.wait_event("call.connected", call_id=call_id)
        assert any("13812345678" in t["text"] for t in connected["transcript"])  # the agent on the call sees it all

        # The caller's audio reaches the agent; the agent's microphone reaches the caller.
        before = len(mei.audio)
        await caller.stream(silence(0.2))
        await mei.wait(lambda c: len(c.audio) >= before + 6400)
        frames_before = caller.frames
        await mei.ws.send(tone(0.2, amplitude=0.1))
        await caller.wait_for(lambda c: c.frames >= frames_before + 10)
        # Listening in: both sides, each frame tagged with its channel (1 caller, 2 what the caller hears).
        await sup.wait(lambda c: len(c.audio) > 0)
        assert not sup.named("error")

        # A typed reply is spoken to the caller in the caller's language.
        await mei.send(type="reply", text="您好，我是人工客服小美。")
        start = await caller.wait_event("audio.start", text="您好，我是人工客服小美。")
        assert start["language"] == "zh"
        await caller.wait_event("audio.end", turn=start["turn"])
        await mei.wait_event("reply.sent")

        # The caller keeps talking: the agent sees it live.
        await caller.stream(tone(0.5) + silence(0.5))
        await mei.wait_event("transcript", speaker="caller", text="谢谢")
        await sup.wait_event("transcript", speaker="caller", text="谢谢")

        # Other agents cannot act on Mei's call.
        await alice.send(type="end", call_id=call_id)
        err = await alice.wait_event("error")
        assert err["code"] == "refused"

        await mei.send(type="end", call_id=call_id)
        ended = await caller.wait_event("call.ended")
        assert ended["state"] == "transferred_to_agent"
        await mei.wait_event("call.ended", call_id=call_id, outcome="answered")
        await mei.send(type="wrap_up", disposition="resolved", note="回电 13812345678")
        await mei.wait_event("wrap_up.saved", call_id=call_id)
        await mei.wait_event("agent.state", state="available")
        await app.state.people.queue.drain()

        sam = login(base, "sam")
        h = {"Authorization": f"Bearer {sam}"}
        async with httpx.AsyncClient(base_url=base, headers=h, timeout=10) as http:
            for _ in range(50):
                found = (await http.get("/api/calls", params={"q": "人工"})).json()
                if found["total"] and found["items"][0]["queue_outcome"]:
                    break
                await asyncio.sleep(0.1)
            assert [c["call_id"] for c in found["items"]] == [call_id]
            item = found["items"][0]
            assert (item["queue_outcome"], item["agent"], item["disposition"]) == ("answered", "mei", "resolved")
            detail = (await http.get(f"/api/calls/{call_id}")).json()
            text = json.dumps(detail, ensure_ascii=False)
            assert "13812345678" not in text and "[PHONE]" in text
            assert any(t["speaker"] == "agent" and t["kind"] == "typed" for t in detail["turns"])
            assert detail["recording"] is True
            wav = await http.get(f"/api/calls/{call_id}/recording")
            assert wav.status_code == 200 and wav.content[:4] == b"RIFF"
            exported = (await http.get("/api/calls/export", params={"q": "人工", "format": "json"})).json()
            assert [c["call_id"] for c in exported["calls"]] == [call_id]
            assert "13812345678" not in json.dumps(exported, ensure_ascii=False)
            csv_text = (await http.get("/api/calls/export", params={"q": "人工", "format": "csv"})).text
            assert call_id in csv_text and "13812345678" not in csv_text
            # An agent may read their own call, unmasked; another agent may not.
            mine = httpx.get(f"{base}/api/calls/{call_id}", headers={"Authorization": f"Bearer {login(base, 'mei')}"})
            assert mine.status_code == 200 and "13812345678" in mine.text
            other = httpx.get(f"{base}/api/calls/{call_id}", headers={"Authorization": f"Bearer {login(base, 'alice')}"})
            assert other.status_code == 404
            audit = app.state.people.auth
            entries = await audit.audit_entries(call_id=call_id)
            assert {"read_transcript", "play_recording", "watch_live", "listen"} <= {e.action for e in entries}
        for c in (alice, mei, sup):
            await c.close()
        await caller.close()
    rec = tmp_path / "recordings" / f"{call_id}.wav"
    with wave.open(str(rec)) as w:
        assert w.getframerate() == 16000 and w.getnframes() > 16000


async def test_caller_hanging_up_while_waiting_is_abandoned(tmp_path):
    settings = make_settings(tmp_path)
    add_users(settings, [("alice", "agent", "en"), ("sam", "supervisor", "")])  # sam reads /metrics
    comps = fake_components(script=[("我要转人工", "zh")])
    app = build_app(settings, components=comps)
    with serve(app, settings) as base:
        alice = await Console.connect(base, "/ws/agent", login(base, "alice"))
        await alice.wait_event("hello")
        caller, call_id = await _caller_asks_for_person(base)
        # Nobody who speaks Mandarin is signed in: the caller hears that no agent is available, in Mandarin.
        await caller.wait_event("audio.start", text="暂时没有空闲的坐席。")
        queue = await alice.wait(lambda c: next((e for e in reversed(c.named("queue")) if e["queue"]), None))
        assert queue["queue"][0]["call_id"] == call_id and queue["queue"][0]["language"] == "zh"
        metrics = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {login(base, 'sam')}"}).text
        assert 'hotline_agent_queue_waiting{language="zh"} 1.0' in metrics
        await caller.send_json({"event": "hangup"})
        await caller.wait_closed()
        await asyncio.sleep(0.3)
        await app.state.people.queue.drain()
        final = app.state.people.queue.finals[call_id]
        assert final.state.value == "abandoned" and final.wait_s > 0
        await alice.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # uvicorn exits its thread: 3
async def test_refuses_to_start_with_development_accounts_unless_in_dev_mode(tmp_path):
    from people_helpers import PASSWORD, people_settings_for
    from server.people.service import install_people

    settings = make_settings(tmp_path)
    add_users(settings, [("demo", "agent", "en")], dev=True)
    app = build_app(settings, components=fake_components())
    with pytest.raises(RuntimeError):
        with serve(app, settings, ready_timeout=30):
            pass
    # The same accounts on a development machine: starts, and the demo account signs in.
    from server.app import create_app

    dev_app = create_app(settings, components=fake_components(), configure_logs=False)
    if hasattr(dev_app.state, "people"):
        dev_app.state.people.settings = people_settings_for(tmp_path, dev_mode=True)
        dev_app.state.people.auth.dev_mode = True
    else:
        install_people(dev_app, settings, people=people_settings_for(tmp_path, dev_mode=True))
    with serve(dev_app, settings) as base:
        assert login(base, "demo", PASSWORD)
