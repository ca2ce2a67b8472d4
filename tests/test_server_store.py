"""The store on SQLite (WAL) and PostgreSQL: migrations, one final state per call, turns kept when a call is cut off."""
from __future__ import annotations

import asyncio
import uuid

import pytest
import websockets

from fakes import FakeSynthesizer, fake_components, silence, tone
from server.settings import Settings
from server.store import FINAL_STATES, Store
from serving import running_server
from wsclient import NativeCaller


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'calls.db'}"
    return request.getfixturevalue("pg_url")


async def test_migrations_and_one_final_state(db_url):
    store = Store(url=db_url)
    try:
        await store.migrate()
        await store.migrate()  # idempotent: a restart runs it again
        call_id = uuid.uuid4().hex
        await store.create_call(call_id=call_id, protocol="native")
        await store.add_turn(call_id=call_id, seq=1, speaker="caller", kind="utterance", text="你好", language="zh",
                             language_code="zh", language_probability=0.9, language_source="audio", mixed=False,
                             interrupted=False)
        await store.add_event(call_id=call_id, kind="started", data={"hint": None})
        assert await store.end_call(call_id, state="caller_hangup", reason="hangup") is True
        assert await store.end_call(call_id, state="dropped", reason="connection_closed") is False
        call = await store.get_call(call_id)
        assert (call.state, call.reason) == ("caller_hangup", "hangup") and call.ended_at is not None
        with pytest.raises(ValueError):
            await store.end_call(call_id, state="active", reason="x")
        turns = await store.turns(call_id)
        assert [(t.text, t.language) for t in turns] == [("你好", "zh")]
        # A call left open by a crashed process is closed as dropped at the next start.
        open_id = uuid.uuid4().hex
        await store.create_call(call_id=open_id, protocol="twilio")
        assert await store.close_abandoned(reason="server_restart") >= 1
        assert (await store.get_call(open_id)).state == "dropped"
    finally:
        await store.close()


async def test_sqlite_runs_in_wal_mode(tmp_path):
    store = Store(url=f"sqlite+aiosqlite:///{tmp_path / 'wal.db'}")
    try:
        await store.migrate()
        async with store.engine.connect() as conn:
            mode = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar()
        assert mode == "wal"
    finally:
        await store.close()


async def test_a_call_cut_off_keeps_every_finished_turn(db_url):
    settings = Settings(db_url=db_url, pace_audio=True, playback_lead_s=0.2, start_timeout_s=0.3, no_input_s=30,
                        log_json=False, greeting=False)
    synth = FakeSynthesizer(seconds_per_char=0.02, max_seconds=4.0)
    script = [("work permit one", "en"), ("工作许可 two", "zh"), ("work permit three, a long answer please", "en")]
    comps = fake_components(script=script, synthesizer=synth)
    with running_server(settings, components=comps) as (url, app):
        caller = await NativeCaller.connect(f"{url}/ws/call")
        started = await caller.wait_event("call.started")
        for n in (1, 2):
            await caller.stream(tone(0.5) + silence(0.5))
            answer = await caller.wait_event("answer", count=n, timeout=10)
            start = await caller.wait_event("audio.start", count=n, timeout=10)
            await caller.wait_event("audio.end", turn=start["turn"], timeout=10)
            await asyncio.sleep(len(answer["text"]) * 0.02 + 0.3)  # let it finish playing
        synth.seconds_per_char = 1.0  # the third answer is long: the line is cut while it plays
        await caller.stream(tone(0.5) + silence(0.5))
        await caller.wait_event("audio.start", count=3, timeout=10)
        await asyncio.sleep(0.4)
        caller.ws.transport.abort()
        for _ in range(200):
            if not app.state.context.sessions:
                break
            await asyncio.sleep(0.05)
        assert app.state.context.sessions == {}
    store = Store(url=db_url)
    try:
        call = await store.get_call(started["call_id"])
        turns = await store.turns(started["call_id"])
        events = await store.events(started["call_id"])
    finally:
        await store.close()
    assert call.state in FINAL_STATES and (call.state, call.reason) == ("dropped", "connection_closed")
    assert [(t.speaker, t.language) for t in turns] == [
        ("caller", "en"), ("bot", "en"), ("caller", "zh"), ("bot", "zh"), ("caller", "en"), ("bot", "en")]
    assert [t.interrupted for t in turns if t.speaker == "bot"] == [False, False, True]
    assert all(t.language_probability is not None and t.language_source for t in turns)
    assert [e.kind for e in events].count("ended") == 1
    assert [t.seq for t in turns] == sorted({t.seq for t in turns})
