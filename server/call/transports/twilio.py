"""Twilio Media Streams, `GET /ws/twilio`, exactly as Twilio documents the bidirectional stream.

From Twilio (JSON text frames):
    {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    {"event": "start", "sequenceNumber": "1", "streamSid": "MZ...",
     "start": {"accountSid": "AC...", "streamSid": "MZ...", "callSid": "CA...", "tracks": ["inbound"],
               "customParameters": {...}, "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}
    {"event": "media", "sequenceNumber": "3", "streamSid": "MZ...",
     "media": {"track": "inbound", "chunk": "1", "timestamp": "5", "payload": "<base64 μ-law 8 kHz>"}}
    {"event": "dtmf", "streamSid": "MZ...", "sequenceNumber": "5", "dtmf": {"track": "inbound_track", "digit": "1"}}
    {"event": "mark", "streamSid": "MZ...", "sequenceNumber": "4", "mark": {"name": "turn-3"}}
    {"event": "stop", "streamSid": "MZ...", "sequenceNumber": "5", "stop": {"accountSid": "AC...", "callSid": "CA..."}}
To Twilio:
    {"event": "media", "streamSid": "MZ...", "media": {"payload": "<base64 μ-law 8 kHz>"}}
    {"event": "mark", "streamSid": "MZ...", "mark": {"name": "turn-3"}}   sent after each answer's last audio
    {"event": "clear", "streamSid": "MZ..."}                             barge-in: Twilio drops buffered audio

Twilio has no error message: bad JSON and unknown events are logged and counted, the stream goes on. A binary
frame or a media format other than audio/x-mulaw 8000 Hz mono closes the stream with 1003.

μ-law and base64 live here and nowhere else (telephony formats stop at the edge): the session sees 16 kHz PCM16
only.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from typing import Any, Mapping

import numpy as np

from server.call.messages import (
    DTMF_DIGITS,
    AudioClear,
    AudioEnd,
    AudioIn,
    AudioOut,
    DtmfIn,
    HangupIn,
    Ignored,
    Inbound,
    Outbound,
    PlaybackMark,
    ProtocolError,
    StartCall,
    clean_id,
)
from voice.audio import TELEPHONE_RATE, mulaw_decode, mulaw_encode, resample
from voice.types import SAMPLE_RATE

CLOSE_UNSUPPORTED = 1003
EXPECTED_FORMAT = {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}


def _dumps(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"))


# ---------------------------------------------------------------- request signature


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str] | None = None) -> str:
    """X-Twilio-Signature: base64(HMAC-SHA1(token, url + each sorted POST key+value)). Websockets have no params."""
    payload = url + "".join(f"{k}{v}" for k, v in sorted((params or {}).items()))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def signature_valid(auth_token: str, signature: str | None, urls: list[str]) -> bool:
    """True when `signature` matches one of the URLs this request may have been signed for.

    Several candidates because a proxy in front changes what the server sees (scheme wss vs ws, host); the
    configured `public_url` is the one a deployment should rely on.
    """
    if not signature:
        return False
    return any(hmac.compare_digest(twilio_signature(auth_token, url), signature) for url in urls)


# ---------------------------------------------------------------- streaming rate conversion


class StreamResampler:
    """Resamples a stream frame by frame without clicks at frame edges.

    Converting each 20 ms frame on its own zero-pads both ends, and the filter's edge transients add a 50 Hz
    buzz. Here every frame is resampled with `context` samples of the previous input on the left and held back by
    `context` samples on the right, so each output sample is computed away from any edge (4 ms of delay at 16 kHz).
    """

    def __init__(self, src_rate: int, dst_rate: int, *, context: int = 64) -> None:
        self.src, self.dst = src_rate, dst_rate
        self.context = context
        self._left = np.zeros(0, dtype=np.float32)  # already emitted, kept as left context
        self._pending = np.zeros(0, dtype=np.float32)  # received, not yet emitted

    def _span(self, n: int) -> int:
        return n * self.dst // self.src

    def push(self, x: np.ndarray) -> np.ndarray:
        seg = np.concatenate([self._left, self._pending, x.astype(np.float32)])
        emit_end = len(seg) - self.context
        start = len(self._left)
        if emit_end <= start:
            self._pending = seg[start:]
            return np.zeros(0, dtype=np.float32)
        # Keep the emitted region aligned to whole output samples.
        step = self.src // np.gcd(self.src, self.dst)
        emit_end = start + (emit_end - start) // step * step
        y = resample(seg, self.src, self.dst)
        out = y[self._span(start) : self._span(emit_end)]
        self._left = seg[max(0, emit_end - self.context) : emit_end]
        self._pending = seg[emit_end:]
        return out

    def flush(self) -> np.ndarray:
        """Emit what is held back (end of an answer); the stream starts fresh afterwards."""
        if not len(self._pending):
            self.reset()
            return np.zeros(0, dtype=np.float32)
        seg = np.concatenate([self._left, self._pending])
        y = resample(seg, self.src, self.dst)
        out = y[self._span(len(self._left)) :]
        self.reset()
        return out

    def reset(self) -> None:
        self._left = np.zeros(0, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)


def _to_mulaw(x: np.ndarray) -> bytes:
    return mulaw_encode((np.clip(x, -1.0, 1.0) * 32767.0).round().astype(np.int16))


# ---------------------------------------------------------------- serializer


class TwilioSerializer:
    protocol = "twilio"

    def __init__(self, *, max_frame_bytes: int = 64 * 1024) -> None:
        self.max_frame_bytes = max_frame_bytes
        self.stream_sid: str | None = None
        self._inbound = StreamResampler(TELEPHONE_RATE, SAMPLE_RATE)
        self._outbound = StreamResampler(SAMPLE_RATE, TELEPHONE_RATE)

    # ------------------------------------------------------------ inbound

    def parse_binary(self, data: bytes) -> list[Inbound]:
        return [ProtocolError("binary_frame", "Twilio Media Streams send JSON text frames only", close_code=CLOSE_UNSUPPORTED)]

    def parse_text(self, text: str) -> list[Inbound]:
        if len(text) > self.max_frame_bytes:
            return [ProtocolError("frame_too_large", f"message of {len(text)} characters")]
        try:
            obj = json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            return [ProtocolError("bad_json", "not a JSON object")]
        if not isinstance(obj, dict):
            return [ProtocolError("bad_json", "not a JSON object")]
        event = obj.get("event")
        try:
            if event == "media":
                return self._media(obj)
            if event == "start":
                return [self._start(obj)]
            if event == "connected":
                return [Ignored("connected")]
            if event == "stop":
                return [HangupIn("stop")]
            if event == "dtmf":
                digit = obj["dtmf"]["digit"]
                if not isinstance(digit, str) or len(digit) != 1 or digit.upper() not in DTMF_DIGITS:
                    return [ProtocolError("bad_event", "dtmf.digit must be one of 0-9 * # A-D")]
                return [DtmfIn(digit.upper())]
            if event == "mark":
                return [PlaybackMark(clean_id(obj["mark"]["name"]) or "")]
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            return [ProtocolError("bad_event", f"{event}: missing or malformed field {str(exc)[:60]}")]
        name = event if isinstance(event, str) else type(event).__name__
        return [ProtocolError("unknown_event", f"unknown event {name[:40]!r}")]

    def _start(self, obj: dict[str, Any]) -> Inbound:
        start = obj["start"]
        if not isinstance(start, dict):
            raise TypeError("start is not an object")
        fmt = start.get("mediaFormat") or {}
        if not isinstance(fmt, dict):
            raise TypeError("mediaFormat is not an object")
        got = {k: fmt.get(k) for k in EXPECTED_FORMAT}
        if got != EXPECTED_FORMAT:
            return ProtocolError("unsupported_media_format", f"expected {EXPECTED_FORMAT}, got {got}", close_code=CLOSE_UNSUPPORTED)
        self.stream_sid = clean_id(obj.get("streamSid") or start.get("streamSid")) or ""
        params = start.get("customParameters") or {}
        if not isinstance(params, dict):
            raise TypeError("customParameters is not an object")
        language = params.get("language") if params.get("language") in ("en", "zh") else None
        # Everything here is the peer's to choose: identifiers are cleaned and cut to their columns, and only a
        # few short custom parameters are kept.
        return StartCall(
            language=language,
            caller_id=clean_id(params.get("caller_id") or params.get("From")),
            carrier_call_id=clean_id(start.get("callSid")),
            stream_id=self.stream_sid or None,
            parameters={str(k)[:64]: str(v)[:256] for k, v in list(params.items())[:16]},
        )

    def _media(self, obj: dict[str, Any]) -> list[Inbound]:
        media = obj["media"]
        if media.get("track", "inbound") not in ("inbound", "inbound_track"):
            return []  # only the caller's side is heard
        try:
            mulaw = base64.b64decode(media["payload"], validate=True)
        except (binascii.Error, ValueError, TypeError):
            return [ProtocolError("bad_audio", "media.payload is not base64")]
        if not mulaw:
            return []
        samples = mulaw_decode(mulaw).astype(np.float32) / 32768.0
        pcm = self._inbound.push(samples)
        if not len(pcm):
            return []
        return [AudioIn((np.clip(pcm, -1, 1) * 32767.0).round().astype("<i2").tobytes())]

    # ------------------------------------------------------------ outbound

    def _media_out(self, x: np.ndarray) -> list[str | bytes]:
        if not len(x):
            return []
        payload = base64.b64encode(_to_mulaw(x)).decode()
        return [_dumps({"event": "media", "streamSid": self.stream_sid, "media": {"payload": payload}})]

    def serialize(self, message: Outbound) -> list[str | bytes]:
        m = message
        if isinstance(m, AudioOut):
            x = np.frombuffer(m.pcm16, dtype="<i2").astype(np.float32) / 32768.0
            return self._media_out(self._outbound.push(x))
        if isinstance(m, AudioEnd):
            if m.interrupted:
                self._outbound.reset()
                return []
            # The mark comes back from Twilio when playback reaches it: the end of this answer.
            out = self._media_out(self._outbound.flush())
            out.append(_dumps({"event": "mark", "streamSid": self.stream_sid, "mark": {"name": f"turn-{m.turn}"}}))
            return out
        if isinstance(m, AudioClear):
            self._outbound.reset()
            return [_dumps({"event": "clear", "streamSid": self.stream_sid})]
        # Transcripts, answers and errors have no place in the Media Streams protocol: they are stored and logged.
        return []
