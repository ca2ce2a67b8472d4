"""Unit tests of the call service's pure parts: policies, serializers, signatures, settings, logs, pools."""
from __future__ import annotations

import asyncio
import base64
import json
import logging
import threading

import numpy as np
import pytest
from pydantic import ValidationError

from server.logging import CallIdFilter, JsonFormatter, call_id_var
from server.call.messages import AudioClear, AudioEnd, AudioIn, AudioOut, DtmfIn, HangupIn, PlaybackMark, ProtocolError, StartCall
from server.call.turn_taking import NoInputPolicy, split_by_language
from server.call.pools import BoundedPool, Overloaded
from server.settings import Settings
from server.call.transports.native import NativeSerializer
from server.call.transports.twilio import StreamResampler, TwilioSerializer, signature_valid, twilio_signature
from voice.audio import resample

# ------------------------------------------------------------------ no-input policy on a virtual clock


def test_no_input_reprompts_then_goodbye_only_when_idle():
    p = NoInputPolicy(silence_s=5.0, reprompts=1)
    assert p.tick(0.0, idle=True) == "wait"
    assert p.tick(4.9, idle=True) == "wait"
    assert p.tick(5.0, idle=True) == "reprompt"
    # While the re-prompt plays the line is not idle: no time counts.
    assert p.tick(6.0, idle=False) == "wait"
    assert p.tick(100.0, idle=False) == "wait"
    assert p.tick(101.0, idle=True) == "wait"
    assert p.tick(105.9, idle=True) == "wait"
    assert p.tick(106.0, idle=True) == "goodbye"
    assert p.tick(200.0, idle=True) == "wait"  # said once


def test_caller_speech_resets_the_reprompts():
    p = NoInputPolicy(silence_s=1.0, reprompts=1)
    p.tick(0.0, idle=True)
    assert p.tick(1.0, idle=True) == "reprompt"
    p.caller_spoke()
    p.tick(2.0, idle=True)
    assert p.tick(3.0, idle=True) == "reprompt"  # a fresh re-prompt, not the goodbye


def test_split_by_language_keeps_one_language_answers_whole():
    assert [s.language for s in split_by_language("Hello. How are you? Fine.", "en")] == ["en"]
    assert [s.language for s in split_by_language("请稍候。我为您转接 A 类人工。", "zh")] == ["zh"]
    segs = split_by_language("Sorry, we serve English and Mandarin. Please hold. 抱歉，我们只提供英语和普通话服务。", "en")
    assert [s.language for s in segs] == ["en", "zh"]
    assert "".join(s.text for s in segs).replace(" ", "") == "Sorry,weserveEnglishandMandarin.Pleasehold.抱歉，我们只提供英语和普通话服务。"


# ------------------------------------------------------------------ native serializer


def test_native_parses_every_client_event_and_refuses_garbage():
    n = NativeSerializer()
    assert n.parse_text('{"event":"call.start","language":"zh","caller_id":"x"}') == [StartCall(language="zh", caller_id="x")]
    assert n.parse_text('{"event":"hangup"}') == [HangupIn("hangup")]
    assert n.parse_text('{"event":"dtmf","digit":"#"}') == [DtmfIn("#")]
    for bad, code in (("nope", "bad_json"), ("[1]", "bad_json"), ('{"event":"x"}', "unknown_event"),
                      ('{"no":"event"}', "unknown_event"), ('{"event":"call.start","language":"fr"}', "bad_event"),
                      ("[" * 100000, "bad_json")):
        (msg,) = n.parse_text(bad)
        assert isinstance(msg, ProtocolError) and msg.code == code and msg.close_code is None
    (rate,) = n.parse_text('{"event":"call.start","sample_rate":8000}')
    assert rate.code == "unsupported_sample_rate" and rate.close_code == 1003
    assert n.parse_binary(b"\x00" * 640) == [AudioIn(b"\x00" * 640)]
    assert n.parse_binary(b"\x00" * 3)[0].code == "bad_audio"
    assert n.parse_binary(b"\x00" * (64 * 1024 + 2))[0].code == "frame_too_large"


def test_native_outbound_events_are_json_with_event_names():
    n = NativeSerializer()
    (frame,) = n.serialize(AudioOut(pcm16=b"\x01\x00" * 320, turn=1))
    assert frame == b"\x01\x00" * 320
    assert json.loads(n.serialize(AudioClear(turn=3))[0]) == {"event": "audio.clear", "turn": 3}
    assert json.loads(n.serialize(AudioEnd(turn=3, interrupted=True))[0]) == {"event": "audio.end", "turn": 3, "interrupted": True}


# ------------------------------------------------------------------ Twilio serializer


def _start(fmt=None) -> str:
    return json.dumps({"event": "start", "sequenceNumber": "1", "streamSid": "MZ1",
                       "start": {"accountSid": "AC1", "streamSid": "MZ1", "callSid": "CA1", "tracks": ["inbound"],
                                 "customParameters": {"language": "zh"},
                                 "mediaFormat": fmt or {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}})


def test_twilio_inbound_events():
    t = TwilioSerializer()
    assert t.parse_text('{"event":"connected","protocol":"Call","version":"1.0.0"}')[0].event == "connected"
    (start,) = t.parse_text(_start())
    assert (start.stream_id, start.carrier_call_id, start.language) == ("MZ1", "CA1", "zh")
    payload = base64.b64encode(b"\xff" * 160).decode()  # μ-law silence, 20 ms
    media = json.dumps({"event": "media", "sequenceNumber": "2", "streamSid": "MZ1",
                        "media": {"track": "inbound", "chunk": "1", "timestamp": "0", "payload": payload}})
    audio = [m for _ in range(3) for m in t.parse_text(media)]
    assert all(isinstance(m, AudioIn) for m in audio)
    assert sum(len(m.pcm16) for m in audio) == 3 * 640 - 64 * 2 * 2  # 16 kHz PCM16, minus the 4 ms held back
    assert t.parse_text('{"event":"dtmf","streamSid":"MZ1","dtmf":{"track":"inbound_track","digit":"5"}}') == [DtmfIn("5")]
    assert t.parse_text('{"event":"mark","streamSid":"MZ1","mark":{"name":"turn-2"}}') == [PlaybackMark("turn-2")]
    assert t.parse_text('{"event":"stop","streamSid":"MZ1","stop":{"accountSid":"AC1","callSid":"CA1"}}') == [HangupIn("stop")]
    assert t.parse_text('{"event":"media","media":{"payload":"!!"}}')[0].code == "bad_audio"
    assert t.parse_text('{"event":"media"}')[0].code == "bad_event"
    assert t.parse_binary(b"\x00")[0].close_code == 1003
    (bad,) = TwilioSerializer().parse_text(_start({"encoding": "audio/l16", "sampleRate": 16000, "channels": 1}))
    assert bad.code == "unsupported_media_format" and bad.close_code == 1003


def test_twilio_outbound_media_mark_and_clear_carry_the_stream_sid():
    t = TwilioSerializer()
    t.parse_text(_start())
    pcm = (np.sin(np.arange(3200) / 5) * 8000).astype("<i2").tobytes()
    out = [json.loads(f) for i in range(0, len(pcm), 640) for f in t.serialize(AudioOut(pcm16=pcm[i:i + 640], turn=1))]
    out += [json.loads(f) for f in t.serialize(AudioEnd(turn=1))]
    assert all(m["streamSid"] == "MZ1" for m in out)
    assert out[-1] == {"event": "mark", "streamSid": "MZ1", "mark": {"name": "turn-1"}}
    mulaw = b"".join(base64.b64decode(m["media"]["payload"]) for m in out if m["event"] == "media")
    assert len(mulaw) == 1600  # 200 ms at 8 kHz: nothing lost, nothing added
    assert [json.loads(f) for f in t.serialize(AudioClear(turn=1))] == [{"event": "clear", "streamSid": "MZ1"}]


def test_stream_resampler_matches_whole_signal_resampling():
    x = (0.5 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)).astype(np.float32)
    r = StreamResampler(16000, 8000)
    pieces = [r.push(x[i:i + 320]) for i in range(0, len(x), 320)] + [r.flush()]
    np.testing.assert_allclose(np.concatenate(pieces), resample(x, 16000, 8000), atol=1e-5)


def test_twilio_signature_depends_on_url_token_and_params_not_their_order():
    sig = twilio_signature("tok", "wss://h/ws/twilio", {"b": "2", "a": "1"})
    assert sig == twilio_signature("tok", "wss://h/ws/twilio", {"a": "1", "b": "2"})
    assert len(base64.b64decode(sig)) == 20  # an HMAC-SHA1
    assert sig != twilio_signature("tok2", "wss://h/ws/twilio", {"a": "1", "b": "2"})
    assert sig != twilio_signature("tok", "wss://h/ws/twilio?x=1", {"a": "1", "b": "2"})
    plain = twilio_signature("tok", "wss://h/ws/twilio")
    assert signature_valid("tok", plain, ["https://other", "wss://h/ws/twilio"])
    assert not signature_valid("tok", None, ["wss://h/ws/twilio"])
    assert not signature_valid("tok", plain, ["ws://h/ws/twilio"])


# ------------------------------------------------------------------ settings, logs, pools


def test_settings_from_env_and_file_env_wins(tmp_path, monkeypatch):
    cfg = tmp_path / "hotline.yaml"
    cfg.write_text("port: 9001\nno_input_s: 4\nvoice:\n  voice: espeak\n")
    monkeypatch.setenv("HOTLINE_PORT", "9002")
    monkeypatch.setenv("HOTLINE_VOICE__ENGINE", "openai-whisper")
    s = Settings.load(cfg)
    assert (s.port, s.no_input_s, s.voice.voice, s.voice.engine) == (9002, 4.0, "espeak", "openai-whisper")
    monkeypatch.delenv("HOTLINE_PORT")
    monkeypatch.delenv("HOTLINE_VOICE__ENGINE")
    assert Settings().port == 8000  # the file applies only where it was loaded


def test_settings_refuse_bad_values(tmp_path):
    with pytest.raises(ValidationError):
        Settings(db_url="mysql://x")
    with pytest.raises(ValidationError):
        Settings(no_such_option=1)
    bad = tmp_path / "bad.yaml"
    bad.write_text("prot: 1\n")
    from server.settings import SettingsError

    # Settings.load, the one door of the CLI and the service, says it in one line (tests/test_server_cli_errors.py).
    with pytest.raises(SettingsError, match=r"prot \(HOTLINE_PROT\): unknown setting"):
        Settings.load(bad)
    with pytest.raises(SettingsError, match="settings file not found"):
        Settings.load(tmp_path / "missing.yaml")


def test_logs_carry_the_call_id_and_mask_caller_data():
    record = logging.LogRecord("hotline.call", logging.INFO, __file__, 1, "caller turn", (), None)
    record.caller = {"text": "my passport is E12345678"}
    token = call_id_var.set("abc123")
    try:
        CallIdFilter().filter(record)
    finally:
        call_id_var.reset(token)
    line = json.loads(JsonFormatter().format(record))
    assert line["call_id"] == "abc123" and line["msg"] == "caller turn"
    assert "E12345678" not in json.dumps(line) and line["caller"]["text"].startswith("***")
    assert json.loads(JsonFormatter(caller_data=True).format(record))["caller"]["text"] == "my passport is E12345678"


async def test_bounded_pool_refuses_when_full_and_counts_down():
    pool = BoundedPool(name="t", workers=1, max_pending=2)
    gate = threading.Event()
    jobs = [asyncio.create_task(pool.run(gate.wait, 5)) for _ in range(2)]
    await asyncio.sleep(0.05)
    assert pool.pending == 2 and not pool.has_room()
    with pytest.raises(Overloaded):
        await pool.run(lambda: None)
    gate.set()
    await asyncio.gather(*jobs)
    await asyncio.sleep(0.01)
    assert pool.pending == 0
    pool.shutdown()


def test_synthesis_pace_learns_seconds_per_spoken_unit_per_language():
    from server.call.turn_taking import SynthesisPace

    pace = SynthesisPace(weight=0.5)
    assert pace.expected_s("en", 5) is None  # nothing seen: no estimate
    pace.observe("en", 5, 1.0)
    assert pace.expected_s("en", 10) == pytest.approx(2.0)
    pace.observe("en", 5, 2.0)  # slower now (a busier machine): half way there
    assert pace.expected_s("en", 5) == pytest.approx(1.5)
    pace.observe("en", 0, 5.0)  # nothing spoken: ignored
    assert pace.expected_s("en", 5) == pytest.approx(1.5) and pace.expected_s("zh", 5) is None


@pytest.mark.parametrize("now, started, expected, ack, wait", [
    (10.0, 9.0, None, 1.2, 0.0),  # no estimate yet: acknowledge
    (10.0, 9.0, 3.0, 1.2, 0.0),  # 2 s to go, longer than the 1.2 s acknowledgement: acknowledge
    (10.0, 9.0, 1.5, 1.2, 0.8),  # 0.5 s to go: wait for it (plus 0.3 s of slack)
    (10.0, 9.0, 0.5, 1.2, 0.3),  # overdue by the estimate: a short grace, then acknowledge
    (10.0, 9.0, 2.15, 1.2, 1.2),  # 1.15 s to go, a 1.2 s acknowledgement: wait at most its length
])
def test_acknowledgement_only_when_it_would_end_before_the_answer_is_ready(now, started, expected, ack, wait):
    from server.call.turn_taking import acknowledgement_wait

    assert acknowledgement_wait(now=now, started_at=started, expected_s=expected, ack_audio_s=ack) == pytest.approx(wait)


def test_first_chunk_text_is_the_lead_or_the_first_sentence():
    from voice.tts.lead import first_chunk_text, spoken_units

    text = "The applicant must be eighteen or older, in good health, with no criminal record. Then apply online."
    assert first_chunk_text(text, "en") == "The applicant must be eighteen or older,"
    assert first_chunk_text(text, "en", lead=False) == ("The applicant must be eighteen or older, in good health, "
                                                        "with no criminal record.")
    assert spoken_units("The applicant must be eighteen or older,", "en") == 7
    assert spoken_units("工作许可2017年", "zh") == 9  # numbers as read aloud: 二零一七年
