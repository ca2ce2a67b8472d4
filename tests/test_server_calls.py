"""The call service over real websockets, with scripted fakes of the models (fast tier).

The server runs on uvicorn in a thread; callers connect with the `websockets` client, as a browser or Twilio would.
"""
from __future__ import annotations

import asyncio
import base64
import dataclasses
import os
import socket
import time
from pathlib import Path

import httpx
import pytest
import websockets

from server.settings import Settings
from server.store import Store
from fakes import FakeSynthesizer, fake_components, silence, tone
from serving import running_server
from wsclient import NativeCaller, TwilioCaller


SCRAPER_TOKEN = "test-scraper-token"  # /metrics is not public: a scraper sends this
SCRAPER = {"Authorization": f"Bearer {SCRAPER_TOKEN}"}


def make_settings(tmp_path: Path, **overrides) -> Settings:
    # twilio_allow_unsigned: these tests play Twilio without a signing token (one test sets a token).
    base = dict(db_url=f"sqlite+aiosqlite:///{tmp_path / 'calls.db'}", pace_audio=False, start_timeout_s=0.3,
                no_input_s=30.0, log_json=False, twilio_allow_unsigned=True, metrics_token=SCRAPER_TOKEN)
    base.update(overrides)
    return Settings(**base)


async def stored(settings: Settings, call_id: str):
    store = Store(url=settings.db_url)
    try:
        for _ in range(100):  # the recorder drains just after call.ended is sent
            call = await store.get_call(call_id)
            if call is not None and call.ended_at is not None:
                break
            await asyncio.sleep(0.05)
        return call, await store.turns(call_id), await store.events(call_id)
    finally:
        await store.close()


async def greeted(caller: NativeCaller, languages: int = 2) -> None:
    await caller.wait_event("audio.end", count=languages)
    await asyncio.sleep(0.5)  # let the (unpaced) greeting finish "playing" so the question is not a barge-in


async def ask(caller: NativeCaller, seconds: float = 0.6, *, realtime: bool = False) -> None:
    await caller.stream(tone(seconds) + silence(0.5), realtime=realtime)


def stalled_client(url: str) -> socket.socket:
    """A caller that upgrades to a websocket and then never reads: a tiny receive buffer fills at once."""
    port = int(url.rsplit(":", 1)[1])
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /ws/call HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    assert sock.recv(12) == b"HTTP/1.1 101"
    return sock


async def wait_idle(app, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while app.state.context.sessions and time.monotonic() < deadline:
        await asyncio.sleep(0.02)


# ---------------------------------------------------------------------------------------------- native protocol


async def test_english_call_greets_answers_and_is_stored(tmp_path):
    settings = make_settings(tmp_path)
    comps = fake_components(script=[("how do I get a work permit", "en")])
    with running_server(settings, components=comps) as (url, app):
        caller = await NativeCaller.connect(f"{url}/ws/call")
        await caller.send_json({"event": "call.start", "language": "en", "caller_id": "+8613800000000"})
        started = await caller.wait_event("call.started")
        assert started["languages"] == ["en", "zh"]
        greetings = [await caller.wait_event("audio.start", count=i) for i in (1, 2)]
        assert [g["language"] for g in greetings] == ["en", "zh"]  # the hint's language first, then the other
        await greeted(caller)
        frames_before = len(caller.audio)
        await ask(caller, realtime=True)  # in real time, so partial transcripts have time to arrive
        final = await caller.wait_event("transcript.final")
        assert final["language"] == "en" and final["end"] > final["start"]
        answer = await caller.wait_event("answer")
        assert (answer["route"], answer["topic"], answer["language"]) == ("answer", "work_permit_apply", "en")
        start = await caller.wait_event("audio.start", count=3)
        end = await caller.wait_event("audio.end", turn=start["turn"])
        assert end["interrupted"] is False
        assert len(caller.audio) > frames_before and len(caller.audio) % 2 == 0
        assert caller.named("transcript.partial"), "partials are sent while the caller speaks"
        await caller.send_json({"event": "hangup"})
        ended = await caller.wait_event("call.ended")
        assert (ended["state"], ended["reason"]) == ("caller_hangup", "hangup")
        code, _ = await caller.wait_closed()
        assert code == 1000
        await wait_idle(app)
        assert app.state.context.sessions == {}

    call, turns, events = await stored(settings, started["call_id"])
    assert (call.state, call.reason, call.protocol) == ("caller_hangup", "hangup", "native")
    assert call.caller_id == "+8613800000000" and call.language == "en"
    assert [(t.speaker, t.kind) for t in turns] == [("bot", "prompt"), ("bot", "prompt"), ("caller", "utterance"), ("bot", "answer")]
    assert all(t.language in ("en", "zh") for t in turns)
    assert [t.seq for t in turns] == sorted(t.seq for t in turns)
    caller_turn, answer_turn = turns[2], turns[3]
    assert caller_turn.text == "how do I get a work permit" and caller_turn.recognition_s is not None
    assert (answer_turn.route, answer_turn.topic, answer_turn.language) == ("answer", "work_permit_apply", "en")
    assert answer_turn.response_s is not None and answer_turn.synthesis_s is not None
    assert [e.kind for e in events][0] == "started" and events[-1].kind == "ended"


async def test_mandarin_question_gets_mandarin_answer(tmp_path):
    settings = make_settings(tmp_path)
    comps = fake_components(script=[("我想申请工作许可", "zh")])
    with running_server(settings, components=comps) as (url, app):
        caller = await NativeCaller.connect(f"{url}/ws/call")
        await caller.send_json({"event": "call.start"})
        await greeted(caller)
        await ask(caller)
        answer = await caller.wait_event("answer")
        assert (answer["language"], answer["topic"]) == ("zh", "work_permit_apply")
        speech = await caller.wait_event("audio.start", count=3)
        assert speech["language"] == "zh"
        await caller.close()


async def test_unserved_language_gets_the_prompt_and_is_queued(tmp_path):
    settings = make_settings(tmp_path)
    comps = fake_components(script=[("うちの中学は弁当制で", "other:ja")])
    with running_server(settings, components=comps) as (url, app):
        caller = await NativeCaller.connect(f"{url}/ws/call")
        started = await caller.wait_event("call.started")
        await greeted(caller)
        await ask(caller)
        final = await caller.wait_event("transcript.final")
        assert (final["language"], final["language_code"]) == ("other", "ja")
        answer = await caller.wait_event("answer")
        assert answer["route"] == "agent"
        # The bilingual prompt is spoken by both voices: one English segment, one Mandarin.
        segments = [await caller.wait_event("audio.start", count=i) for i in (3, 4)]
        assert [s["language"] for s in segments] == ["en", "zh"]
        waiting = app.state.context.queue.waiting()
        assert [(t.call_id, t.language) for t in waiting] == [(started["call_id"], "other:ja")]
        await caller.send_json({"event": "hangup"})
        ended = await caller.wait_event("call.ended")
        assert ended["state"] == "transferred_to_agent"
        await wait_idle(app)
        assert app.state.context.queue.waiting() == []
    call, turns, events = await stored(settings, started["call_id"])
    assert call.state == "transferred_to_agent" and call.queue_language == "other:ja"
    assert "queued" in [e.kind for e in events]


async def test_barge_in_stops_the_answer_and_listens(tmp_path):
    # Paced like a real call: the 3 s answer is still playing when the caller speaks again.
    settings = make_settings(tmp_path, pace_audio=True, playback_lead_s=0.2)
    synth = FakeSynthesizer(seconds_per_char=0.2, max_seconds=3.0)
    comps = fake_components(script=[("work permit please", "en"), ("another permit question", "en")], synthesizer=synth)
    with running_server(settings, components=comps) as (url, app):
        caller = await NativeCaller.connect(f"{url}/ws/call")
        started = await caller.wait_event("call.started")
        await caller.wait_event("audio.end", count=2, timeout=20)
        await asyncio.sleep(3.2)
        await ask(caller)
        answer_start = await caller.wait_event("audio.start", count=3, timeout=10)
        await asyncio.sleep(0.5)
        t_speak = time.monotonic()
        await caller.stream(tone(0.4))
        clear = await caller.wait_event("audio.clear")
        assert clear["turn"] == answer_start["turn"]
        assert clear["_t"] - t_speak < 1.0  # stopped at once (figure, not a benchmark: generous bound)
        end = await caller.wait_event("audio.end", turn=answer_start["turn"])
        assert end["interrupted"] is True
        await caller.stream(silence(0.5))
        second = await caller.wait_event("transcript.final", count=2)
        assert second["text"] == "another permit question"
        await caller.send_json({"event": "hangup"})
        await caller.wait_closed()
    _, turns, events = await stored(settings, started["call_id"])
    interrupted = [t for t in turns if t.seq == answer_start["turn"]][0]
    assert interrupted.interrupted and 0 < interrupted.played_s < 3.0
    assert "barge_in" in [e.kind for e in events]


async def test_no_input_reprompts_then_says_goodbye(tmp_path):
    settings = make_settings(tmp_path, no_input_s=0.6, no_input_reprompts=1)
    comps = fake_components()
    with running_server(settings, components=comps) as (url, app):
        caller = await NativeCaller.connect(f"{url}/ws/call")
        started = await caller.wait_event("call.started")
        reprompt = await caller.wait_event("audio.start", count=3, timeout=10)
        assert reprompt["text"] == "Are you still there?"
        goodbye = await caller.wait_event("audio.start", count=4, timeout=10)
        assert goodbye["text"] == "Goodbye."
        ended = await caller.wait_event("call.ended", timeout=10)
        assert (ended["state"], ended["reason"]) == ("no_input", "no_input")
        await caller.wait_closed()
    call, _, _ = await stored(settings, started["call_id"])
    assert call.state == "no_input"


async def test_bad_input_on_the_native_socket(tmp_path):
    settings = make_settings(tmp_path)
    comps = fake_components(script=[("work permit", "en")])
    with running_server(settings, components=comps) as (url, app):
        caller = await NativeCaller.connect(f"{url}/ws/call")
        await caller.wait_event("call.started")
        await caller.ws.send("{not json")
        assert (await caller.wait_event("error", count=1))["code"] == "bad_json"
        await caller.ws.send('["a list"]')
        assert (await caller.wait_event("error", count=2))["code"] == "bad_json"
        await caller.send_json({"event": "teleport"})
        assert (await caller.wait_event("error", count=3))["code"] == "unknown_event"
        await caller.ws.send(b"\x00" * 641)
        assert (await caller.wait_event("error", count=4))["code"] == "bad_audio"
        await caller.ws.send(b"\x00" * (70 * 1024))
        assert (await caller.wait_event("error", count=5))["code"] == "frame_too_large"
        await caller.send_json({"event": "dtmf", "digit": "xx"})
        assert (await caller.wait_event("error", count=6))["code"] == "bad_event"
        # After all that the call still works.
        await greeted(caller)
        await ask(caller)
        assert (await caller.wait_event("answer"))["topic"] == "work_permit_apply"
        # An absurd frame closes the connection with 1009 (message too big), and the call is recorded.
        await caller.ws.send(b"\x00" * (2 * 1024 * 1024))
        code, _ = await caller.wait_closed()
        assert code == 1009
        await wait_idle(app)
        assert app.state.context.sessions == {}


async def test_wrong_sample_rate_is_refused_with_1003(tmp_path):
    settings = make_settings(tmp_path, start_timeout_s=5.0)
    with running_server(settings, components=fake_components()) as (url, app):
        caller = await NativeCaller.connect(f"{url}/ws/call")
        await caller.send_json({"event": "call.start", "sample_rate": 8000})
        error = await caller.wait_event("error")
        assert error["code"] == "unsupported_sample_rate"
        ended = await caller.wait_event("call.ended")
        assert (ended["state"], ended["reason"]) == ("error", "unsupported_sample_rate")
        code, _ = await caller.wait_closed()
        assert code == 1003
        assert not caller.named("call.started")


async def test_slow_consumer_is_dropped_and_other_calls_go_on(tmp_path):
    settings = make_settings(tmp_path, send_timeout_s=1.0, send_queue_max=64)
    # A huge greeting: megabytes of audio the stalled client never reads.
    synth = FakeSynthesizer(seconds_per_char=10.0, max_seconds=240.0)
    with running_server(settings, components=fake_components(synthesizer=synth)) as (url, app):
        stalled = stalled_client(url)
        healthy = await NativeCaller.connect(f"{url}/ws/call")
        await healthy.send_json({"event": "call.start"})
        await healthy.wait_event("call.started")
        await healthy.wait_event("audio.start")

        def stalled_gone(_):
            return len(app.state.context.sessions) == 1

        await healthy.wait_for(stalled_gone, timeout=40)
        # The healthy call was never blocked: it is still connected and receiving.
        assert healthy.closed is None and healthy.frames > 0
        await healthy.send_json({"event": "hangup"})
        ended = await healthy.wait_event("call.ended", timeout=20)
        assert ended["state"] == "caller_hangup"
        stalled.close()
    store = Store(url=settings.db_url)
    try:
        calls = await store.calls()
    finally:
        await store.close()
    assert sorted((c.state, c.reason) for c in calls) == [("caller_hangup", "hangup"), ("dropped", "slow_consumer")]


async def test_connection_dropped_mid_answer_keeps_finished_turns(tmp_path):
    settings = make_settings(tmp_path, pace_audio=True, playback_lead_s=0.2)
    synth = FakeSynthesizer(seconds_per_char=0.2, max_seconds=4.0)
    comps = fake_components(script=[("work permit", "en")], synthesizer=synth)
    with running_server(settings, components=comps) as (url, app):
        caller = await NativeCaller.connect(f"{url}/ws/call")
        await caller.send_json({"event": "call.start", "language": "en"})
        started = await caller.wait_event("call.started")
        await caller.wait_event("audio.end", count=2, timeout=20)
        await asyncio.sleep(4.2)
        await ask(caller)
        await caller.wait_event("audio.start", count=3, timeout=10)
        await asyncio.sleep(0.3)
        caller.ws.transport.abort()  # no close handshake: a cut line
        await wait_idle(app, timeout=10)
        assert app.state.context.sessions == {}
        assert app.state.context.pools.recognition.pending == 0
    call, turns, _ = await stored(settings, started["call_id"])
    assert (call.state, call.reason) == ("dropped", "connection_closed")
    kinds = [(t.speaker, t.kind, t.interrupted) for t in turns]
    assert kinds[:3] == [("bot", "prompt", False), ("bot", "prompt", False), ("caller", "utterance", False)]
    assert kinds[3] == ("bot", "answer", True)  # cut off while playing: stored as interrupted


# ---------------------------------------------------------------------------------------------- Twilio protocol


async def test_twilio_stream_answers_with_media_and_marks(tmp_path):
    settings = make_settings(tmp_path)
    comps = fake_components(script=[("work permit question", "en")])
    with running_server(settings, components=comps) as (url, app):
        caller = TwilioCaller(await websockets.connect(f"{url}/ws/twilio", max_size=None))
        await caller.start(custom={"caller_id": "+8613900000000"})
        mark = await caller.wait_event("mark", count=2)  # one mark after each greeting
        assert mark["streamSid"] == TwilioCaller.stream_sid and mark["mark"]["name"].startswith("turn-")
        media = caller.named("media")
        assert media and all(m["streamSid"] == TwilioCaller.stream_sid and set(m) - {"_t"} == {"event", "streamSid", "media"} for m in media)
        assert len(caller.mulaw) > 0
        await asyncio.sleep(0.5)
        await caller.stream(tone(0.6) + silence(0.5))
        await caller.wait_event("mark", count=3)
        session = next(iter(app.state.context.sessions.values()))
        call_id = session.call_id
        await caller.stop()
        await caller.wait_closed()
    call, turns, _ = await stored(settings, call_id)
    assert (call.protocol, call.state, call.reason) == ("twilio", "caller_hangup", "stop")
    assert call.carrier_call_id == TwilioCaller.call_sid and call.stream_id == TwilioCaller.stream_sid
    answer = [t for t in turns if t.kind == "answer"][0]
    assert (answer.topic, answer.language) == ("work_permit_apply", "en")


async def test_twilio_bad_input(tmp_path):
    settings = make_settings(tmp_path)
    with running_server(settings, components=fake_components()) as (url, app):
        # Garbage and unknown events are ignored (Twilio has no error message); the stream goes on.
        caller = TwilioCaller(await websockets.connect(f"{url}/ws/twilio", max_size=None))
        await caller.ws.send("{nope")
        await caller.send_json({"event": "bogus"})
        await caller.start()
        await caller.wait_event("mark", count=1)
        await caller.ws.send(b"\x01\x02")  # binary where Twilio only sends text
        code, _ = await caller.wait_closed()
        assert code == 1003
        # A media format other than μ-law 8 kHz is refused.
        other = TwilioCaller(await websockets.connect(f"{url}/ws/twilio", max_size=None))
        await other.start(fmt={"encoding": "audio/l16", "sampleRate": 16000, "channels": 1})
        code, _ = await other.wait_closed()
        assert code == 1003
        await wait_idle(app)
    store = Store(url=settings.db_url)
    try:
        reasons = sorted(c.reason for c in await store.calls())
    finally:
        await store.close()
    assert reasons == ["binary_frame", "unsupported_media_format"]


async def test_twilio_signature_is_checked_before_accept(tmp_path):
    from server.call.transports.twilio import twilio_signature

    settings = make_settings(tmp_path, twilio_auth_token="secret-token")
    with running_server(settings, components=fake_components()) as (url, app):
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(f"{url}/ws/twilio")
        assert refused.value.response.status_code == 403
        with pytest.raises(websockets.InvalidStatus):
            await websockets.connect(f"{url}/ws/twilio", additional_headers={"X-Twilio-Signature": "bm90IGl0"})
        good = twilio_signature("secret-token", f"{url}/ws/twilio")
        caller = TwilioCaller(await websockets.connect(f"{url}/ws/twilio", additional_headers={"X-Twilio-Signature": good}))
        await caller.start()
        await caller.wait_event("mark")
        await caller.stop()
        await caller.wait_closed()


# ---------------------------------------------------------------------------------------------- operations


async def test_readyz_waits_for_models_and_metrics_count_calls(tmp_path):
    import threading

    gate = threading.Event()
    comps = fake_components(script=[("work permit", "en")])

    def slow_loader(_settings):
        gate.wait(30)
        return comps

    settings = make_settings(tmp_path)
    import contextlib

    from serving import free_port

    # Start without waiting for readiness, check 503 + refusal, then release the loader.
    async def probe(base: str) -> None:
        async with httpx.AsyncClient() as client:
            for _ in range(100):
                try:
                    r = await client.get(f"{base}/healthz")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
            assert r.status_code == 200
            r = await client.get(f"{base}/readyz")
            assert r.status_code == 503 and r.json()["status"] == "loading"

    import uvicorn

    from server.app import create_app
    from server.commands import uvicorn_config

    port = free_port()
    app = create_app(settings, components=slow_loader, configure_logs=False)
    server = uvicorn.Server(uvicorn_config(app, settings, port=port))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{port}"
        await probe(base)
        ws = await websockets.connect(f"ws://127.0.0.1:{port}/ws/call")
        with contextlib.suppress(websockets.ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 1013  # not ready: try again later
        gate.set()
        async with httpx.AsyncClient() as client:
            for _ in range(100):
                if (await client.get(f"{base}/readyz")).status_code == 200:
                    break
                await asyncio.sleep(0.05)
            caller = await NativeCaller.connect(f"ws://127.0.0.1:{port}/ws/call")
            await greeted(caller)
            text = (await client.get(f"{base}/metrics", headers=SCRAPER)).text
            assert 'hotline_calls_in_progress{protocol="native"} 1.0' in text
            await ask(caller)
            await caller.wait_event("answer")
            await caller.send_json({"event": "hangup"})
            await caller.wait_closed()
            await asyncio.sleep(0.2)
            text = (await client.get(f"{base}/metrics", headers=SCRAPER)).text
        assert 'hotline_calls_in_progress{protocol="native"} 0.0' in text
        assert 'hotline_calls_total{protocol="native",state="caller_hangup"} 1.0' in text
        assert 'hotline_stage_latency_seconds_count{stage="routing"} 1.0' in text
        assert 'hotline_pool_queue_depth{pool="recognition"} 0.0' in text
    finally:
        gate.set()
        server.should_exit = True
        thread.join(timeout=30)


async def test_a_slow_uncached_answer_is_preceded_by_one_moment_reported_apart(tmp_path):
    from routing.prompts import Prompts
    from fakes import PROMPTS

    prompts = Prompts.parse({"prompts": {**PROMPTS["prompts"], "one_moment": {"en": "One moment.", "zh": "好的，请稍等。"}}},
                            where="tests")
    spoken = {text for variants in prompts.texts.values() for text in variants.values()}

    class SlowAnswers(FakeSynthesizer):
        def is_cached(self, text: str, language: str) -> bool:
            return text in spoken  # the prompts are cached before ready; answers are not

        def synthesize(self, text: str, language: str):
            if not self.is_cached(text, language):
                time.sleep(1.5)  # an uncached answer on a busy machine
            yield from super().synthesize(text, language)

    settings = make_settings(tmp_path, acknowledge_after_s=0.3)
    comps = fake_components(script=[("how do I get a work permit", "en")], synthesizer=SlowAnswers())
    comps.prompts = prompts
    with running_server(settings, components=comps) as (url, app):
        caller = await NativeCaller.connect(f"{url}/ws/call")
        await caller.send_json({"event": "call.start", "language": "en"})
        started = await caller.wait_event("call.started")
        await greeted(caller)
        await ask(caller)
        answer = await caller.wait_event("answer")
        ack = await caller.wait_event("audio.start", count=3)
        assert ack["text"] == "One moment."
        ack_end = await caller.wait_event("audio.end", turn=ack["turn"])
        said = await caller.wait_event("audio.start", count=4, timeout=20)
        assert said["text"] == answer["text"]
        said_end = await caller.wait_event("audio.end", turn=said["turn"], timeout=20)
        assert "ack_ms" in ack_end["timings"] and "response_ms" not in ack_end["timings"]
        assert said_end["timings"]["response_ms"] > ack_end["timings"]["ack_ms"] + 500  # the answer's own audio
        await caller.close()
        await wait_idle(app)
    _, turns, _ = await stored(settings, started["call_id"])
    kinds = [t.kind for t in turns if t.speaker == "bot"]
    assert "acknowledgement" in kinds and "answer" in kinds


class SlowSynthesizer(FakeSynthesizer):
    """Every synthesis takes `delay` seconds: an uncached answer on a slow machine."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    def synthesize(self, text: str, language: str):
        time.sleep(self.delay)
        yield from super().synthesize(text, language)


async def _one_question(url: str, speech_s: float) -> tuple[NativeCaller, dict, dict, dict]:
    """Greeted, then one question of `speech_s` spoken in real time: the caller, the `answer` event, and the
    answer's `audio.start` and `audio.end`."""
    caller = await NativeCaller.connect(f"{url}/ws/call")
    await caller.send_json({"event": "call.start", "language": "en"})
    await caller.wait_event("call.started")
    await greeted(caller)
    await caller.stream(tone(speech_s) + silence(0.6), realtime=True)
    answer = await caller.wait_event("answer", timeout=10)
    said = await caller.wait_event("audio.start", count=3, timeout=10)
    end = await caller.wait_event("audio.end", turn=said["turn"], timeout=10)
    return caller, answer, said, end


async def test_an_answer_decided_from_the_partial_transcript_is_synthesized_before_the_final(tmp_path):
    """Preemptive synthesis: the partial "permit renewal" is already answered by the work-permit entry, so that
    answer's first chunk is synthesized while the caller is still speaking; the final transcript gets the same
    answer and the caller hears it without waiting for a second synthesis."""
    synth = SlowSynthesizer(delay=1.0)
    settings = make_settings(tmp_path, acknowledge_after_s=None)
    comps = fake_components(script=[("permit renewal please", "en")], synthesizer=synth)
    with running_server(settings, components=comps) as (url, app):
        caller, answer, said, end = await _one_question(url, 1.6)
        assert answer["route"] == "answer" and answer["timings"]["preempted"] == 1.0
        assert said["text"] == answer["text"]
        # Started during the speech, a second before its end: less than the 1 s synthesis is left to wait for.
        assert end["timings"]["response_ms"] < 1000
        assert [t for t, _ in synth.calls].count(answer["text"]) == 1  # synthesized once, not again for the final
        await caller.close()
        await wait_idle(app)
    metrics = app.state.context.metrics.preemptive_syntheses
    assert metrics.labels(outcome="used")._value.get() == 1


async def test_a_preemptive_synthesis_for_another_answer_is_dropped(tmp_path):
    """The partials ("permit renewal") and the final ("how much does a visa cost") are answered differently: the
    caller hears the final's answer, never the preempted one, and the preempted work is counted as dropped."""
    synth = SlowSynthesizer(delay=0.3)
    settings = make_settings(tmp_path, acknowledge_after_s=None)
    comps = fake_components(script=[("permit renewal", "en")], synthesizer=synth)
    comps.make_transcriber = _scripted_final(comps.make_transcriber, "how much does a visa cost")
    with running_server(settings, components=comps) as (url, app):
        caller, answer, said, _ = await _one_question(url, 1.0)
        assert answer["text"] == "We answer questions about work permits." and answer["timings"]["preempted"] == 0.0
        assert said["text"] == answer["text"]
        assert "Apply online with your employer." in [t for t, _ in synth.calls]  # preempted, then dropped
        assert "Apply online with your employer." not in [e["text"] for e in caller.named("audio.start")]
        await caller.close()
        await wait_idle(app)
    metrics = app.state.context.metrics.preemptive_syntheses
    assert metrics.labels(outcome="dropped")._value.get() >= 1
    assert metrics.labels(outcome="used")._value.get() == 0


async def test_no_preemptive_synthesis_when_it_is_turned_off(tmp_path):
    synth = SlowSynthesizer(delay=0.3)
    settings = make_settings(tmp_path, acknowledge_after_s=None, preemptive_synthesis=False)
    comps = fake_components(script=[("permit renewal please", "en")], synthesizer=synth)
    with running_server(settings, components=comps) as (url, app):
        caller, answer, _, end = await _one_question(url, 1.6)
        assert answer["timings"]["preempted"] == 0.0
        assert end["timings"]["response_ms"] >= 300  # the whole synthesis after the final
        await caller.close()
        await wait_idle(app)


def _scripted_final(make, final_text: str):
    """Transcribers whose partials say what the script says first, and whose final says `final_text`."""
    def build(hint):
        transcriber = make(hint)
        plain_final = transcriber.final

        def final(req):
            t = plain_final(req)
            return None if t is None else dataclasses.replace(t, text=final_text)
        transcriber.final = final
        return transcriber
    return build


async def test_no_acknowledgement_when_the_answer_is_expected_before_it_would_end(tmp_path):
    """The answer waits behind an acknowledgement until it has been said. Once the call has seen how long its
    synthesis takes, a "One moment." that would end after the answer is ready is left out: the caller hears the
    answer sooner. The first slow answer (nothing learnt yet) still gets one."""
    from routing.prompts import Prompts
    from fakes import PROMPTS

    prompts = Prompts.parse({"prompts": {**PROMPTS["prompts"], "one_moment": {"en": "One moment.", "zh": "好的，请稍等。"}}},
                            where="tests")
    spoken = {text for variants in prompts.texts.values() for text in variants.values()}

    class SomewhatSlowAnswers(FakeSynthesizer):
        def is_cached(self, text: str, language: str) -> bool:
            return text in spoken

        def synthesize(self, text: str, language: str):
            if not self.is_cached(text, language):
                time.sleep(0.6)  # ready well before a 1.1 s acknowledgement would end
            yield from super().synthesize(text, language)

    settings = make_settings(tmp_path, acknowledge_after_s=0.3)
    comps = fake_components(script=[("how do I get a work permit", "en"), ("how do I get a work permit", "en")],
                            synthesizer=SomewhatSlowAnswers(seconds_per_char=0.1))  # "One moment.": 1.1 s
    comps.prompts = prompts
    with running_server(settings, components=comps) as (url, app):
        caller = await NativeCaller.connect(f"{url}/ws/call")
        await caller.send_json({"event": "call.start", "language": "en"})
        await caller.wait_event("call.started")
        await greeted(caller)
        await ask(caller)
        first = await caller.wait_event("answer")
        ack = await caller.wait_event("audio.start", count=3)
        assert ack["text"] == "One moment."  # nothing learnt yet: acknowledged
        said = await caller.wait_event("audio.start", count=4, timeout=20)
        assert said["text"] == first["text"]
        await caller.wait_event("audio.end", turn=said["turn"], timeout=20)
        await asyncio.sleep(0.5)
        await ask(caller)
        await caller.wait_event("answer", count=2)
        again = await caller.wait_event("audio.start", count=5, timeout=20)
        assert again["text"] == first["text"]  # the answer itself, no "One moment." before it
        again_end = await caller.wait_event("audio.end", turn=again["turn"], timeout=20)
        assert "response_ms" in again_end["timings"]
        assert [e["text"] for e in caller.named("audio.start")].count("One moment.") == 1
        await caller.close()
        await wait_idle(app)
