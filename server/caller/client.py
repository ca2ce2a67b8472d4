"""A test caller: speaks recordings into a running hotline over a real websocket and measures what it hears.

It behaves like a phone, not like a test harness: the line carries a 20 ms frame at all times (silence between
utterances), so the server's VAD ends each utterance the way it would on a real call. It speaks either of the
service's two caller protocols:

- native (`GET /ws/call`): binary frames of 16 kHz PCM16 both ways, JSON events (`call.started`, `transcript.*`,
  `answer`, `audio.start` / `audio.end` / `audio.clear`, `call.ended`, `error`);
- twilio (`GET /ws/twilio`): the carrier's side of Twilio Media Streams (`connected`, `start`, `media` with base64
  8 kHz μ-law, `dtmf`, `mark` echoes, `stop`).

The figure it exists for is measured as whisper_streaming's CLI does it, honestly: per turn, the time from the moment
the caller's last speech frame left the socket to the first byte of answer audio that came back.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from voice.audio import (
    AudioFormatError,
    decode_file,
    float_to_pcm16,
    mulaw_encode,
    pcm16_to_float,
    resample,
    telephone_to_pcm16,
    write_wav,
)
from voice.types import FRAME_MS, SAMPLE_RATE

Protocol = Literal["native", "twilio"]
Pacing = Literal["realtime", "fast"]

FRAME_S = FRAME_MS / 1000
NATIVE_FRAME_BYTES = SAMPLE_RATE * FRAME_MS // 1000 * 2  # 640
TWILIO_RATE = 8_000
TWILIO_FRAME_BYTES = TWILIO_RATE * FRAME_MS // 1000  # 160 μ-law bytes = 20 ms
MULAW_SILENCE = b"\xff"  # μ-law code of digital zero


PATHS = {"native": "/ws/call", "twilio": "/ws/twilio"}


def call_url(url: str | None, protocol: str) -> str:
    """Accept ws://host:port/ws/call, ws://host:port, http://host:port ...: the protocol's path is added when absent."""
    if not url:
        return f"ws://127.0.0.1:8000{PATHS[protocol]}"
    parts = urlsplit(url if "://" in url else f"ws://{url}")
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss"):
        raise ValueError(f"not a websocket or http URL: {url!r}")
    path = parts.path if parts.path not in ("", "/") else PATHS[protocol]
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))



class CallerError(RuntimeError):
    """The call could not be placed or went wrong in a way the report cannot describe (bad URL, refused, ...)."""


# ---------------------------------------------------------------- what the caller says

@dataclass(frozen=True, slots=True)
class Utterance:
    """One thing the caller says: 16 kHz mono PCM16, trimmed to the speech so its last frame is speech."""

    name: str
    pcm16: bytes
    expected_language: str | None = None  # "en" | "zh" | "other:ja" ... when known (for reports only)

    @property
    def duration_s(self) -> float:
        return len(self.pcm16) / 2 / SAMPLE_RATE


def trim_silence(audio: np.ndarray, *, floor_db: float = -35.0, pad_s: float = 0.05) -> np.ndarray:
    """Cut leading/trailing stretches quieter than `floor_db` below the loud frames.

    Recordings often end with half a second of room tone; sending it as "speech" would hide that much latency
    (the server would end the utterance before our "last speech frame"), so the clock starts at the real end.
    """
    n = len(audio) // 320
    if n == 0:
        return audio
    rms = np.sqrt(np.mean(audio[: n * 320].reshape(n, 320) ** 2, axis=1) + 1e-12)
    loud = np.percentile(rms, 95)
    if loud <= 1e-4:  # all (near) silence: nothing to trim against
        return audio
    voiced = np.flatnonzero(rms >= loud * 10 ** (floor_db / 20))
    pad = int(pad_s * SAMPLE_RATE)
    start = max(0, voiced[0] * 320 - pad)
    end = min(len(audio), (voiced[-1] + 1) * 320 + pad)
    return audio[start:end]


def utterance_from_audio(name: str, audio: np.ndarray, *, expected_language: str | None = None) -> Utterance:
    audio = trim_silence(np.asarray(audio, dtype=np.float32))
    if audio.size < SAMPLE_RATE // 10:
        raise AudioFormatError(f"{name}: less than 0.1 s of audio")
    return Utterance(name=name, pcm16=float_to_pcm16(audio), expected_language=expected_language)


def load_utterance(path: str | Path) -> Utterance:
    """Decode any recording (WAV, FLAC, MP3 ...) into an Utterance; AudioFormatError for bad files."""
    path = Path(path)
    return utterance_from_audio(path.name, decode_file(path))


# ---------------------------------------------------------------- what happened

@dataclass(frozen=True, slots=True)
class CallEvent:
    t: float  # seconds since the websocket opened
    direction: Literal["sent", "received", "local"]
    type: str
    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"t": round(self.t, 4), "direction": self.direction, "type": self.type, "data": self.data}


@dataclass(slots=True)
class HeardAudio:
    """One stretch of bot audio (a greeting, an answer, a prompt) as the caller heard it."""

    opened_t: float
    turn: Any = None
    text: str = ""
    language: str = ""
    wire: bytearray = field(default_factory=bytearray)  # as received: PCM16 16 kHz (native) or μ-law 8 kHz (twilio)
    first_t: float | None = None
    last_t: float | None = None
    closed: bool = False
    cleared: bool = False
    closed_t: float | None = None
    ack: bool = False  # a cached "one moment" said before a slow answer, not the answer (audio.end has ack_ms)


@dataclass(slots=True)
class TurnReport:
    index: int  # 1-based
    name: str
    speech_s: float
    speech_start_t: float | None = None
    speech_end_t: float | None = None  # when the last speech frame had been sent
    final_t: float | None = None  # transcript.final received
    answer_t: float | None = None  # answer event received
    first_audio_t: float | None = None  # first byte of the answer's own audio
    ack_t: float | None = None  # first byte of a "one moment" said before the answer, if any
    audio_done_t: float | None = None
    transcript: dict[str, Any] | None = None
    partials: int = 0
    answer: dict[str, Any] | None = None
    timings: dict[str, Any] | None = None  # the server's own per-stage figures, when it sends them
    heard_s: float = 0.0
    heard_text: str = ""
    audio_path: str | None = None
    error: str | None = None

    @property
    def latency_s(self) -> float | None:
        """End of the caller's speech -> first byte of the answer's audio."""
        if self.first_audio_t is None or self.speech_end_t is None:
            return None
        return self.first_audio_t - self.speech_end_t

    @property
    def ack_s(self) -> float | None:
        """End of the caller's speech -> first byte of the acknowledgement ("one moment"), when one was said."""
        if self.ack_t is None or self.speech_end_t is None:
            return None
        return self.ack_t - self.speech_end_t

    @property
    def stages_s(self) -> dict[str, float]:
        """Where the time went, as seen from the line (independent of what the server reports)."""
        out: dict[str, float] = {}
        if self.speech_end_t is not None and self.final_t is not None:
            out["endpoint+recognition"] = self.final_t - self.speech_end_t
        if self.final_t is not None and self.answer_t is not None:
            out["routing"] = self.answer_t - self.final_t
        if self.answer_t is not None and self.first_audio_t is not None:
            out["synthesis"] = self.first_audio_t - self.answer_t
        return out

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["latency_s"] = None if self.latency_s is None else round(self.latency_s, 4)
        d["ack_s"] = None if self.ack_s is None else round(self.ack_s, 4)
        d["stages_s"] = {k: round(v, 4) for k, v in self.stages_s.items()}
        return d


@dataclass(slots=True)
class CallReport:
    url: str
    protocol: Protocol
    pacing: Pacing
    call_id: str | None = None
    languages: list[str] | None = None
    greeting_text: str = ""
    greeting_language: str = ""
    greeting_heard_s: float = 0.0
    greeting_t: float | None = None  # first byte of the greeting's audio
    greeting_path: str | None = None
    turns: list[TurnReport] = field(default_factory=list)
    ended_reason: str | None = None
    close_code: int | None = None
    errors: list[str] = field(default_factory=list)  # `error` events and caller-side problems, in order
    events: list[CallEvent] = field(default_factory=list)
    duration_s: float = 0.0
    started_at: float = 0.0  # wall clock (time.time()) when the websocket opened: lines up simultaneous calls

    @property
    def latencies_s(self) -> list[float]:
        return [t.latency_s for t in self.turns if t.latency_s is not None]

    def to_dict(self, *, events: bool = False) -> dict[str, Any]:
        d = {
            "url": self.url, "protocol": self.protocol, "pacing": self.pacing, "call_id": self.call_id,
            "languages": self.languages, "greeting_text": self.greeting_text,
            "greeting_language": self.greeting_language, "greeting_heard_s": round(self.greeting_heard_s, 3),
            "greeting_t": self.greeting_t, "greeting_path": self.greeting_path,
            "turns": [t.to_dict() for t in self.turns], "ended_reason": self.ended_reason,
            "close_code": self.close_code, "errors": self.errors, "duration_s": round(self.duration_s, 3),
            "started_at": self.started_at,
        }
        if events:
            d["events"] = [e.to_dict() for e in self.events]
        return d


@dataclass(frozen=True, slots=True)
class CallOptions:
    """How the caller behaves; defaults model a patient person on a good line."""

    language: str | None = None  # hint sent in call.start / Twilio customParameters
    caller_id: str | None = None
    pause_s: float = 0.8  # natural pause after the bot finishes before the caller speaks
    trailing_silence_s: float = 1.0  # fast pacing: silence burst after speech so the VAD can end the utterance
    greeting_timeout_s: float = 30.0
    turn_timeout_s: float = 45.0  # end of speech -> first answer byte
    answer_timeout_s: float = 180.0  # first answer byte -> the bot done speaking
    hangup_timeout_s: float = 5.0
    settle_s: float = 0.3  # the bot is done when nothing new has come for this long after its last stretch
    wait_for_playback: bool | None = None  # None: only with realtime pacing (the bot's audio "plays" at 1x)
    save_audio: Path | None = None
    twilio_auth_token: str | None = None  # sign the upgrade request (X-Twilio-Signature) like Twilio does
    open_timeout_s: float = 10.0
    # Stop asking once the bot has transferred the call to a person (route "agent"): a caller waiting in the queue
    # does not go on asking the bot, and what the line plays meanwhile (hold prompts) is no answer to time.
    stop_after_transfer: bool = False


# ---------------------------------------------------------------- the two wire protocols

class _NativeWire:
    protocol: Protocol = "native"
    bytes_per_second = SAMPLE_RATE * 2
    silence = b"\x00" * NATIVE_FRAME_BYTES

    def __init__(self, options: CallOptions) -> None:
        self.options = options

    def headers(self, url: str) -> dict[str, str]:
        return {}

    def frames(self, utt: Utterance) -> list[bytes]:
        pcm = utt.pcm16
        if len(pcm) % NATIVE_FRAME_BYTES:
            pcm += b"\x00" * (NATIVE_FRAME_BYTES - len(pcm) % NATIVE_FRAME_BYTES)
        return [pcm[i : i + NATIVE_FRAME_BYTES] for i in range(0, len(pcm), NATIVE_FRAME_BYTES)]

    def opening(self) -> list[dict[str, Any]]:
        start: dict[str, Any] = {"event": "call.start", "sample_rate": SAMPLE_RATE}
        if self.options.language:
            start["language"] = self.options.language
        if self.options.caller_id:
            start["caller_id"] = self.options.caller_id
        return [start]

    def media(self, payload: bytes) -> bytes:
        return payload

    def dtmf(self, digit: str) -> dict[str, Any]:
        return {"event": "dtmf", "digit": digit}

    def closing(self) -> list[dict[str, Any]]:
        return [{"event": "hangup"}]

    @staticmethod
    def decode(wire: bytes) -> bytes:
        return bytes(wire)


class _TwilioWire:
    """Twilio's side of a bidirectional Media Stream, shaped as Twilio's 'WebSocket messages' page documents."""

    protocol: Protocol = "twilio"
    bytes_per_second = TWILIO_RATE
    silence = MULAW_SILENCE * TWILIO_FRAME_BYTES

    def __init__(self, options: CallOptions) -> None:
        self.options = options
        self.account_sid = "AC" + secrets.token_hex(16)
        self.call_sid = "CA" + secrets.token_hex(16)
        self.stream_sid = "MZ" + secrets.token_hex(16)
        self._seq = 0
        self._chunk = 0

    def _next_seq(self) -> str:
        self._seq += 1
        return str(self._seq)

    def headers(self, url: str) -> dict[str, str]:
        token = self.options.twilio_auth_token
        if not token:
            return {}
        # Twilio signs the full URL (no POST parameters on a websocket upgrade): base64(HMAC-SHA1(token, url)).
        digest = hmac.new(token.encode(), url.encode(), hashlib.sha1).digest()
        return {"X-Twilio-Signature": base64.b64encode(digest).decode()}

    def frames(self, utt: Utterance) -> list[bytes]:
        # Convert the whole utterance at once: resampling 20 ms pieces separately would click at every edge.
        audio = resample(pcm16_to_float(utt.pcm16), SAMPLE_RATE, TWILIO_RATE)
        mulaw = mulaw_encode((np.clip(audio, -1, 1) * 32767).round().astype(np.int16))
        if len(mulaw) % TWILIO_FRAME_BYTES:
            mulaw += MULAW_SILENCE * (TWILIO_FRAME_BYTES - len(mulaw) % TWILIO_FRAME_BYTES)
        return [mulaw[i : i + TWILIO_FRAME_BYTES] for i in range(0, len(mulaw), TWILIO_FRAME_BYTES)]

    def opening(self) -> list[dict[str, Any]]:
        params: dict[str, str] = {}
        if self.options.language:
            params["language"] = self.options.language
        if self.options.caller_id:
            params["caller_id"] = self.options.caller_id
        return [
            {"event": "connected", "protocol": "Call", "version": "1.0.0"},
            {
                "event": "start",
                "sequenceNumber": self._next_seq(),
                "start": {
                    "accountSid": self.account_sid,
                    "streamSid": self.stream_sid,
                    "callSid": self.call_sid,
                    "tracks": ["inbound"],
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": TWILIO_RATE, "channels": 1},
                    "customParameters": params,
                },
                "streamSid": self.stream_sid,
            },
        ]

    def media(self, payload: bytes) -> str:
        self._chunk += 1
        return json.dumps({
            "event": "media",
            "sequenceNumber": self._next_seq(),
            "media": {
                "track": "inbound",
                "chunk": str(self._chunk),
                "timestamp": str((self._chunk - 1) * FRAME_MS),  # ms of stream time, as Twilio counts it
                "payload": base64.b64encode(payload).decode(),
            },
            "streamSid": self.stream_sid,
        })

    def dtmf(self, digit: str) -> dict[str, Any]:
        return {"event": "dtmf", "streamSid": self.stream_sid, "sequenceNumber": self._next_seq(),
                "dtmf": {"track": "inbound_track", "digit": digit}}

    def mark(self, name: str) -> dict[str, Any]:
        return {"event": "mark", "sequenceNumber": self._next_seq(), "streamSid": self.stream_sid,
                "mark": {"name": name}}

    def closing(self) -> list[dict[str, Any]]:
        return [{"event": "stop", "sequenceNumber": self._next_seq(), "streamSid": self.stream_sid,
                 "stop": {"accountSid": self.account_sid, "callSid": self.call_sid}}]

    @staticmethod
    def decode(wire: bytes) -> bytes:
        return telephone_to_pcm16(bytes(wire)) if wire else b""


# ---------------------------------------------------------------- the call

class _Call:
    def __init__(self, *, url: str, protocol: Protocol, pacing: Pacing, options: CallOptions,
                 on_event: Callable[[CallEvent], None] | None) -> None:
        if protocol not in ("native", "twilio"):
            raise ValueError(f"unknown protocol {protocol!r} (native | twilio)")
        if pacing not in ("realtime", "fast"):
            raise ValueError(f"unknown pacing {pacing!r} (realtime | fast)")
        self.url = url
        self.pacing = pacing
        self.options = options
        self.wire = _NativeWire(options) if protocol == "native" else _TwilioWire(options)
        self.report = CallReport(url=url, protocol=protocol, pacing=pacing)
        self.on_event = on_event
        self.wait_playback = options.wait_for_playback if options.wait_for_playback is not None \
            else pacing == "realtime"
        self.segments: list[HeardAudio] = []
        self.playback_end = 0.0  # monotonic time at which everything received so far has "played"
        self.ended = asyncio.Event()
        self.changed = asyncio.Event()
        self.speech_queue: deque[tuple[bytes, bool]] = deque()
        self.speech_done: asyncio.Future[float] | None = None
        self.pending_marks: list[tuple[asyncio.TimerHandle, str]] = []
        self.t0 = 0.0
        self.ws: Any = None

    # -- clock and log
    def now(self) -> float:
        return time.monotonic() - self.t0

    def log(self, direction: Literal["sent", "received", "local"], type_: str, data: dict[str, Any]) -> None:
        event = CallEvent(t=self.now(), direction=direction, type=type_, data=data)
        self.report.events.append(event)
        if self.on_event is not None:
            self.on_event(event)

    async def send_json(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message, ensure_ascii=False))
        kind = message.get("type") or message.get("event") or "?"
        self.log("sent", kind, {k: v for k, v in message.items() if k not in ("type", "event")})

    # -- bot audio bookkeeping
    def open_segment(self) -> HeardAudio:
        seg = HeardAudio(opened_t=self.now())
        self.segments.append(seg)
        return seg

    def current_segment(self) -> HeardAudio | None:
        return self.segments[-1] if self.segments and not self.segments[-1].closed else None

    def close_segment(self, seg: HeardAudio, *, cleared: bool = False) -> None:
        if seg.closed:
            return
        seg.closed = True
        seg.cleared = cleared
        seg.closed_t = self.now()
        self.log("local", "audio.heard", {"turn": seg.turn, "seconds": round(len(seg.wire) / self.wire.bytes_per_second, 3),
                                          "cleared": cleared})

    def on_audio(self, payload: bytes) -> None:
        t = self.now()
        seg = self.current_segment() or self.open_segment()
        if seg.first_t is None:
            seg.first_t = t
            self.log("local", "audio.first_byte", {"turn": seg.turn})
        seg.last_t = t
        seg.wire.extend(payload)
        duration = len(payload) / self.wire.bytes_per_second
        self.playback_end = max(self.playback_end, time.monotonic()) + duration

    def playback_finished(self) -> bool:
        return not self.wait_playback or time.monotonic() >= self.playback_end

    def bot_quiet(self, since_t: float, settle_s: float) -> bool:
        """The bot has spoken since `since_t` and is done: every stretch closed, played out, and nothing new for
        `settle_s` (a greeting or an answer may come as several stretches, e.g. one per language)."""
        spoken = [seg for seg in self.segments if seg.first_t is not None and seg.first_t >= since_t]
        if not spoken or self.current_segment() is not None or not self.playback_finished():
            return False
        last_closed = max(seg.closed_t or 0.0 for seg in spoken)
        return self.now() - last_closed >= settle_s

    # -- reader
    async def reader(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            async for message in self.ws:
                if isinstance(message, (bytes, bytearray)):
                    if self.wire.protocol == "native":
                        self.on_audio(bytes(message))
                    else:
                        self.note_error("binary frame on a Twilio stream")
                else:
                    await self.on_text(message)
                self.changed.set()
        except ConnectionClosed:
            pass
        finally:
            self.report.close_code = getattr(self.ws, "close_code", None)
            seg = self.current_segment()
            if seg is not None:
                self.close_segment(seg)
            self.log("local", "connection.closed", {"code": self.report.close_code})
            self.ended.set()
            self.changed.set()

    def note_error(self, message: str) -> None:
        self.report.errors.append(message)
        self.log("local", "caller.error", {"message": message})

    async def on_text(self, text: str) -> None:
        try:
            msg = json.loads(text)
        except json.JSONDecodeError:
            self.note_error("server sent a text frame that is not JSON")
            return
        if not isinstance(msg, dict):
            self.note_error("server sent JSON that is not an object")
            return
        if self.wire.protocol == "native":
            self.on_native(msg)
        else:
            await self.on_twilio(msg)

    def on_native(self, msg: dict[str, Any]) -> None:
        # Events are named by "event" (server/call/transports/native.py); "type" is read too, as a courtesy to other servers.
        kind = str(msg.get("event") or msg.get("type") or "?")
        data = {k: v for k, v in msg.items() if k not in ("event", "type")}
        self.log("received", kind, data)
        if kind == "call.started":
            self.report.call_id = msg.get("call_id")
            self.report.languages = msg.get("languages")
        elif kind == "audio.start":
            seg = self.current_segment()
            if seg is not None and seg.wire:  # a new turn began without an audio.end for the last one
                self.close_segment(seg)
                seg = None
            seg = seg or self.open_segment()
            seg.turn, seg.text, seg.language = msg.get("turn"), str(msg.get("text") or ""), str(msg.get("language") or "")
        elif kind == "audio.end":
            seg = self.current_segment()
            if seg is not None:
                seg.ack = "ack_ms" in (msg.get("timings") or {})
                self.close_segment(seg, cleared=bool(msg.get("interrupted")))
        elif kind == "audio.clear":
            seg = self.current_segment()
            if seg is not None:
                self.close_segment(seg, cleared=True)
            self.playback_end = time.monotonic()  # the phone's buffer is dropped at once
        elif kind == "call.ended":
            self.report.ended_reason = msg.get("reason")
            self.ended.set()
        elif kind == "error":
            self.report.errors.append(f"{msg.get('code')}: {msg.get('message')}")

    async def on_twilio(self, msg: dict[str, Any]) -> None:
        kind = str(msg.get("event", "?"))
        if msg.get("streamSid") != self.wire.stream_sid:
            self.note_error(f"server's {kind!r} carries streamSid {msg.get('streamSid')!r}, not this stream's")
        if kind == "media":
            media = msg.get("media") or {}
            try:
                payload = base64.b64decode(media.get("payload", ""), validate=True)
            except (ValueError, TypeError):
                self.note_error("media payload is not base64")
                return
            self.on_audio(payload)
            return  # not logged frame by frame: audio.first_byte / audio.heard summarise it
        self.log("received", kind, {k: v for k, v in msg.items() if k not in ("event", "streamSid")})
        if kind == "mark":
            # The server marks the end of each stretch of speech it sends (server/call/transports/twilio.py).
            seg = self.current_segment()
            if seg is not None and seg.wire:
                self.close_segment(seg)
            name = str((msg.get("mark") or {}).get("name", ""))
            # Twilio echoes a mark when the audio queued before it has played (or at once after a clear).
            delay = max(0.0, self.playback_end - time.monotonic()) if self.wait_playback else 0.0
            handle = asyncio.get_running_loop().call_later(delay, self._echo_mark, name)
            self.pending_marks.append((handle, name))
        elif kind == "clear":
            seg = self.current_segment()
            if seg is not None:
                self.close_segment(seg, cleared=True)
            self.playback_end = time.monotonic()
            pending, self.pending_marks = self.pending_marks, []
            for handle, name in pending:
                if handle.when() > asyncio.get_running_loop().time():  # not yet echoed: Twilio returns it at once
                    handle.cancel()
                    self._echo_mark(name)
        else:
            self.note_error(f"unexpected Twilio event {kind!r} from the server")

    def _echo_mark(self, name: str) -> None:
        if self.ended.is_set():
            return
        asyncio.ensure_future(self._send_quietly(self.wire.mark(name)))

    async def _send_quietly(self, message: dict[str, Any]) -> None:
        try:
            await self.send_json(message)
        except Exception:  # the line is closing; a mark echo that cannot go out is not an error
            pass

    # -- the Twilio side has no audio.start/audio.end: a stretch ends when the line goes quiet
    def twilio_segment_tick(self) -> None:
        seg = self.current_segment()
        if seg is None or seg.last_t is None or self.wire.protocol != "twilio":
            return
        quiet = self.now() - seg.last_t
        if quiet >= 0.8 and self.playback_finished():
            self.close_segment(seg)

    # -- sender: one frame every 20 ms, always (a phone line never goes silent on the wire)
    async def sender(self) -> None:
        loop = asyncio.get_running_loop()
        next_t = loop.time()
        while not self.ended.is_set():
            speech = bool(self.speech_queue)
            payload, last = self.speech_queue.popleft() if speech else (self.wire.silence, False)
            try:
                await self.ws.send(self.wire.media(payload))
            except Exception:
                break
            if last and self.speech_done is not None and not self.speech_done.done():
                # Real time: the moment the caller finished speaking is when this frame was due, even if the loop
                # sent it late (and then caught up): that never flatters the server. Fast: when it was sent.
                due = (next_t - self.t0) if self.pacing == "realtime" else self.now()
                self.speech_done.set_result(min(due, self.now()))
            if speech and self.pacing == "fast":
                await asyncio.sleep(0)
                next_t = loop.time()
                continue
            next_t += FRAME_S
            delay = next_t - loop.time()
            if delay < -0.2:  # we fell far behind (a stalled loop): resync instead of bursting
                next_t = loop.time()
                delay = 0
            await asyncio.sleep(max(0.0, delay))

    async def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            self.twilio_segment_tick()
            if predicate():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.changed.clear()
            try:  # wake on any message, and at least every 20 ms for time-based conditions (playback)
                await asyncio.wait_for(self.changed.wait(), timeout=min(remaining, 0.02))
            except asyncio.TimeoutError:
                pass

    def save(self, name: str, segments: Sequence[HeardAudio]) -> str | None:
        """Write what was heard (one WAV per greeting / turn, 16 kHz PCM16) under --save-audio."""
        audio = b"".join(self.wire.decode(bytes(seg.wire)) for seg in segments if seg.wire)
        if self.options.save_audio is None or not audio:
            return None
        self.options.save_audio.mkdir(parents=True, exist_ok=True)
        path = self.options.save_audio / name
        write_wav(path, audio)
        return str(path)

    # -- the conversation
    async def converse(self, utterances: Sequence[Utterance]) -> None:
        for message in self.wire.opening():
            await self.send_json(message)
        # The greeting: all the bot says before the caller speaks (it may come as one stretch per language).
        ok = await self.wait_until(lambda: self.ended.is_set() or self.bot_quiet(0.0, self.options.settle_s),
                                   self.options.greeting_timeout_s)
        greeting = [seg for seg in self.segments if seg.first_t is not None]
        if greeting:
            self.report.greeting_text = " ".join(seg.text for seg in greeting if seg.text)
            self.report.greeting_language = "+".join(dict.fromkeys(seg.language for seg in greeting if seg.language))
            self.report.greeting_heard_s = sum(len(seg.wire) for seg in greeting) / self.wire.bytes_per_second
            self.report.greeting_t = greeting[0].first_t
            self.report.greeting_path = self.save("00_greeting.wav", greeting)
        if not ok:
            self.note_error(f"no complete greeting within {self.options.greeting_timeout_s:.0f} s")

        for index, utt in enumerate(utterances, start=1):
            if self.ended.is_set():
                self.report.turns.append(TurnReport(index=index, name=utt.name, speech_s=utt.duration_s,
                                                    error="the call had ended"))
                continue
            await self.speak_turn(index, utt)
            answer = self.report.turns[-1].answer or {}
            if self.options.stop_after_transfer and answer.get("route") == "agent":
                break

    async def speak_turn(self, index: int, utt: Utterance) -> None:
        turn = TurnReport(index=index, name=utt.name, speech_s=utt.duration_s)
        self.report.turns.append(turn)
        if self.pacing == "realtime" and self.options.pause_s > 0:
            await asyncio.sleep(self.options.pause_s)
        frames = self.wire.frames(utt)
        self.speech_done = asyncio.get_running_loop().create_future()
        turn.speech_start_t = self.now()
        first_event = len(self.report.events)
        self.log("local", "speech.start", {"turn": index, "name": utt.name, "seconds": round(utt.duration_s, 3)})
        self.speech_queue.extend((f, i == len(frames) - 1) for i, f in enumerate(frames))
        if self.pacing == "fast":
            tail = int(self.options.trailing_silence_s / FRAME_S)
            self.speech_queue.extend((self.wire.silence, False) for _ in range(tail))
        done_or_ended = await asyncio.wait(
            [self.speech_done, asyncio.ensure_future(self.ended.wait())], return_when=asyncio.FIRST_COMPLETED,
            timeout=utt.duration_s + 30,
        )
        for pending in done_or_ended[1]:
            if pending is not self.speech_done:
                pending.cancel()
        if not self.speech_done.done():
            turn.error = "the call ended while the caller was speaking" if self.ended.is_set() else "speech not sent"
            self.speech_queue.clear()
            self.note_error(f"turn {index}: {turn.error}")
            return
        turn.speech_end_t = self.speech_done.result()
        self.log("local", "speech.end", {"turn": index})

        # Two limits: how long the first answer byte may take (the figure under test), then how long hearing the
        # answer out may take (long spoken answers, synthesized more slowly than real time on a loaded machine).
        for _ in range(2):  # twice when the first stretch was only an acknowledgement: then the answer follows
            started = await self.wait_until(
                lambda: self.ended.is_set() or self.answer_segment(turn.speech_start_t) is not None,
                self.options.turn_timeout_s,
            )
            finished = started and await self.wait_until(
                lambda: self.ended.is_set() or self.bot_quiet(turn.speech_start_t, self.options.settle_s),
                self.options.answer_timeout_s,
            )
            if self.ended.is_set() or self.answer_segment(turn.speech_start_t) is not None:
                break
        seg = self.answer_segment(turn.speech_start_t)
        for event in self.report.events[first_event:]:
            if event.direction != "received":
                continue
            if event.type == "transcript.partial":
                turn.partials += 1
            elif event.type == "transcript.final":
                turn.final_t, turn.transcript = event.t, event.data
            elif event.type == "answer" and turn.answer is None:
                turn.answer_t, turn.answer = event.t, event.data
            # The server's own per-stage split, wherever it can give it: the answer event knows endpointing,
            # recognition and routing; synthesis is known only once audio flows (audio.start / audio.end).
            timings = event.data.get("timings")
            if isinstance(timings, dict) and event.type in ("answer", "audio.start", "audio.end"):
                turn.timings = {**timings, **(turn.timings or {})}  # the first stretch's figures win
        ack = next((s for s in self.segments if s.ack and s.first_t is not None and turn.speech_start_t is not None
                    and s.first_t >= turn.speech_start_t), None)
        turn.ack_t = ack.first_t if ack is not None else None
        if seg is not None:
            heard = [s for s in self.segments if s.first_t is not None and s.first_t >= seg.first_t and not s.cleared]
            turn.first_audio_t = seg.first_t
            turn.audio_done_t = self.now()
            turn.heard_s = sum(len(s.wire) for s in heard) / self.wire.bytes_per_second
            turn.heard_text = " ".join(s.text for s in heard if s.text)
            turn.audio_path = self.save(f"{index:02d}_{Path(utt.name).stem}.wav", heard)
        if seg is None:
            turn.error = ("the call ended before an answer was heard" if self.ended.is_set()
                          else f"no answer audio within {self.options.turn_timeout_s:.0f} s")
        elif not finished and not self.ended.is_set():
            turn.error = f"the answer was still playing after {self.options.answer_timeout_s:.0f} s"
        if turn.error:
            self.note_error(f"turn {index}: {turn.error}")

    def answer_segment(self, speech_start_t: float | None) -> HeardAudio | None:
        """The bot audio that answers this turn: the first stretch begun since the caller started speaking that was
        not cut off by a barge-in. A server that endpoints on a pause inside the recording answers early and a
        barge-in clears that answer; an answer that starts before the last speech frame but is never cleared still
        counts (its latency comes out negative, which the report shows rather than hides)."""
        if speech_start_t is None:
            return None
        for seg in self.segments:
            # An acknowledgement is known once it has ended (audio.end says ack_ms); until then it counts as the
            # start of the answer, which only ends the wait for the first byte: the turn is measured afterwards.
            if seg.first_t is not None and seg.first_t >= speech_start_t and not seg.cleared and not seg.ack:
                return seg
        return None

    async def hang_up(self) -> None:
        if self.ended.is_set():
            return
        for message in self.wire.closing():
            await self.send_json(message)
        if self.wire.protocol == "native":
            await self.wait_until(self.ended.is_set, self.options.hangup_timeout_s)


async def run_call(
    files: Sequence[str | Path | Utterance],
    url: str,
    protocol: Protocol = "native",
    pacing: Pacing = "realtime",
    *,
    options: CallOptions | None = None,
    on_event: Callable[[CallEvent], None] | None = None,
) -> CallReport:
    """Place one call, say each recording in turn, hang up; the report holds every event and per-turn figures.

    Raises CallerError when the call cannot be placed, AudioFormatError for an unreadable recording (before dialling).
    """
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus, InvalidURI, WebSocketException

    options = options or CallOptions()
    utterances = [f if isinstance(f, Utterance) else load_utterance(f) for f in files]
    call = _Call(url=url, protocol=protocol, pacing=pacing, options=options, on_event=on_event)
    try:
        ws = await asyncio.wait_for(
            connect(url, additional_headers=call.wire.headers(url), max_size=2**20, open_timeout=options.open_timeout_s),
            timeout=options.open_timeout_s + 1,
        )
    except InvalidURI as exc:
        raise CallerError(f"not a websocket URL: {url!r}") from exc
    except InvalidStatus as exc:
        raise CallerError(f"{url}: the server refused the call (HTTP {exc.response.status_code})") from exc
    except (OSError, asyncio.TimeoutError, WebSocketException) as exc:
        raise CallerError(f"{url}: cannot connect ({type(exc).__name__}: {exc})") from exc

    call.ws = ws
    call.t0 = time.monotonic()
    call.report.started_at = time.time()
    call.log("local", "connection.open", {"url": url, "protocol": protocol})
    reader = asyncio.create_task(call.reader())
    sender = asyncio.create_task(call.sender())
    try:
        await call.converse(utterances)
        await call.hang_up()
    finally:
        call.ended.set()
        for handle, _ in call.pending_marks:
            handle.cancel()
        sender.cancel()
        try:
            await ws.close()
        except Exception:
            pass
        try:
            await asyncio.wait_for(reader, timeout=3)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            reader.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        call.report.duration_s = call.now()
    return call.report
