"""A public line no one can exhaust: caller audio paced to real time, call limits overall and per address answered
with a spoken apology and 1013, control events rate-limited, a bounded recorder queue, capped and expiring
recordings, and the Twilio endpoint closed without a signing token. Fake models, real websockets."""
from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest
import websockets

from fakes import fake_components
from serving import running_server
from server.call.limits import Admission, AudioPacer, TokenBucket
from server.settings import Settings
from server.store import Store
from wsclient import NativeCaller, TwilioCaller

FRAME_64K = b"\x01\x00" * (32 * 1024)  # 64 KiB of PCM16: 2.048 s of audio in one frame


def settings_for(tmp_path: Path, **overrides) -> Settings:
    base = dict(db_url=f"sqlite+aiosqlite:///{tmp_path / 'calls.db'}", pace_audio=False, start_timeout_s=0.3,
                no_input_s=30.0, log_json=False, log_level="WARNING")
    base.update(overrides)
    return Settings(**base)


async def stored_calls(settings: Settings, *, wait_for: int = 1):
    store = Store(url=settings.db_url)
    try:
        for _ in range(100):
            calls = await store.calls()
            if len(calls) >= wait_for and all(c.ended_at is not None for c in calls):
                break
            await asyncio.sleep(0.05)
        return calls, {c.id: await store.events(c.id) for c in calls}
    finally:
        await store.close()


# ---------------------------------------------------------------------------------------------- pure limits


def test_token_bucket_allows_a_burst_then_the_rate():
    b = TokenBucket(capacity=3, rate=2)
    assert [b.take(1, 0.0) for _ in range(4)] == [True, True, True, False]
    assert b.take(1, 0.5) and not b.take(1, 0.5)  # 0.5 s at 2/s: one more
    assert b.take(3, 10.0) and not b.take(0.5, 10.0)  # refills to the capacity, never beyond


def test_audio_pacer_tolerates_jitter_but_not_faster_than_real_time():
    pacer = AudioPacer(burst_s=5.0)
    frame = 640  # 20 ms
    # Real time with bursty arrival: 10 s of audio, delivered in 1-second bunches: always accepted.
    for second in range(10):
        assert all(pacer.accept(frame, now=float(second)) for _ in range(50))
    # Twenty seconds of audio at once: past the 5 s tolerance it is refused.
    fast = AudioPacer(burst_s=5.0)
    accepted = sum(fast.accept(frame, now=0.0) for _ in range(1000))
    assert accepted == 250  # exactly the 5 s allowance


def test_admission_counts_overall_and_per_address():
    a = Admission(max_calls=3, max_per_address=2)
    assert a.enter("1.1.1.1") is None and a.enter("1.1.1.1") is None
    assert a.enter("1.1.1.1") == "too_many_from_address"
    assert a.enter("2.2.2.2") is None
    assert a.enter("3.3.3.3") == "busy"
    a.leave("1.1.1.1")
    assert a.enter("3.3.3.3") is None and a.total == 3


# ---------------------------------------------------------------------------------------------- over the wire


async def test_audio_faster_than_real_time_closes_the_call_1008(tmp_path):
    """600 frames of 64 KiB (20 minutes of "audio") sent at once: refused after the tolerance, not recorded."""
    settings = settings_for(tmp_path)
    with running_server(settings, components=fake_components()) as (url, app):
        caller = await NativeCaller.connect(f"{url}/ws/call")
        t0 = time.monotonic()
        try:
            for _ in range(600):
                await caller.ws.send(FRAME_64K)
        except websockets.ConnectionClosed:
            pass
        code, _ = await caller.wait_closed(timeout=10)
        assert code == 1008
        assert any(e.get("code") == "too_fast" for e in caller.named("error"))
        assert time.monotonic() - t0 < 10
    calls, _ = await stored_calls(settings)
    assert [(c.state, c.reason) for c in calls] == [("error", "audio_too_fast")]


async def test_twilio_media_faster_than_real_time_closes_the_stream(tmp_path):
    settings = settings_for(tmp_path, twilio_allow_unsigned=True)
    with running_server(settings, components=fake_components()) as (url, app):
        caller = TwilioCaller(await websockets.connect(f"{url}/ws/twilio", max_size=None))
        await caller.start()
        try:
            await caller.stream(b"\x01\x00" * 16000 * 30)  # 30 s of audio as fast as the socket takes it
        except websockets.ConnectionClosed:
            pass
        code, _ = await caller.wait_closed(timeout=10)
        assert code == 1008
    calls, _ = await stored_calls(settings)
    assert [(c.state, c.reason) for c in calls] == [("error", "audio_too_fast")]


async def test_real_time_audio_is_accepted(tmp_path):
    settings = settings_for(tmp_path, inbound_burst_s=1.0)
    with running_server(settings, components=fake_components(script=[("work permit", "en")])) as (url, app):
        caller = await NativeCaller.connect(f"{url}/ws/call")
        await caller.send_json({"event": "call.start", "language": "en"})
        from fakes import silence, tone

        await caller.stream(tone(0.6) + silence(2.0), realtime=True)  # 2.6 s in real time, tolerance 1 s
        await caller.wait_event("answer", timeout=10)
        await caller.send_json({"event": "hangup"})
        assert (await caller.wait_closed())[0] == 1000


async def test_calls_over_the_limits_hear_an_apology_and_close_1013(tmp_path):
    settings = settings_for(tmp_path, max_calls=3, max_calls_per_address=2)
    with running_server(settings, components=fake_components()) as (url, app):
        first = [await NativeCaller.connect(f"{url}/ws/call") for _ in range(2)]
        for c in first:
            await c.wait_event("call.started")
        third = await NativeCaller.connect(f"{url}/ws/call")  # same address (127.0.0.1): over the per-address limit
        code, reason = await third.wait_closed()
        assert (code, reason) == (1013, "too_many_from_address")
        assert third.named("audio.start") and third.audio, "the refusal is spoken"
        assert not third.named("call.started")
        # Overall limit: with a third call connected from elsewhere, the next one from anywhere is refused.
        app.state.admission.by_address["198.51.100.7"] += 1  # a third call from elsewhere, already connected
        fourth = await NativeCaller.connect(f"{url}/ws/call")
        assert (await fourth.wait_closed())[0] == 1013
        assert any(e.get("code") == "busy" for e in fourth.named("error"))
        app.state.admission.leave("198.51.100.7")
        for c in first:
            await c.send_json({"event": "hangup"})
            await c.wait_closed()
        for _ in range(100):  # the server's side of the calls ends just after the close
            if app.state.admission.total == 0:
                break
            await asyncio.sleep(0.05)
        again = await NativeCaller.connect(f"{url}/ws/call")  # the slots are free again
        await again.wait_event("call.started")
        await again.send_json({"event": "hangup"})
        await again.wait_closed()
    calls, _ = await stored_calls(settings, wait_for=3)
    assert len(calls) == 3  # refused calls never became calls


async def test_control_events_are_rate_limited(tmp_path):
    settings = settings_for(tmp_path, control_events_burst=10, control_events_per_s=5.0)
    with running_server(settings, components=fake_components()) as (url, app):
        caller = await NativeCaller.connect(f"{url}/ws/call")
        await caller.wait_event("call.started")
        t0 = time.monotonic()
        for _ in range(300):
            await caller.send_json({"event": "dtmf", "digit": "5"})
        for _ in range(300):
            await caller.send_json({"event": "no.such.event"})
        elapsed = time.monotonic() - t0
        await caller.send_json({"event": "hangup"})
        await caller.wait_closed()
    calls, events = await stored_calls(settings)
    kinds = [e.kind for e in events[calls[0].id]]
    limit = 10 + 5.0 * (elapsed + 1.0)
    assert kinds.count("dtmf") + kinds.count("protocol_error") <= limit
    assert "ended" in kinds


async def test_twilio_refused_without_a_token_unless_allowed(tmp_path):
    settings = settings_for(tmp_path)
    with running_server(settings, components=fake_components()) as (url, app):
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(f"{url}/ws/twilio")
        assert refused.value.response.status_code == 403


async def test_twilio_identifiers_and_dtmf_are_checked_before_storing(tmp_path):
    settings = settings_for(tmp_path, twilio_allow_unsigned=True)
    with running_server(settings, components=fake_components()) as (url, app):
        caller = TwilioCaller(await websockets.connect(f"{url}/ws/twilio", max_size=None))
        await caller.start(custom={"caller_id": "+86" + "1" * 3036})
        await caller.ws.send('{"event":"dtmf","dtmf":{"digit":"<script>"}}')
        await caller.ws.send('{"event":"dtmf","dtmf":{"digit":"7"}}')
        await caller.ws.send('{"event":"media","media":"not an object"}')
        await caller.wait_event("mark")  # the greeting played: the call has begun
        await caller.stop()
        await caller.wait_closed()
    calls, events = await stored_calls(settings)
    (call,) = calls
    assert call.caller_id is not None and len(call.caller_id) <= 64
    assert call.state != "error"
    digits = [e.data["digit"] for e in events[call.id] if e.kind == "dtmf"]
    assert digits == ["7"]


# ---------------------------------------------------------------------------------------------- store and disk


async def test_recorder_queue_is_bounded_and_keeps_turns_and_the_end(tmp_path):
    from server.store.recorder import CallRecorder

    store = Store(url=f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    await store.migrate()
    gate = asyncio.Event()
    real_add_event = store.add_event

    async def slow_add_event(**kw):
        await gate.wait()
        await real_add_event(**kw)

    store.add_event = slow_add_event  # the database falls behind
    rec = CallRecorder(store=store, call_id="c" * 32, max_queue=50)
    rec.start()
    rec.call_started(protocol="native")
    for i in range(500):
        rec.event("dtmf", {"digit": "1"})
        if i % 100 == 0:
            rec.turn(speaker="caller", kind="utterance", text=f"turn {i}", language="en")
    assert rec.pending <= 50 + 5  # the essential jobs may exceed the bound, never the optional ones
    rec.end(state="caller_hangup", reason="hangup")
    gate.set()
    await rec.close()
    turns = await store.turns("c" * 32)
    call = await store.get_call("c" * 32)
    events = await store.events("c" * 32)
    await store.close()
    assert [t.text for t in turns] == [f"turn {i}" for i in range(0, 500, 100)]
    assert call.state == "caller_hangup"
    assert rec.dropped >= 400 and "ended" in [e.kind for e in events]


def test_recording_stops_at_its_size_cap():
    from server.people.live import Recording

    clock = [0.0]
    rec = Recording(clock=lambda: clock[0], max_bytes=64_000)
    for _ in range(200):
        rec.caller_audio(b"\x00\x01" * 320)
        clock[0] += 0.02
        rec.line_audio(b"\x00\x02" * 320)
    assert rec.truncated
    assert len(rec.mix()) * 2 <= 64_000


def test_old_recordings_are_deleted(tmp_path):
    from server.people.retention import prune_recordings

    now = time.time()
    old, new, part, other = (tmp_path / n for n in ("a.wav", "b.wav", "c.wav.part", "notes.txt"))
    for p in (old, new, part, other):
        p.write_bytes(b"x")
    for p in (old, part, other):
        os.utime(p, (now - 10 * 86400, now - 10 * 86400))
    assert prune_recordings(tmp_path, max_age_s=7 * 86400, now=now) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.wav", "notes.txt"]
    assert prune_recordings(tmp_path, max_age_s=None, now=now) == 0
