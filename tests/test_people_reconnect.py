"""An agent console whose connection drops keeps the agent's place for `people.console_grace_s`: reconnecting in
time resumes the same state and the same call (the caller waited on the line); not reconnecting signs the agent out
and the call goes back to the queue."""
from __future__ import annotations

import asyncio

from fakes import fake_components, silence
from people_helpers import Console, add_users, build_app, login, make_settings, serve
from server.settings import PeopleSettings
from test_people_flow import _caller_asks_for_person


async def _agent(base: str, token: str) -> Console:
    agent = await Console.connect(base, "/ws/agent", token)
    await agent.wait_event("hello")
    return agent


async def test_a_dropped_console_comes_back_to_its_call(tmp_path):
    settings = make_settings(tmp_path, people=PeopleSettings(console_grace_s=5.0))
    add_users(settings, [("mei", "agent", "zh")])
    app = build_app(settings, components=fake_components(script=[("我要转人工", "zh"), ("谢谢", "zh")]))
    with serve(app, settings) as base:
        token = login(base, "mei")
        mei = await _agent(base, token)
        await mei.send(type="availability", state="available")
        await mei.wait_event("agent.state", state="available")
        caller, call_id = await _caller_asks_for_person(base)
        await mei.wait_event("offer", call_id=call_id)
        await mei.send(type="accept", call_id=call_id)
        await mei.wait_event("call.connected", call_id=call_id)

        await mei.close()  # the console's process went away, as far as the browser can tell
        await caller.stream(silence(0.4))  # the caller is still on the line meanwhile
        await asyncio.sleep(0.5)
        assert app.state.people.queue.agent_state("mei") != "offline"

        back = await _agent(base, token)
        hello = back.named("hello")[0]
        assert hello["resumed"] is True
        resumed = await back.wait_event("call.connected", call_id=call_id)
        assert resumed["resumed"] is True and resumed["transcript"]
        assert (await back.wait_event("agent.state"))["state"] not in ("offline", "away")
        before = len(back.audio)
        await caller.stream(silence(0.4))
        await back.wait(lambda c: len(c.audio) >= before + 6400)  # the caller's audio reaches the new console
        frames = caller.frames
        await back.ws.send(b"\x00\x01" * 320)
        await caller.wait_for(lambda c: c.frames > frames)  # and the agent's microphone reaches the caller
        await back.send(type="end", call_id=call_id)
        ended = await caller.wait_event("call.ended")
        assert ended["state"] == "transferred_to_agent"
        await back.close()
        await caller.close()


async def test_no_reconnection_signs_the_agent_out_after_the_grace(tmp_path):
    settings = make_settings(tmp_path, people=PeopleSettings(console_grace_s=0.5))
    add_users(settings, [("mei", "agent", "zh")])
    app = build_app(settings, components=fake_components())
    with serve(app, settings) as base:
        mei = await _agent(base, login(base, "mei"))
        await mei.send(type="availability", state="available")
        await mei.wait_event("agent.state", state="available")
        await mei.close()
        await asyncio.sleep(0.2)
        assert app.state.people.queue.agent_state("mei") == "available", "held during the grace"
        for _ in range(40):
            if app.state.people.queue.agent_state("mei") == "offline":
                break
            await asyncio.sleep(0.05)
        assert app.state.people.queue.agent_state("mei") == "offline"
