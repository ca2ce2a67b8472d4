"""The test caller (`hotline call`, server/caller/client.py) against the real app over real websockets.

Fast tier: the real app and transports with scripted fake models (tests/fakes.py), so the caller's own behaviour —
protocol, pacing, turn-taking, latency arithmetic, saved audio — is checked in seconds. Model tier (marked `model`,
`e2e`): the real server with Whisper, the router and the synthesizer, spoken to with real recordings.
"""
from __future__ import annotations

import io
import json
import wave
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest

from server.app import create_app
from server.caller.client import CallerError, CallOptions, Utterance, call_url, run_call, trim_silence
from server.settings import Settings
from fakes import fake_components, silence, tone
from live_server import serve_app, shared_real_server, ws_url
from voice.audio import AudioFormatError

ROOT = Path(__file__).resolve().parent.parent
RECORDINGS = ROOT / "recordings_fixtures"

SCRIPT = [("How do I apply for a work permit", "en"), ("工作许可怎么办", "zh")]


@pytest.fixture(scope="module")
def fake_server(tmp_path_factory):
    """The real app on uvicorn with fake models; every call pops its transcripts from one shared script."""
    db = tmp_path_factory.mktemp("db") / "calls.db"
    # The test caller's fast pacing replays audio faster than real time, and it plays Twilio without a token.
    settings = Settings(db_url=f"sqlite+aiosqlite:///{db}", log_level="WARNING", no_input_s=30.0,
                        inbound_burst_s=None, twilio_allow_unsigned=True)
    app = create_app(settings, components=fake_components(script=SCRIPT * 40), configure_logs=False)
    with serve_app(app, settings, ready_timeout_s=60) as base:
        yield base


def questions() -> list[Utterance]:
    return [Utterance("q-en", tone(0.8)), Utterance("q-zh", tone(0.6))]


def _check_turn_order(report) -> None:
    for turn in report.turns:
        assert turn.error is None, turn.error
        # Causality on one clock: the answer cannot precede the speech it answers.
        assert turn.speech_start_t < turn.speech_end_t <= turn.first_audio_t
        assert turn.latency_s == pytest.approx(turn.first_audio_t - turn.speech_end_t)
        assert turn.heard_s > 0


@pytest.mark.e2e
async def test_native_call_reports_each_turn_in_its_language(fake_server, tmp_path):
    report = await run_call(questions(), ws_url(fake_server, "native"), "native", "fast",
                            options=CallOptions(save_audio=tmp_path))
    assert report.call_id and report.languages == ["en", "zh"]
    assert report.greeting_text and report.greeting_heard_s > 0
    assert report.greeting_t is not None and report.greeting_t < report.turns[0].speech_start_t
    _check_turn_order(report)
    en, zh = report.turns
    assert (en.transcript["language"], en.answer["language"]) == ("en", "en")
    assert (zh.transcript["language"], zh.answer["language"]) == ("zh", "zh")
    for turn in report.turns:
        assert turn.speech_end_t <= turn.final_t <= turn.answer_t <= turn.first_audio_t
        assert set(turn.stages_s) == {"endpoint+recognition", "routing", "synthesis"}
    assert report.ended_reason is not None and report.close_code == 1000
    assert report.errors == []
    # What was saved is what was heard: one WAV per greeting / turn, of the heard duration.
    saved = sorted(p.name for p in tmp_path.glob("*.wav"))
    assert saved == ["00_greeting.wav", "01_q-en.wav", "02_q-zh.wav"]
    with wave.open(str(tmp_path / "01_q-en.wav")) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        assert w.getnframes() / 16000 == pytest.approx(en.heard_s, abs=0.001)


@pytest.mark.e2e
async def test_twilio_call_plays_the_carrier_side(fake_server, tmp_path):
    report = await run_call(questions(), ws_url(fake_server, "twilio"), "twilio", "fast",
                            options=CallOptions(save_audio=tmp_path))
    assert report.greeting_heard_s > 0
    _check_turn_order(report)
    assert report.errors == []  # every server message carried our streamSid, no binary frames
    sent = [e for e in report.events if e.direction == "sent"]
    assert [e.type for e in sent[:2]] == ["connected", "start"] and sent[-1].type == "stop"
    # Every mark the server sent came back (Twilio's acknowledgement that the audio before it has played).
    marks_in = [e.data["mark"]["name"] for e in report.events if e.direction == "received" and e.type == "mark"]
    marks_out = [e.data["mark"]["name"] for e in sent if e.type == "mark"]
    assert marks_in and sorted(marks_out) == sorted(marks_in)
    assert (tmp_path / "01_q-en.wav").is_file()


@pytest.mark.e2e
async def test_realtime_pacing_is_real_time(fake_server):
    """Real-time frames: a 1 s utterance takes about 1 s to say, and the answer comes only after the server's
    endpointer heard its silence (0.3 s in the fake), so the measured latency includes it; fast pacing does not wait."""
    utt = [Utterance("q", tone(1.0))]
    slow = await run_call(utt, ws_url(fake_server, "native"), "native", "realtime", options=CallOptions(pause_s=0.2))
    fast = await run_call(utt, ws_url(fake_server, "native"), "native", "fast")
    (s,), (f,) = slow.turns, fast.turns
    assert s.speech_end_t - s.speech_start_t == pytest.approx(1.0, abs=0.15)
    assert f.speech_end_t - f.speech_start_t < 0.5
    assert s.latency_s >= 0.3 - 0.04  # the fake endpointer's silence, less one frame of rounding each side
    assert f.latency_s < s.latency_s


def test_trim_silence_keeps_the_speech_only():
    audio = np.concatenate([np.zeros(16000), np.frombuffer(tone(0.5), "<i2") / 32768, np.zeros(8000)]).astype(np.float32)
    trimmed = trim_silence(audio, pad_s=0.0)
    assert len(trimmed) / 16000 == pytest.approx(0.5, abs=0.021)
    assert float(np.abs(trimmed[:320]).max()) > 0.1 and float(np.abs(trimmed[-320:]).max()) > 0.1
    quiet = np.zeros(16000, dtype=np.float32)
    assert len(trim_silence(quiet)) == len(quiet)  # nothing to trim against: unchanged, not emptied


def test_call_url_adds_the_protocol_path():
    assert call_url(None, "native") == "ws://127.0.0.1:8000/ws/call"
    assert call_url("http://h:1", "twilio") == "ws://h:1/ws/twilio"
    assert call_url("https://h/", "native") == "wss://h/ws/call"
    assert call_url("ws://h:1/ws/call", "native") == "ws://h:1/ws/call"
    with pytest.raises(ValueError):
        call_url("ftp://h", "native")


async def test_bad_input_is_refused_before_dialling(tmp_path):
    bad = tmp_path / "not_audio.wav"
    bad.write_bytes(b"RIFF but not really")
    with pytest.raises(AudioFormatError):
        await run_call([bad], "ws://127.0.0.1:9/ws/call")
    with pytest.raises(AudioFormatError):
        await run_call([tmp_path / "missing.wav"], "ws://127.0.0.1:9/ws/call")
    with pytest.raises(CallerError, match="cannot connect"):
        await run_call([Utterance("q", tone(0.3))], "ws://127.0.0.1:9/ws/call", options=CallOptions(open_timeout_s=2))
    with pytest.raises(CallerError, match="not a websocket URL"):
        await run_call([Utterance("q", tone(0.3))], "http://127.0.0.1:9/ws/call")


@pytest.mark.e2e
async def test_wrong_path_is_a_clear_error(fake_server):
    with pytest.raises(CallerError, match="refused"):
        await run_call([Utterance("q", tone(0.3))], fake_server.replace("http", "ws") + "/ws/nowhere")


@pytest.mark.e2e
def test_cli_prints_json_lines_and_a_report(fake_server, tmp_path):
    """`hotline call --json`: every line is one JSON object; the last is the report, with per-turn latency."""
    from server.caller.cli import _call, add_commands
    import argparse

    wav = tmp_path / "q.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes(silence(0.3) + tone(0.8) + silence(0.3))
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(), argparse.ArgumentParser().add_subparsers())
    args = parser.parse_args(["call", str(wav), "--url", fake_server, "--fast", "--json"])
    out = io.StringIO()
    with redirect_stdout(out):
        code = _call(args)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert code == 0
    events, report = lines[:-1], lines[-1]
    assert report["type"] == "report" and len(report["turns"]) == 1
    assert report["turns"][0]["latency_s"] is not None and report["turns"][0]["latency_s"] >= 0
    times = [e["t"] for e in events]
    assert times == sorted(times)  # printed as they happened
    assert {"call.start", "call.started", "transcript.final", "answer", "audio.start"} <= {e["type"] for e in events}


# ---------------------------------------------------------------- real models, real recordings

@pytest.fixture(scope="module")
def real_server(tmp_path_factory):
    return shared_real_server(tmp_path_factory.getbasetemp())


@pytest.mark.model
@pytest.mark.e2e
@pytest.mark.parametrize("protocol", ["native", "twilio"])
async def test_real_recordings_are_answered_in_their_language(real_server, protocol):
    files = [RECORDINGS / "en_ljspeech_LJ001-0004.wav", RECORDINGS / "zh_aishell_BAC009S0002W0123.wav"]
    report = await run_call(files, ws_url(real_server, protocol), protocol, "fast",
                            options=CallOptions(turn_timeout_s=90))
    assert report.greeting_heard_s > 0.5
    for turn in report.turns:
        assert turn.error is None and turn.latency_s is not None and turn.heard_s > 0.3
    if protocol == "native":  # Twilio carries no transcript events: only the audio
        assert "Welcome" in report.greeting_text or "您好" in report.greeting_text
        (en, zh) = report.turns
        assert en.transcript["language"] == "en" and en.answer["language"] == "en"
        assert zh.transcript["language"] == "zh" and zh.answer["language"] == "zh"


def test_bench_summary_separates_first_and_repeated_answers():
    """An answer text heard before (in this bench) may come from the synthesis cache: reported apart."""
    from server.caller.client import CallReport, TurnReport
    from server.caller.bench import summarize

    def report(started_at: float, answers: list[tuple[str, float]]) -> CallReport:
        r = CallReport(url="ws://x", protocol="native", pacing="realtime", started_at=started_at)
        for i, (text, latency) in enumerate(answers, start=1):
            r.turns.append(TurnReport(index=i, name=f"q{i}", speech_s=1.0, speech_end_t=10.0 * i,
                                      answer_t=10.0 * i + 0.5, first_audio_t=10.0 * i + latency,
                                      answer={"text": text}))
        return r

    seen: set[str] = set()
    row = summarize(2, [report(0.0, [("A", 3.0), ("B", 2.0)]), report(1.0, [("A", 1.0)]), RuntimeError("refused")], seen)
    assert (row["turns"], row["answered"]) == (3, 3)
    assert row["first_answer_turns"] == 2 and row["repeated_answer_turns"] == 1  # the second "A" came 1 s later
    assert row["repeated_answer_median_s"] == pytest.approx(1.0)
    assert row["median_s"] == pytest.approx(2.0)
    assert any("refused" in e for e in row["errors"])
    again = summarize(1, [report(100.0, [("B", 0.5)])], seen)
    assert again["first_answer_turns"] == 0 and again["repeated_answer_turns"] == 1  # seen in an earlier round


def test_bench_checks_route_topic_and_language_of_every_turn_and_keeps_the_acknowledgement_apart():
    from server.caller.bench import Expect, summarize
    from server.caller.client import CallReport, TurnReport

    expected = {"permit": Expect("en", ("answer",), ("work_permit_apply",)),
                "weather": Expect("en", ("answer", "clarify"), ("out_of_scope",))}
    r = CallReport(url="ws://x", protocol="native", pacing="realtime", started_at=0.0)
    answers = [("permit", {"route": "answer", "topic": "work_permit_apply", "language": "en", "text": "a"}, None),
               ("permit", {"route": "answer", "topic": "work_permit_apply", "language": "zh", "text": "b"}, None),
               ("weather", {"route": "clarify", "topic": "out_of_scope", "language": "en", "text": "c"}, 10.9),
               ("weather", {"route": "answer", "topic": "salary_fx", "language": "en", "text": "d"}, None)]
    for i, (name, answer, ack_t) in enumerate(answers, start=1):
        r.turns.append(TurnReport(index=i, name=name, speech_s=1.0, speech_end_t=10.0 * i, answer_t=10.0 * i + 0.5,
                                  first_audio_t=10.0 * i + 2.0, ack_t=None if ack_t is None else ack_t + 10 * (i - 1),
                                  answer=answer))
    row = summarize(1, [r], set(), expected, label="uncached")
    assert (row["right"], row["checked"]) == (2, 4)  # wrong language, wrong topic
    assert len(row["wrong"]) == 2 and row["mode"] == "uncached"
    assert row["ack_turns"] == 1 and row["ack_median_s"] == pytest.approx(0.9)
    assert row["median_s"] == pytest.approx(2.0)  # the answer's own first audio, never the acknowledgement


def test_bench_takes_a_transfer_after_a_clarify_as_the_escalation_policy_not_a_wrong_turn():
    from server.caller.bench import Expect, summarize
    from server.caller.client import CallReport, TurnReport

    off_topic = Expect("en", ("answer", "clarify"), ("out_of_scope", ""))
    strict = Expect("en", ("answer",), ("out_of_scope",))
    expected = {"mumble": off_topic, "weather": strict}
    agent = {"route": "agent", "topic": "human_agent", "language": "en", "text": "t"}
    clarify = {"route": "clarify", "topic": "", "language": "en", "text": "c"}

    def call(*answers: tuple[str, dict]) -> CallReport:
        r = CallReport(url="ws://x", protocol="native", pacing="realtime", started_at=0.0)
        for i, (name, answer) in enumerate(answers, start=1):
            r.turns.append(TurnReport(index=i, name=name, speech_s=1.0, speech_end_t=10.0 * i,
                                      answer_t=10.0 * i + 0.5, first_audio_t=10.0 * i + 1.0, answer=answer))
        return r

    # After a clarify, a second miss goes to a person (misses_before_agent): right where a clarify was right.
    assert summarize(1, [call(("mumble", clarify), ("mumble", agent))], set(), expected)["right"] == 2
    # Without the clarify before it, or where only an answer is right, a transfer is wrong.
    assert summarize(1, [call(("mumble", agent))], set(), expected)["right"] == 0
    assert summarize(1, [call(("mumble", clarify), ("weather", agent))], set(), expected)["right"] == 1


def test_bench_takes_a_clarify_as_right_for_off_topic_speech_whatever_topic_the_router_guessed():
    from server.caller.bench import OFF_TOPIC, Expect

    off_topic = Expect("en", *OFF_TOPIC)
    # The router's clarify carries its best guess (or hotline_info); the caller hears the same `repeat` prompt.
    assert off_topic.met_by({"route": "clarify", "topic": "work_permit_cancel", "language": "en"})
    assert off_topic.met_by({"route": "clarify", "topic": "hotline_info", "language": "en"})
    assert off_topic.met_by({"route": "answer", "topic": "out_of_scope", "language": "en"})
    # An answer is still checked for its topic, and every route for its language.
    assert not off_topic.met_by({"route": "answer", "topic": "work_permit_cancel", "language": "en"})
    assert not off_topic.met_by({"route": "clarify", "topic": "hotline_info", "language": "zh"})
    assert not off_topic.met_by({"route": "agent", "topic": "human_agent", "language": "en"})
    # Where only an answer is right, a clarify is wrong.
    assert not Expect("en", ("answer",), ("residence_permit",)).met_by(
        {"route": "clarify", "topic": "residence_permit", "language": "en"})
