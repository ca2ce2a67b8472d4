"""Live view of every call in progress: its transcript as it happens, audio taps (listen-in, the agent bridge) and
the call's recording (a WAV per call, in a folder or the database: server/store/recordings.py).

`LiveRegistry.attach(session)` hooks one CallSession at its connection: everything the caller sends (audio, keys,
hang-up) and everything the service sends back (transcripts, answers, speech and its text) passes through the
`Connection`, so a tap there sees the whole call without the session knowing about consoles. Taps never block the
call: subscribers get messages through bounded queues, and a full queue drops audio, never the call.
"""
from __future__ import annotations

import asyncio
import io
import logging
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from server.call.messages import AnswerOut, AudioIn, AudioOut, AudioStart, CallEnded, DtmfIn, FinalOut, HangupIn

log = logging.getLogger("hotline.people.live")

SAMPLE_RATE = 16000
CHANNEL_CALLER = 1  # listen-in frames are prefixed with one byte: whose audio it is
CHANNEL_LINE = 2  # what the caller hears (bot speech, agent)


@dataclass
class TranscriptEntry:
    speaker: str  # caller | bot | agent
    text: str
    language: str
    at: float  # seconds since the call started
    kind: str = ""  # utterance | answer | prompt | typed | speech
    route: str | None = None
    topic: str | None = None
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


class Recording:
    """Mono mix of the caller's audio (placed by sample count: the caller streams in real time) and what the caller
    hears (placed at the wall-clock moment it was sent, never overlapping itself). Written at the end of the call."""

    MAX_S = 2 * 3600

    def __init__(self, *, clock: Callable[[], float], max_bytes: int = 64 * 1024 * 1024) -> None:
        self.clock = clock
        self.t0 = clock()
        self.caller = bytearray()
        self.line: list[tuple[int, bytes]] = []
        self._line_cursor = 0
        # Kept audio (both sides) stops at max_bytes, and the mixed file's length at as many samples: one call
        # never takes more memory or disk than that.
        self.max_bytes = max_bytes
        self.kept = 0
        self.truncated = False

    def _room(self, n: int) -> bool:
        if self.kept + n > self.max_bytes:
            self.truncated = True
            return False
        self.kept += n
        return True

    def caller_audio(self, pcm: bytes) -> None:
        if len(self.caller) < self.MAX_S * SAMPLE_RATE * 2 and self._room(len(pcm)):
            self.caller += pcm

    def line_audio(self, pcm: bytes) -> None:
        at = max(self._line_cursor, int((self.clock() - self.t0) * SAMPLE_RATE))
        if at < self.MAX_S * SAMPLE_RATE and (at + len(pcm) // 2) * 2 <= self.max_bytes and self._room(len(pcm)):
            self.line.append((at, pcm))
            self._line_cursor = at + len(pcm) // 2

    def mix(self) -> np.ndarray:
        caller = np.frombuffer(bytes(self.caller[: len(self.caller) // 2 * 2]), dtype="<i2").astype(np.int32)
        end = max([len(caller)] + [at + len(p) // 2 for at, p in self.line])
        out = np.zeros(end, dtype=np.int32)
        out[: len(caller)] += caller
        for at, pcm in self.line:
            x = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.int32)
            out[at : at + len(x)] += x
        return np.clip(out, -32768, 32767).astype("<i2")

    def wav(self) -> bytes:
        out = io.BytesIO()
        with wave.open(out, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(SAMPLE_RATE)
            w.writeframes(self.mix().tobytes())
        return out.getvalue()


@dataclass
class LiveCall:
    call_id: str
    session: Any
    started_wall: float  # time.time() at attach
    started: float  # clock() at attach
    transcript: list[TranscriptEntry] = field(default_factory=list)
    language: str | None = None
    route: str | None = None
    topic: str | None = None
    state: str = "bot"  # bot | queued | offered | with_agent | ended
    agent: str | None = None
    queued_at: float | None = None
    watchers: set[Any] = field(default_factory=set)  # Subscriber: transcript events
    listeners: set[Any] = field(default_factory=set)  # Subscriber: audio frames (channel-prefixed)
    on_caller_audio: list[Callable[[bytes], None]] = field(default_factory=list)
    on_inbound: list[Callable[[Any], None]] = field(default_factory=list)  # DTMF, hang-up
    on_transcript: list[Callable[[TranscriptEntry], None]] = field(default_factory=list)
    recording: Recording | None = None
    pending_decision: tuple[str, str] | None = None  # the answer whose speech starts next
    next_speaker: str | None = None  # "agent" when the next speech is an agent's typed reply

    @property
    def port(self) -> Any:
        from server.people.port import CallPort

        return CallPort(self.session)

    def summary(self, now: float) -> dict[str, Any]:
        return {"call_id": self.call_id, "state": self.state, "language": self.language, "topic": self.topic,
                "route": self.route, "agent": self.agent, "duration_s": round(now - self.started, 1),
                "waiting_s": round(now - self.queued_at, 1) if self.queued_at is not None and self.state in ("queued", "offered") else None,
                "started_wall": self.started_wall}


class Subscriber:
    """One console's outbound queue (bounded: a slow console loses audio frames, never blocks a call)."""

    def __init__(self, *, maxsize: int = 500) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=maxsize)
        self.dropped = 0

    def put(self, item: Any) -> None:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.dropped += 1


class LiveRegistry:
    def __init__(self, *, recordings: Any = None, recordings_dir: Path | None = None,
                 clock: Callable[[], float] = time.monotonic, recording_max_bytes: int = 64 * 1024 * 1024) -> None:
        if recordings is None and recordings_dir is not None:  # a folder given as such (tests, one process)
            from server.store.recordings import FolderRecordings

            recordings = FolderRecordings(recordings_dir)
        self.recordings = recordings  # server.store.recordings.RecordingStore, or None: not recorded
        self.recording_max_bytes = recording_max_bytes  # one call's recording stops growing at this size
        self.clock = clock
        self.calls: dict[str, LiveCall] = {}  # the calls this process holds
        self.on_end: list[Callable[[LiveCall], None]] = []
        self.cluster: Any = None  # server.cluster.live.ClusterLive with several processes: their calls too

    def get(self, call_id: str) -> LiveCall | None:
        """A call of this process, or (several processes) one another process holds, seen through the bus."""
        live = self.calls.get(call_id)
        if live is None and self.cluster is not None:
            live = self.cluster.remote_call(call_id)
        return live

    def summaries(self, now: float) -> list[dict[str, Any]]:
        """Every live call for the supervisors' view: this process's, and with several processes every process's."""
        if self.cluster is not None:
            return self.cluster.summaries(now)
        return [c.summary(now) for c in list(self.calls.values())]

    def attach(self, session: Any) -> LiveCall:
        """Tap a session's connection. Idempotent."""
        existing = self.calls.get(session.call_id)
        if existing is not None:
            return existing
        live = LiveCall(call_id=session.call_id, session=session, started_wall=time.time(), started=self.clock(),
                        recording=Recording(clock=self.clock, max_bytes=self.recording_max_bytes)
                        if self.recordings is not None else None)
        self.calls[session.call_id] = live
        conn = session.conn
        receive, send, close = conn.receive, conn.send, conn.close

        async def tapped_receive() -> list[Any]:
            messages = await receive()
            for m in messages:
                try:
                    self._inbound(live, m)
                except Exception:  # a console problem must never break the call
                    log.exception("inbound tap failed")
            return messages

        def tapped_send(message: Any) -> bool:
            try:
                self._outbound(live, message)
            except Exception:
                log.exception("outbound tap failed")
            return send(message)

        async def tapped_close(code: int = 1000, **kw: Any) -> None:
            try:
                await close(code, **kw)
            finally:
                # The taps point at `live`, which points at the session, which holds the connection: a cycle that
                # would keep the whole call (its audio, its recording) until the garbage collector's next full
                # pass. Nothing is tapped after the close: the connection's own methods come back.
                for name in ("receive", "send", "close"):
                    conn.__dict__.pop(name, None)
                await self._ended(live)

        conn.receive, conn.send, conn.close = tapped_receive, tapped_send, tapped_close
        return live

    # --- taps

    def _now(self, live: LiveCall) -> float:
        return round(self.clock() - live.started, 2)

    def _inbound(self, live: LiveCall, m: Any) -> None:
        if isinstance(m, AudioIn):
            if live.recording is not None:
                live.recording.caller_audio(m.pcm16)
            for fn in list(live.on_caller_audio):
                fn(m.pcm16)
            if live.listeners:
                frame = bytes([CHANNEL_CALLER]) + m.pcm16
                for sub in list(live.listeners):
                    sub.put(frame)
        elif isinstance(m, (DtmfIn, HangupIn)):
            for fn in list(live.on_inbound):
                fn(m)

    def _outbound(self, live: LiveCall, m: Any) -> None:
        if isinstance(m, AudioOut):
            if live.recording is not None:
                live.recording.line_audio(m.pcm16)
            if live.listeners:
                frame = bytes([CHANNEL_LINE]) + m.pcm16
                for sub in list(live.listeners):
                    sub.put(frame)
            return
        if isinstance(m, FinalOut):
            if m.language in ("en", "zh"):
                live.language = m.language
            self.add_entry(live, TranscriptEntry("caller", m.text, m.language, self._now(live), kind="utterance"))
        elif isinstance(m, AnswerOut):
            live.route, live.topic = m.route, m.topic
            self.publish(live, {"event": "decision", "call_id": live.call_id, "route": m.route, "topic": m.topic,
                                "language": m.language})
            live.pending_decision = (m.route, m.topic)
        elif isinstance(m, AudioStart):
            if not m.text:
                return
            decision, live.pending_decision = live.pending_decision, None
            speaker, live.next_speaker = live.next_speaker or "bot", None
            entry = TranscriptEntry(speaker, m.text, m.language, self._now(live),
                                    kind="typed" if speaker == "agent" else ("answer" if decision else "prompt"),
                                    route=decision[0] if decision else None, topic=decision[1] if decision else None)
            self.add_entry(live, entry)
        elif isinstance(m, CallEnded):
            self.publish(live, {"event": "call.ended", "call_id": live.call_id, "state": m.state, "reason": m.reason})

    def add_entry(self, live: LiveCall, entry: TranscriptEntry) -> None:
        forward = getattr(live, "forward_entry", None)
        if forward is not None:  # a call another process holds: its transcript lives there (and comes back here)
            forward(entry)
            return
        live.transcript.append(entry)
        del live.transcript[:-1000]
        for fn in list(live.on_transcript):
            fn(entry)
        self.publish(live, {"event": "transcript", "call_id": live.call_id, **entry.as_dict()})

    def publish(self, live: LiveCall, event: dict[str, Any]) -> None:
        for sub in list(live.watchers):
            sub.put(event)

    async def _ended(self, live: LiveCall) -> None:
        live.state = "ended"
        self.calls.pop(live.call_id, None)
        for fn in list(self.on_end):
            try:
                fn(live)
            except Exception:
                log.exception("end-of-call hook failed")
        if live.recording is not None and self.recordings is not None and (live.recording.caller or live.recording.line):
            try:
                wav = await asyncio.to_thread(live.recording.wav)
                await self.recordings.save(live.call_id, wav)
            except Exception:
                log.exception("recording could not be written")
