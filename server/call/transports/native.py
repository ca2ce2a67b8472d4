"""The native caller protocol, `GET /ws/call` (browser softphone, `hotline call`).

Audio
    Binary frames, both directions: 16 kHz mono PCM16 little-endian, 20 ms (640 bytes) each. The service accepts
    any even length up to 64 KiB per frame; larger frames get an `error` event (`frame_too_large`) and are dropped,
    absurd ones (over 1 MiB) close the connection with code 1009. Answer audio is sent paced to real time with a
    small lead (`playback_lead_s`), so a barge-in only has that much to clear.

Events from the client (JSON text frames, one object with an "event" key)
    {"event": "call.start", "language": "en"|"zh" (optional hint), "caller_id": "..." (optional),
     "sample_rate": 16000 (optional; anything else is refused: error `unsupported_sample_rate`, close 1003)}
        Optional. Without it the call starts on the first audio frame, or after `start_timeout_s`.
    {"event": "hangup"}                      the caller hangs up; the service answers `call.ended` and closes 1000.
    {"event": "dtmf", "digit": "0"-"9"|"*"|"#"|"A"-"D"}   a key press (recorded as a call event).

Events to the client
    {"event": "call.started", "call_id": "...", "languages": ["en", "zh"]}
    {"event": "transcript.partial", "text": "<stable prefix, never retracted>", "unstable": "<may still change>"}
    {"event": "transcript.final", "text": "...", "language": "en"|"zh"|"other"|"unknown", "language_code": "ja",
     "language_probability": 0.97, "language_source": "audio"|"text"|"audio+text"|..., "mixed": false,
     "start": 1.32, "end": 3.10}                                   (start/end: seconds since the call's audio began)
    {"event": "answer", "route": "answer"|"clarify"|"agent", "topic": "<topic id, routing/topics.py>", "text": "...",
     "language": "en"|"zh", "entry_id": "..."|null, "score": 0.83}
    {"event": "audio.start", "turn": 3, "text": "...", "language": "en"|"zh"}   binary frames of turn 3 follow
    {"event": "audio.end", "turn": 3, "interrupted": false}
    {"event": "audio.clear", "turn": 3}       barge-in: drop all buffered answer audio now (then audio.end interrupted)
    {"event": "call.ended", "reason": "hangup"|"no_input"|"slow_consumer"|..., "state": "<final state>"}
        final states: completed, caller_hangup, dropped, error, transferred_to_agent, no_input
    {"event": "error", "code": "...", "message": "..."}
        codes: bad_json, unknown_event, bad_event (missing/invalid fields), bad_audio (odd length), frame_too_large,
        unsupported_sample_rate (then close 1003), overloaded (the recognizer is saturated; try again).
        An error never ends the call unless a close follows.

Close codes: 1000 normal end, 1003 unsupported data (sample rate), 1008 policy (slow consumer), 1009 too big,
1011 internal error, 1013 not ready (models still loading).
"""
from __future__ import annotations

import json
from typing import Any

from server.call.messages import (
    DTMF_DIGITS,
    AnswerOut,
    AudioClear,
    AudioEnd,
    AudioIn,
    AudioOut,
    AudioStart,
    CallEnded,
    CallStarted,
    DtmfIn,
    ErrorOut,
    FinalOut,
    HangupIn,
    Inbound,
    Outbound,
    PartialOut,
    ProtocolError,
    StartCall,
    clean_id,
)
from voice.types import SAMPLE_RATE

CLOSE_UNSUPPORTED = 1003


def _dumps(obj: dict[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


class NativeSerializer:
    protocol = "native"

    def __init__(self, *, max_frame_bytes: int = 64 * 1024) -> None:
        self.max_frame_bytes = max_frame_bytes

    # ------------------------------------------------------------ inbound

    def parse_binary(self, data: bytes) -> list[Inbound]:
        if len(data) > self.max_frame_bytes:
            return [ProtocolError("frame_too_large", f"audio frame of {len(data)} bytes; at most {self.max_frame_bytes}")]
        if len(data) % 2:
            return [ProtocolError("bad_audio", f"PCM16 frames need an even number of bytes, got {len(data)}")]
        if not data:
            return []
        return [AudioIn(bytes(data))]

    def parse_text(self, text: str) -> list[Inbound]:
        try:
            obj = json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            return [ProtocolError("bad_json", "text frames must be one JSON object with an 'event' key")]
        if not isinstance(obj, dict):
            return [ProtocolError("bad_json", "text frames must be one JSON object with an 'event' key")]
        event = obj.get("event")
        if event == "call.start":
            return [self._start(obj)]
        if event == "hangup":
            return [HangupIn("hangup")]
        if event == "dtmf":
            digit = obj.get("digit")
            if not isinstance(digit, str) or digit.upper() not in DTMF_DIGITS or len(digit) != 1:
                return [ProtocolError("bad_event", "dtmf needs 'digit': one of 0-9 * # A-D")]
            return [DtmfIn(digit.upper())]
        name = event if isinstance(event, str) else type(event).__name__
        return [ProtocolError("unknown_event", f"unknown event {name[:40]!r}")]

    def _start(self, obj: dict[str, Any]) -> Inbound:
        rate = obj.get("sample_rate", SAMPLE_RATE)
        if rate != SAMPLE_RATE:
            return ProtocolError(
                "unsupported_sample_rate",
                f"audio must be {SAMPLE_RATE} Hz mono PCM16; got sample_rate={str(rate)[:20]}",
                close_code=CLOSE_UNSUPPORTED,
            )
        language = obj.get("language")
        if language in ("", None):
            language = None
        elif language not in ("en", "zh"):
            return ProtocolError("bad_event", "call.start 'language' must be 'en' or 'zh' when given")
        caller_id = obj.get("caller_id")
        if caller_id is not None and (not isinstance(caller_id, str) or len(caller_id) > 64):
            return ProtocolError("bad_event", "call.start 'caller_id' must be a string of at most 64 characters")
        return StartCall(language=language, caller_id=clean_id(caller_id))

    # ------------------------------------------------------------ outbound

    def serialize(self, message: Outbound) -> list[str | bytes]:
        m = message
        if isinstance(m, AudioOut):
            return [m.pcm16]
        if isinstance(m, CallStarted):
            return [_dumps({"event": "call.started", "call_id": m.call_id, "languages": list(m.languages)})]
        if isinstance(m, PartialOut):
            return [_dumps({"event": "transcript.partial", "text": m.stable, "unstable": m.unstable})]
        if isinstance(m, FinalOut):
            return [
                _dumps(
                    {
                        "event": "transcript.final",
                        "text": m.text,
                        "language": m.language,
                        "language_code": m.language_code,
                        "language_probability": round(m.language_probability, 4),
                        "language_source": m.language_source,
                        "mixed": m.mixed,
                        "start": round(m.start, 3),
                        "end": round(m.end, 3),
                    }
                )
            ]
        if isinstance(m, AnswerOut):
            return [
                _dumps(
                    {
                        "event": "answer",
                        "route": m.route,
                        "topic": m.topic,
                        "text": m.text,
                        "language": m.language,
                        "entry_id": m.entry_id,
                        "score": round(m.score, 4),
                        "timings": m.timings,
                    }
                )
            ]
        if isinstance(m, AudioStart):
            return [_dumps({"event": "audio.start", "turn": m.turn, "text": m.text, "language": m.language})]
        if isinstance(m, AudioEnd):
            out = {"event": "audio.end", "turn": m.turn, "interrupted": m.interrupted}
            if m.timings:
                out["timings"] = m.timings
            return [_dumps(out)]
        if isinstance(m, AudioClear):
            return [_dumps({"event": "audio.clear", "turn": m.turn})]
        if isinstance(m, CallEnded):
            return [_dumps({"event": "call.ended", "reason": m.reason, "state": m.state})]
        if isinstance(m, ErrorOut):
            return [_dumps({"event": "error", "code": m.code, "message": m.message})]
        raise TypeError(f"not an outbound message: {type(m).__name__}")
