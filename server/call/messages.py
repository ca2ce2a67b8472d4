"""Typed messages of one call, split by the direction they travel.

Inbound messages come out of a transport serializer (wire format -> these); outbound messages go into one
(these -> wire format). The call session only ever sees these types: no JSON, no base64, no μ-law.
Control messages (hang-up, barge-in) travel in their own lane so that they never wait behind audio.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Union

ID_MAX = 64  # the store's caller_id, carrier_call_id and stream_id columns
DTMF_DIGITS = frozenset("0123456789*#ABCD")


def clean_id(value: object, limit: int = ID_MAX) -> str | None:
    """A peer-supplied identifier (caller id, call SID, stream SID) fit to store: printable, trimmed, at most
    `limit` characters; None when nothing is left."""
    if value is None:
        return None
    text = "".join(ch for ch in str(value)[: limit * 4] if ch.isprintable()).strip()[:limit]
    return text or None


# ------------------------------------------------------------------ inbound (caller -> service)


@dataclass(frozen=True, slots=True)
class AudioIn:
    """Caller audio, already 16 kHz mono PCM16 little-endian (the serializer converted it)."""

    pcm16: bytes


@dataclass(frozen=True, slots=True)
class StartCall:
    """The caller side announced the call (native `call.start`, Twilio `start`)."""

    language: Literal["en", "zh"] | None = None  # a hint; the recognizer still listens for both
    caller_id: str | None = None  # caller data: stored, never logged in message text
    carrier_call_id: str | None = None  # Twilio callSid
    stream_id: str | None = None  # Twilio streamSid
    parameters: dict[str, str] = field(default_factory=dict)  # Twilio customParameters


@dataclass(frozen=True, slots=True)
class HangupIn:
    """The caller hung up (native `hangup`, Twilio `stop`)."""

    reason: str = "hangup"


@dataclass(frozen=True, slots=True)
class DtmfIn:
    digit: str


@dataclass(frozen=True, slots=True)
class PlaybackMark:
    """The carrier reports that playback reached a mark we sent (Twilio `mark`)."""

    name: str


@dataclass(frozen=True, slots=True)
class ProtocolError:
    """The peer sent something we cannot use. `close_code` set: the connection must close with it."""

    code: str  # machine-readable: bad_json, unknown_event, bad_audio, frame_too_large, unsupported_sample_rate ...
    message: str
    close_code: int | None = None


@dataclass(frozen=True, slots=True)
class Ignored:
    """A valid message that carries nothing for the call (Twilio `connected`)."""

    event: str


Inbound = Union[AudioIn, StartCall, HangupIn, DtmfIn, PlaybackMark, ProtocolError, Ignored]

# ------------------------------------------------------------------ outbound (service -> caller)


@dataclass(frozen=True, slots=True)
class CallStarted:
    call_id: str
    languages: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PartialOut:
    stable: str
    unstable: str


@dataclass(frozen=True, slots=True)
class FinalOut:
    text: str
    language: str  # en | zh | other | unknown
    language_code: str
    language_probability: float
    language_source: str
    mixed: bool
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class AnswerOut:
    route: str
    topic: str
    text: str
    language: str
    entry_id: str | None
    score: float
    # Where the time went for this turn, in ms: endpoint (end-of-utterance wait), asr (final recognition after
    # the endpoint), route. Read by `hotline bench call`.
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AudioStart:
    turn: int
    text: str
    language: str


@dataclass(frozen=True, slots=True)
class AudioOut:
    """One 20 ms frame of 16 kHz PCM16 (the last frame of a turn may be shorter)."""

    pcm16: bytes
    turn: int


@dataclass(frozen=True, slots=True)
class AudioEnd:
    turn: int
    interrupted: bool = False
    timings: dict[str, float] = field(default_factory=dict)  # synthesis_ms (to the first chunk), response_ms


@dataclass(frozen=True, slots=True)
class AudioClear:
    """Barge-in: drop whatever audio the client still has buffered."""

    turn: int


@dataclass(frozen=True, slots=True)
class CallEnded:
    state: str  # the final state (FinalState)
    reason: str  # the specific reason (hangup, slow_consumer, no_input ...)


@dataclass(frozen=True, slots=True)
class ErrorOut:
    code: str
    message: str


Outbound = Union[CallStarted, PartialOut, FinalOut, AnswerOut, AudioStart, AudioOut, AudioEnd, AudioClear, CallEnded, ErrorOut]
