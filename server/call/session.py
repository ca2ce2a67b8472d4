"""One call: a pipeline of small async stages with typed messages between them.

    reader ──AudioIn──► listener (VAD + endpointing, on the loop) ──FinalRequest──► recognizer (pool)
      │                    │ SpeechStarted / partials                                   │ Transcript
      │                    ▼                                                            ▼
      └──control──► control lane (hang-up, barge-in, end)        dialog (router.decide, pool) ──Speak──► speaker
                                                                                   (synthesis pool, paced frames)
    timer: no-input re-prompts (NoInputPolicy, pure, takes `now`)

Control messages never wait behind audio: they go to their own queue, handled by one task that can stop the
speaker at once. Blocking inference (Whisper, TTS, embeddings) runs in the shared bounded pools. Every call ends
in exactly one final state, recorded with its reason, and every task of the call is cancelled before `run()`
returns.
"""
from __future__ import annotations

import asyncio
import copy
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal

from server.logging import call_id_var
from server.call.messages import (
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
    Ignored,
    PartialOut,
    PlaybackMark,
    ProtocolError,
    StartCall,
)
from server.call.limits import AudioPacer, TokenBucket
from server.call.turn_taking import NoInputPolicy, acknowledgement_wait, split_by_language
from server.call.pools import Overloaded
from server.store.recorder import CallRecorder
from server.call.transports.connection import Connection, Disconnected
from server.tasks import cancel_and_wait
from voice.streaming import FinalRequest, PartialRequest, join_text
from voice.tts.lead import spoken_units
from voice.types import FRAME_SAMPLES, SAMPLE_RATE, SpeechStarted, Transcript

if TYPE_CHECKING:  # imported for types only: the models and the router load when the app starts, not on import
    from routing.router import Decision
    from server.call.wiring import CallPipeline, Components, Pools
    from server.metrics import Metrics
    from server.people.queue_service import AgentQueue
    from server.settings import Settings
    from server.store import Store

log = logging.getLogger("hotline.call")

FRAME_BYTES = FRAME_SAMPLES * 2
FRAME_S = FRAME_SAMPLES / SAMPLE_RATE
CLOSE_NORMAL, CLOSE_POLICY, CLOSE_INTERNAL, CLOSE_TRY_AGAIN = 1000, 1008, 1011, 1013
STORE_WAIT_S = 2.0  # how long an answer waits for its caller turn to be stored before it goes anyway
CLEANUP_WAIT_S = 5.0  # how long an ending call waits for its stages to stop before it records the end anyway


def speculate_now(*, early: bool, others_pending: int, started: bool) -> bool:
    """Whether a call starts the speculative recognition of a silence now. Pure.

    The early one (voice settings early_prefinal_silence_s) only while no other recognition is running or queued
    in the process (this call's own courtesy partial aside): under load it would mostly be wasted on short pauses
    inside an utterance, and delay other calls' finals. The later one always, unless the early one already started
    for the same silence (its result is what the final reuses)."""
    if early:
        return others_pending <= 0
    return not started


# ------------------------------------------------------------------ messages between the stages


@dataclass(frozen=True, slots=True)
class Utterance:
    """A final transcript on its way to the dialog stage, with the timings measured so far."""

    transcript: Transcript
    speech_end_wall: float  # monotonic time at which the caller stopped speaking (estimated from the audio)
    endpoint_s: float
    recognition_s: float  # the wait for the final after the endpoint (0 when the speculative result was ready)
    speculative: bool = False  # the final is the speculative recognition's result, computed during the silence
    number: int = 0  # the utterance's number in the call, as its partials had it (preemptive syntheses are its own)
    early: bool = False  # ... and that recognition was the early one (voice settings early_prefinal_silence_s)


@dataclass(slots=True)
class Speak:
    text: str
    language: Literal["en", "zh"]
    kind: str  # prompt | answer
    seq: int  # the bot turn's number (store seq, `turn` on the wire)
    interruptible: bool = True
    decision: Decision | None = None  # for answers
    speech_end_wall: float | None = None  # for the response-time measurement (first segment of an answer)
    then: str | None = None  # after playing: "hangup" (goodbye) | "queue" (agent queue) | "refuse" (unavailable)
    # Synthesis started when the answer was decided, not when the speaker reaches it: (chunk iterator, first chunk).
    prefetch: "asyncio.Task[Any] | None" = None
    ack_by: float | None = None  # monotonic time by which, if no answer audio is ready, "one moment" is said
    prefetch_started: float = 0.0  # when the prefetch began (the acknowledgement's estimate counts from it)


@dataclass(frozen=True, slots=True)
class BargeIn:
    at: float


@dataclass(frozen=True, slots=True)
class EndCall:
    state: str
    reason: str
    close_code: int = CLOSE_NORMAL


Control = BargeIn | EndCall | HangupIn


@dataclass
class CallContext:
    """What every call shares: settings, models, pools, store, metrics, the agent queue. Built once by the app."""

    settings: Settings
    components: Components
    pools: Pools
    store: Store
    metrics: Metrics
    queue: AgentQueue
    sessions: dict[str, "CallSession"] = field(default_factory=dict)


def _verdict_fields(v: Any) -> dict[str, Any]:
    return {
        "language": v.label,
        "language_code": v.code or "",
        "language_probability": float(v.probability),
        "language_source": v.source,
        "mixed": bool(v.mixed),
    }


class CallSession:
    def __init__(self, *, connection: Connection, context: CallContext, clock: Callable[[], float] = time.monotonic,
                 refusal: str | None = None) -> None:
        self.conn = connection
        # Set when a shared service (database, Redis) is unreachable: the caller hears an apology and the call
        # ends as error/service_unavailable instead of starting a dialog the service could not finish.
        self.refusal = refusal
        self.ctx = context
        self.settings = context.settings
        self.metrics = context.metrics
        self.clock = clock
        self.call_id = uuid.uuid4().hex
        self.protocol = connection.protocol
        s = self.settings
        self.recorder = CallRecorder(store=context.store, call_id=self.call_id, metrics=context.metrics,
                                     max_queue=s.recorder_queue_max)
        connection.on_slow_consumer = lambda: self._control_now(EndCall("dropped", "slow_consumer", CLOSE_POLICY))
        self._pacer = AudioPacer(burst_s=s.inbound_burst_s) if s.inbound_burst_s is not None else None
        self._control_bucket = TokenBucket(capacity=s.control_events_burst, rate=s.control_events_per_s)
        self._audio_q: asyncio.Queue[bytes] = asyncio.Queue(maxsize=s.inbound_queue_max)
        self._finals_q: asyncio.Queue[tuple[Any, float, float, int]] = asyncio.Queue()
        self._dialog_q: asyncio.Queue[Utterance] = asyncio.Queue()
        self._speak_q: asyncio.Queue[Speak] = asyncio.Queue()
        self._control_q: asyncio.Queue[Control] = asyncio.Queue()
        self._started = asyncio.Event()
        self._ended = asyncio.Event()
        self._end: EndCall | None = None
        self._start_msg: StartCall | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._partial_task: asyncio.Task[Any] | None = None
        self._spec_task: asyncio.Task[Any] | None = None

        self.pipeline: CallPipeline | None = None  # built at start
        self.language_hint: str | None = None
        self._audio_s = 0.0  # seconds of caller audio received
        self._utterance = 0  # increments at every final request: stale partials are dropped
        self._caller_speaking = False
        self._busy = 0  # utterances being recognised or answered
        self._play_task: asyncio.Task[Any] | None = None
        self._prefetches: set[asyncio.Task[Any]] = set()  # answers' first chunks being synthesized ahead
        # Preemptive synthesis (settings.preemptive_synthesis): (first chunk's text, language) -> (task, started,
        # utterance number), started from a transcript of the utterance before its final.
        self._preempted: dict[tuple[str, str], tuple[asyncio.Task[Any], float, int]] = {}
        self._preempt_seen: tuple[int, tuple[str, str]] | None = None  # the last partial's answer (confirmation)
        self._playing: Speak | None = None
        self._playback_end = 0.0  # when the client will have played everything sent so far
        self._first_audio_at: float | None = None
        self._last_seq = -1
        self._sent_s = 0.0
        self._queued = False
        self.no_input = NoInputPolicy(silence_s=s.no_input_s, reprompts=s.no_input_reprompts)
        self.turns_answered = 0

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        """Run the call until it ends; always records the final state and leaves nothing running."""
        call_id_var.set(self.call_id)
        self.ctx.sessions[self.call_id] = self
        self.metrics.calls_in_progress.labels(protocol=self.protocol).inc()
        self.recorder.start()
        self.recorder.call_started(protocol=self.protocol)
        self.conn.start()
        log.info("call connected", extra={"protocol": self.protocol})
        try:
            self._spawn(self._reader(), "reader")
            self._spawn(self._control_lane(), "control")
            timeout = self.settings.start_timeout_s if self.protocol == "native" else max(10.0, self.settings.start_timeout_s)
            try:
                async with asyncio.timeout(timeout):  # not wait_for: it can swallow a cancel on Python 3.11
                    await self._wait_start_or_end()
            except TimeoutError:
                if self.protocol != "native":
                    self._control_now(EndCall("error", "no_start_event", CLOSE_POLICY))
            if self._end is None:
                await (self._refuse() if self.refusal is not None else self._begin())
            await self._ended.wait()
        except asyncio.CancelledError:  # server shutting down
            self._finish_reason(EndCall("dropped", "server_shutdown", 1001))
            raise
        except Exception as exc:
            log.exception("call failed")
            self.metrics.errors.labels(kind="session").inc()
            self._finish_reason(EndCall("error", f"internal:{type(exc).__name__}", CLOSE_INTERNAL))
        finally:
            await asyncio.shield(self._cleanup())

    async def _wait_start_or_end(self) -> None:
        started = asyncio.ensure_future(self._started.wait())
        ended = asyncio.ensure_future(self._ended.wait())
        try:
            await asyncio.wait({started, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            started.cancel()
            ended.cancel()

    async def _begin(self) -> None:
        start = self._start_msg or StartCall()
        self.language_hint = start.language
        self.pipeline = self.ctx.components.new_call(language_hint=start.language)
        fields = {
            "language_hint": start.language,
            "caller_id": start.caller_id,
            "carrier_call_id": start.carrier_call_id,
            "stream_id": start.stream_id,
        }
        self.recorder.update(**{k: v for k, v in fields.items() if v is not None})
        self.recorder.event("started", {"protocol": self.protocol, "hint": start.language})
        self._send(CallStarted(call_id=self.call_id, languages=tuple(self.settings.languages)))
        if self.settings.greeting:
            order = [start.language] if start.language in self.settings.languages else []
            order += [lang for lang in self.settings.languages if lang not in order]
            for lang in order:
                self._say("greeting", lang)
        self._spawn(self._listener(), "listener")
        self._spawn(self._recognizer(), "recognizer")
        self._spawn(self._dialog(), "dialog")
        self._spawn(self._speaker(), "speaker")
        self._spawn(self._timer(), "timer")

    async def _refuse(self) -> None:
        """Apologise in the caller's language first, then the other, and close with 1013 (try again later)."""
        start = self._start_msg or StartCall()
        self.language_hint = start.language
        self.recorder.event("refused", {"protocol": self.protocol, "reason": "service_unavailable"})
        self.metrics.errors.labels(kind="refused_unavailable").inc()
        self._send(CallStarted(call_id=self.call_id, languages=tuple(self.settings.languages)))
        self._send(ErrorOut(code="service_unavailable",
                            message="the service cannot take new calls right now; please call again in a few minutes"))
        order = [start.language] if start.language in self.settings.languages else []
        order += [lang for lang in self.settings.languages if lang not in order]
        for i, lang in enumerate(order):
            self._say("service_unavailable", lang, interruptible=False, then="refuse" if i == len(order) - 1 else None)
        self._spawn(self._speaker(), "speaker")

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(self._guard(coro, name), name=f"{name}-{self.call_id[:8]}")
        self._tasks.append(task)

    async def _guard(self, coro: Any, name: str) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("stage failed", extra={"stage": name})
            self.metrics.errors.labels(kind=f"stage_{name}").inc()
            self._control_now(EndCall("error", f"{name}:{type(exc).__name__}"[:64], CLOSE_INTERNAL))

    def _finish_reason(self, end: EndCall) -> None:
        if self._end is None:
            self._end = end
        self._ended.set()

    def _control_now(self, message: Control) -> None:
        """Enter the control lane; an EndCall also wakes run() directly (first ending wins)."""
        if isinstance(message, EndCall):
            if self._queued and message.state in ("caller_hangup", "dropped"):
                # Handed to the agent queue: that is the call's outcome, however the caller left the line.
                message = EndCall("transferred_to_agent", f"queued_{message.reason}"[:64], message.close_code)
            self._finish_reason(message)
            return
        self._control_q.put_nowait(message)

    async def _cleanup(self) -> None:
        end = self._end or EndCall("error", "unknown")
        current = asyncio.current_task()
        tasks = [t for t in [*self._tasks, self._partial_task, self._spec_task, self._play_task, *self._prefetches]
                 if t is not None and t is not current]
        # Bounded: a stage that does not stop must not keep the call from getting its final state. (Errors are
        # dropped: the stage guard has already logged them.)
        stuck = await cancel_and_wait(*tasks, timeout=CLEANUP_WAIT_S)
        if stuck:
            log.error("stages did not stop", extra={"stages": sorted(t.get_name().split("-")[0] for t in stuck)})
            self.metrics.errors.labels(kind="stuck_stage").inc()
        if self._queued:
            self.ctx.queue.leave(self.call_id, reason=end.reason, now=self.clock())
        self.recorder.end(state=end.state, reason=end.reason)
        if not self.conn.broken:
            self.conn.send(CallEnded(state=end.state, reason=end.reason))
        await self.conn.close(end.close_code)
        await self.recorder.close()
        self.metrics.calls_in_progress.labels(protocol=self.protocol).dec()
        self.metrics.calls.labels(protocol=self.protocol, state=end.state).inc()
        self.ctx.sessions.pop(self.call_id, None)
        log.info("call ended", extra={"state": end.state, "reason": end.reason, "turns": self.turns_answered})
        self._release()

    def _release(self) -> None:
        """Drop the ended call's references to its finished tasks and queued items. A cancelled stage keeps its
        CancelledError, whose traceback holds the stage's frames, and so this session: session -> task -> error ->
        frame -> session is a cycle, which only the garbage collector's full pass frees, hundreds of calls later
        in a long-running service (the soak saw about 100 KB a call held that way: the call's audio, its
        connection, its recording). Without these references the call is freed by reference counting as it ends."""
        self._tasks.clear()
        self._partial_task = self._spec_task = self._play_task = None
        self._prefetches.clear()
        self._preempted.clear()
        self._playing = None
        for queue in (self._audio_q, self._finals_q, self._dialog_q, self._speak_q, self._control_q):
            while not queue.empty():
                queue.get_nowait()
        self.conn.on_slow_consumer = None  # it points back at this session

    # ------------------------------------------------------------------ output helpers

    def _send(self, message: Any) -> None:
        self.conn.send(message)  # a full queue reports slow_consumer through the connection's callback

    def _say(self, key: str, language: str, *, interruptible: bool = True, then: str | None = None, **params: Any) -> None:
        text = self.ctx.components.prompts.text(key, language, **params)
        self._speak_q.put_nowait(
            Speak(text=text, language=language, kind="prompt", seq=self.recorder.next_seq(), interruptible=interruptible, then=then)
        )

    # ------------------------------------------------------------------ stage: reader

    async def _reader(self) -> None:
        while True:
            try:
                messages = await self.conn.receive()
            except Disconnected:
                self._control_now(EndCall("dropped", "connection_closed"))
                return
            for m in messages:
                if isinstance(m, AudioIn):
                    if self._pacer is not None and not self._pacer.accept(len(m.pcm16), self.clock()):
                        self._too_fast()
                        return
                    if not self._started.is_set() and self.protocol == "native":
                        self._started.set()  # audio before call.start: the call starts with defaults
                    if not self._started.is_set():
                        continue  # Twilio media before `start` carries no stream id: nothing to answer to
                    try:
                        self._audio_q.put_nowait(m.pcm16)
                    except asyncio.QueueFull:
                        self.metrics.errors.labels(kind="audio_backlog").inc()
                elif isinstance(m, (DtmfIn, PlaybackMark, ProtocolError)) and not self._control_allowed(m):
                    continue
                elif isinstance(m, StartCall):
                    if self._started.is_set():
                        if self._control_allowed(m):
                            self._protocol_error(ProtocolError("bad_event", "the call has already started"))
                    else:
                        self._start_msg = m
                        self._started.set()
                elif isinstance(m, HangupIn):
                    self._control_now(EndCall("caller_hangup", m.reason))
                elif isinstance(m, DtmfIn):
                    self.recorder.event("dtmf", {"digit": m.digit})
                elif isinstance(m, PlaybackMark):
                    self.recorder.event("mark", {"name": m.name})
                elif isinstance(m, ProtocolError):
                    self._protocol_error(m)
                    if m.close_code is not None:
                        return  # the call is closing: nothing more from this peer is read
                elif isinstance(m, Ignored):
                    pass

    def _control_allowed(self, m: Any) -> bool:
        """Control events cost a database write each: a burst, then `control_events_per_s`; the excess is dropped
        and counted. A protocol error that closes the call always passes."""
        if isinstance(m, ProtocolError) and m.close_code is not None:
            return True
        if self._control_bucket.take(1, self.clock()):
            return True
        self.metrics.errors.labels(kind="control_rate").inc()
        return False

    def _too_fast(self) -> None:
        self.metrics.errors.labels(kind="audio_too_fast").inc()
        log.warning("caller audio faster than real time", extra={"protocol": self.protocol})
        self.recorder.event("protocol_error", {"code": "too_fast"})
        self._send(ErrorOut(code="too_fast", message="audio arrives faster than real time; closing"))
        self._control_now(EndCall("error", "audio_too_fast", CLOSE_POLICY))

    def _protocol_error(self, err: ProtocolError) -> None:
        self.metrics.errors.labels(kind=f"protocol_{err.code}").inc()
        log.warning("protocol error", extra={"code": err.code, "protocol": self.protocol})
        self.recorder.event("protocol_error", {"code": err.code})
        self._send(ErrorOut(code=err.code, message=err.message))
        if err.close_code is not None:
            self._control_now(EndCall("error", err.code, err.close_code))

    # ------------------------------------------------------------------ stage: listener (VAD, endpointing)

    async def _listener(self) -> None:
        transcriber = self.pipeline.transcriber
        while True:
            pcm = await self._audio_q.get()
            now = self.clock()
            self._audio_s += len(pcm) / 2 / SAMPLE_RATE
            for event in transcriber.accept(pcm, now):
                if isinstance(event, SpeechStarted):
                    self._caller_speaking = True
                    self.no_input.caller_spoke()
                    if self._is_playing(now):
                        self._control_q.put_nowait(BargeIn(at=now))
                elif isinstance(event, PartialRequest):
                    self._request_partial(event)
                elif isinstance(event, FinalRequest):
                    self._caller_speaking = False
                    self._utterance += 1
                    self._busy += 1
                    # How long after the caller stopped speaking the utterance was closed (end-silence wait).
                    lag = max(0.0, transcriber.stream_s - event.end_s)
                    self._finals_q.put_nowait((event, now - lag, lag, self._utterance - 1))

    def _request_partial(self, request: Any) -> None:
        pool = self.ctx.pools.recognition
        # Partials are a courtesy: skipped while one is still running, or when no worker is free — a final must
        # never queue behind partials (measured: with 2 workers on 2 cores a final sharing the CPU with a partial
        # took ~2.9 s instead of ~1 s).
        if pool.pending >= pool.workers:
            return
        if getattr(request, "speculative_end_s", None) is not None:
            # The speculative recognition at the start of a silence: the final will reuse it, so it runs even
            # while a courtesy partial is still busy (voice/streaming.py, PrefinalDue).
            own_partial = self._partial_task is not None and not self._partial_task.done()
            if not speculate_now(early=request.early, others_pending=pool.pending - int(own_partial),
                                 started=self.pipeline.transcriber.speculating(request)):
                return
            self._spec_task = asyncio.create_task(self._partial(request, self._utterance))
            return
        if self._partial_task is not None and not self._partial_task.done():
            return
        self._partial_task = asyncio.create_task(self._partial(request, self._utterance))

    async def _partial(self, request: Any, utterance: int) -> None:
        try:
            partial = await self.ctx.pools.recognition.run(self.pipeline.transcriber.partial, request)
        except Overloaded:
            return
        except Exception:
            log.exception("partial transcript failed")
            self.metrics.errors.labels(kind="partial").inc()
            return
        if partial is not None and utterance == self._utterance and (partial.stable or partial.unstable):
            self._send(PartialOut(stable=partial.stable, unstable=partial.unstable))
            if self.settings.preemptive_synthesis:
                await self._preempt(join_text(partial.stable, partial.unstable), utterance,
                                    final_candidate=getattr(request, "speculative_end_s", None) is not None)

    async def _preempt(self, text: str, utterance: int, *, final_candidate: bool = False) -> None:
        """Synthesize the first chunk of the answer the transcript so far would get, before the final is known.

        Decided on a copy of the dialog state (the real decision, on the final transcript, changes it once).
        Not for a number (an application look-up reads the store), nor for an answer already cached or already
        being synthesized, nor while the synthesis pool has work (it would delay an answer that is due) or the
        recognizer has (on 2 cores the two would slow each other: the final is what the answer waits for first).
        A partial's answer is synthesized only when the partial before it got the same answer: an early partial
        ("How do I apply") is often answered otherwise than the whole question, and a wrong synthesis holds the
        synthesis worker when the right one is due. The speculative recognition (`final_candidate`) is what the
        final will be unless the caller speaks on, so its answer needs no confirmation."""
        comps = self.ctx.components
        if self._queued or len(text) < 4 or any(ch.isdigit() for ch in text):
            return
        if getattr(comps.router, "rewriter", None) is not None:
            return  # a language model writes each answer from the question's words: a model call per partial
        if self.ctx.pools.synthesis.pending > 0 or self.ctx.pools.recognition.pending > 0 or len(self._preempted) >= 4:
            return
        try:
            decision = await self.ctx.pools.routing.run(
                comps.router.decide, text, language=self._prompt_language(),
                state=copy.deepcopy(self.pipeline.dialog), now=self.clock())
        except Overloaded:
            return
        if decision.route != "answer" or decision.entry_id is None or utterance != self._utterance:
            return
        segments = split_by_language(decision.answer, decision.language)
        if not segments:
            return
        key = (segments[0].text, segments[0].language)
        previous, self._preempt_seen = self._preempt_seen, (utterance, key)
        if not final_candidate and previous != (utterance, key):
            return  # not confirmed yet: the next partial may decide otherwise
        # The pool is checked again: another call's answer may have taken it while this one was routed.
        if key in self._preempted or self._cached(*key) or self.ctx.pools.synthesis.pending > 0:
            return
        task = self._prefetch(*key)
        task.add_done_callback(_retrieve)
        self._preempted[key] = (task, self.clock(), utterance)
        self.metrics.preemptive_syntheses.labels(outcome="started").inc()

    def _take_preempted(self, key: tuple[str, str], utterance: int) -> tuple[asyncio.Task[Any], float] | None:
        """The preemptive synthesis of this answer's first chunk, if one was started for this utterance; the
        others started for it (or earlier ones) are dropped."""
        found = None
        for k, (task, started, number) in list(self._preempted.items()):
            if number > utterance:
                continue  # the caller's next utterance: not this answer's
            del self._preempted[k]
            if k == key and number == utterance and not task.cancelled():
                found = (task, started)
            else:
                task.cancel()
                self.metrics.preemptive_syntheses.labels(outcome="dropped").inc()
        if found is not None:
            self.metrics.preemptive_syntheses.labels(outcome="used").inc()
        return found

    # ------------------------------------------------------------------ stage: recognizer (finals)

    async def _recognizer(self) -> None:
        while True:
            request, speech_end_wall, endpoint_s, number = await self._finals_q.get()
            t0 = self.clock()
            reused_before = getattr(self.pipeline.transcriber, "reused_finals", 0)
            early_before = getattr(self.pipeline.transcriber, "reused_early_finals", 0)
            try:
                transcript = await self.ctx.pools.recognition.run(self.pipeline.transcriber.final, request)
            except Overloaded:
                self._busy -= 1
                self.metrics.errors.labels(kind="recognition_overloaded").inc()
                self._send(ErrorOut(code="overloaded", message="the recognizer is saturated; please repeat"))
                continue
            recognition_s = self.clock() - t0
            self.metrics.stage_latency.labels(stage="endpointing").observe(endpoint_s)
            self.metrics.stage_latency.labels(stage="recognition").observe(recognition_s)
            if transcript is None or not transcript.text.strip():
                self._busy -= 1  # gated as noise: nothing was said
                continue
            speculative = getattr(self.pipeline.transcriber, "reused_finals", 0) > reused_before
            early = getattr(self.pipeline.transcriber, "reused_early_finals", 0) > early_before
            self._dialog_q.put_nowait(Utterance(transcript, speech_end_wall, endpoint_s, recognition_s, speculative,
                                                number, early))

    # ------------------------------------------------------------------ stage: dialog (routing)

    def _routing_language(self, verdict: Any) -> str:
        if verdict.label in ("en", "zh"):
            return verdict.label
        if verdict.label == "other" and verdict.code:
            return f"other:{verdict.code}"
        current = getattr(getattr(self.pipeline.transcriber, "call_language", None), "current", None)
        if current is not None and current.label in ("en", "zh"):
            return current.label
        return self.language_hint or self.settings.languages[0]

    async def _dialog(self) -> None:
        while True:
            utt = await self._dialog_q.get()
            try:
                await self._answer(utt)
            finally:
                self._busy -= 1

    async def _answer(self, utt: Utterance) -> None:
        t = utt.transcript
        v = t.language
        self._send(FinalOut(text=t.text, language=v.label, language_code=v.code or "", language_probability=v.probability,
                            language_source=v.source, mixed=v.mixed, start=t.start_s, end=t.end_s))
        self.recorder.turn(
            speaker="caller", kind="utterance", text=t.text, **_verdict_fields(v), audio_start_s=t.start_s,
            audio_end_s=t.end_s, endpoint_s=utt.endpoint_s, recognition_s=utt.recognition_s,
        )
        stored = self.recorder.written()
        self.metrics.turns.labels(speaker="caller", language=v.label, route="").inc()
        log.info("caller turn", extra={"language": v.label, "caller": {"text": t.text}})
        if v.label in ("en", "zh"):
            self.recorder.update(language=v.label)

        if self._queued:
            return  # on hold for an agent: heard and stored, not answered by the bot
        language = self._routing_language(v)
        router = self.ctx.components.router
        t0 = self.clock()
        try:
            decision = await self.ctx.pools.routing.run(router.decide, t.text, language=language,
                                                        state=self.pipeline.dialog, now=t0)
        except Overloaded:
            self.metrics.errors.labels(kind="routing_overloaded").inc()
            self._say("repeat", language if language in ("en", "zh") else "en")
            return
        routing_s = self.clock() - t0
        self.metrics.stage_latency.labels(stage="routing").observe(routing_s)
        # Where the end of the utterance went: the end-silence wait, the wait for the final after it, and inside
        # the recognizer (possibly during the silence, speculatively) the encoder and the decoder.
        encoder_s = float(getattr(t, "encoder_s", 0.0) or 0.0)
        timings = {"endpoint_ms": round(utt.endpoint_s * 1000, 1), "asr_ms": round(utt.recognition_s * 1000, 1),
                   "route_ms": round(routing_s * 1000, 1), "encoder_ms": round(encoder_s * 1000, 1),
                   "decoder_ms": round(max(0.0, t.recognition_s - encoder_s) * 1000, 1),
                   "speculative": 1.0 if utt.speculative else 0.0, "early": 1.0 if utt.early else 0.0}
        # The caller's turn is in the store before the caller hears an answer to it (a write takes milliseconds
        # and ran while routing decided): a crash after the answer never loses the turn it answered.
        t1 = self.clock()
        try:
            async with asyncio.timeout(STORE_WAIT_S):
                await stored
        except TimeoutError:
            self.metrics.errors.labels(kind="store_slow").inc()
        timings["store_ms"] = round((self.clock() - t1) * 1000, 1)
        segments = split_by_language(decision.answer, decision.language)
        preempted = self._take_preempted((segments[0].text, segments[0].language), utt.number) if segments else None
        timings["preempted"] = 1.0 if preempted is not None else 0.0
        self._send(AnswerOut(route=decision.route, topic=decision.topic, text=decision.answer, language=decision.language,
                             entry_id=decision.entry_id, score=float(decision.score), timings=timings))
        self.recorder.event("decision", {"route": decision.route, "topic": decision.topic, "reason": decision.reason,
                                         "routing_s": round(routing_s, 4), "language": language})
        for i, seg in enumerate(segments):
            item = Speak(text=seg.text, language=seg.language, kind="answer", seq=self.recorder.next_seq(),
                         decision=(decision, routing_s), speech_end_wall=utt.speech_end_wall if i == 0 else None)
            if i == 0:
                if preempted is not None:
                    # Synthesized (or being synthesized) since before the final: the same first chunk.
                    item.prefetch, item.prefetch_started = preempted
                else:
                    # The first sound of the answer is synthesized now, while earlier speech may still be playing.
                    item.prefetch_started = self.clock()
                    item.prefetch = self._prefetch(item.text, item.language)
                item.ack_by = self._acknowledge_by(item, utt.speech_end_wall)
            self._speak_q.put_nowait(item)
        self.turns_answered += 1
        if decision.route == "agent":
            # Queued at once, while the prompt plays: the caller's wait starts now, and a barge-in on the
            # prompt cannot lose the place in the queue.
            self._enter_queue(decision)

    # ------------------------------------------------------------------ stage: speaker (synthesis, paced audio)

    def _acknowledge_by(self, item: Speak, speech_end_wall: float) -> float | None:
        after = self.settings.acknowledge_after_s
        prompts = self.ctx.components.prompts
        if after is None or item.language not in ("en", "zh") or not prompts.has("one_moment"):
            return None
        if self._cached(item.text, item.language):
            return None  # a cached answer starts at once
        if not self._cached(prompts.text("one_moment", item.language), item.language):
            return None  # an acknowledgement that must itself be synthesized would only queue behind the answer
        return speech_end_wall + after

    def _cached(self, text: str, language: str) -> bool:
        """Whether the synthesizer has this text's audio already (a voice without a cache never has)."""
        return bool(getattr(self.ctx.components.synthesizer, "is_cached", lambda *a: False)(text, language))

    def _prefetch(self, text: str, language: str) -> asyncio.Task[Any]:
        """Start synthesizing an answer's first chunk now; the task is cancelled if the call ends first."""
        task = asyncio.create_task(self._first_chunk(text, language, learn=not self._cached(text, language)))
        self._prefetches.add(task)
        task.add_done_callback(self._prefetches.discard)
        return task

    async def _first_chunk(self, text: str, language: str, *, learn: bool = False) -> tuple[Any, Any]:
        synth = self.ctx.components.synthesizer
        pool = self.ctx.pools.synthesis
        t0 = self.clock()
        chunks = await pool.run(lambda: iter(synth.synthesize(text, language)))
        first = await pool.run(next, chunks, None)
        if learn and first is not None and isinstance(getattr(first, "text", None), str):
            # Synthesized, not read from the cache: how long a chunk of this size takes here, waiting included.
            self.ctx.components.pace.observe(language, spoken_units(first.text, language), self.clock() - t0)
        return chunks, first

    def _ack_audio_s(self, language: str) -> float:
        """Length of the cached acknowledgement (read once per process and language)."""
        comps = self.ctx.components
        if language not in comps.ack_audio_s:
            chunks = comps.synthesizer.synthesize(comps.prompts.text("one_moment", language), language)
            comps.ack_audio_s[language] = sum(len(c.pcm16) / 2 / getattr(c, "sample_rate", SAMPLE_RATE) for c in chunks)
        return comps.ack_audio_s[language]

    def _is_playing(self, now: float) -> bool:
        return self._playing is not None or now < self._playback_end

    async def _speaker(self) -> None:
        while True:
            item = await self._speak_q.get()
            self._playing = item
            self._play_task = asyncio.create_task(self._play(item))
            try:
                await self._play_task
            except asyncio.CancelledError:
                if _being_cancelled():
                    raise  # the call is ending
                continue  # a barge-in cancelled this item; keep serving the queue
            finally:
                self._playing = None
            if item.then in ("hangup", "refuse"):
                await asyncio.sleep(max(0.0, self._playback_end - self.clock()))
                self._control_now(EndCall("no_input", "no_input") if item.then == "hangup"
                                  else EndCall("error", "service_unavailable", CLOSE_TRY_AGAIN))

    async def _play(self, item: Speak) -> None:
        synth = self.ctx.components.synthesizer
        pool = self.ctx.pools.synthesis
        if item.prefetch is not None and item.ack_by is not None:
            wait = item.ack_by - self.clock()
            if wait > 0:
                await asyncio.wait({item.prefetch}, timeout=wait)
            if not item.prefetch.done():
                # Due, but the answer may be about to start: then the acknowledgement would only delay it.
                comps = self.ctx.components
                units = spoken_units(comps.first_chunk_text(item.text, item.language), item.language)
                extra = acknowledgement_wait(now=self.clock(), started_at=item.prefetch_started,
                                             expected_s=comps.pace.expected_s(item.language, units),
                                             ack_audio_s=self._ack_audio_s(item.language))
                if extra > 0:
                    await asyncio.wait({item.prefetch}, timeout=extra)
            if not item.prefetch.done():
                # Still synthesizing: the caller hears a cached acknowledgement first, never silence.
                await self._play(Speak(text=self.ctx.components.prompts.text("one_moment", item.language),
                                       language=item.language, kind="acknowledgement", seq=self.recorder.next_seq(),
                                       speech_end_wall=item.speech_end_wall))
        self._first_audio_at = None
        self._sent_s = 0.0
        synthesis_s: float | None = None
        response_s: float | None = None
        interrupted = True  # until the last frame is sent
        self._last_seq = item.seq
        self._send(AudioStart(turn=item.seq, text=item.text, language=item.language))
        t0 = self.clock()
        try:
            if item.prefetch is not None:
                chunks, ready = await item.prefetch
            elif item.kind == "acknowledgement" and self._cached(item.text, item.language):
                # Cached audio read here, not through the synthesis pool: its worker is busy with the very answer
                # this acknowledgement covers for.
                chunks, ready = iter(list(synth.synthesize(item.text, item.language))), None
            else:
                chunks, ready = await pool.run(lambda: iter(synth.synthesize(item.text, item.language))), None
            while True:
                chunk, ready = (ready, None) if ready is not None else (await pool.run(next, chunks, None), None)
                if chunk is None:
                    break
                pcm = chunk.pcm16
                if getattr(chunk, "sample_rate", SAMPLE_RATE) != SAMPLE_RATE:
                    pcm = _resample_pcm(pcm, chunk.sample_rate)
                for start in range(0, len(pcm), FRAME_BYTES):
                    frame = pcm[start : start + FRAME_BYTES]
                    await self._pace()
                    now = self.clock()
                    if self._first_audio_at is None:
                        self._first_audio_at = now
                        synthesis_s = now - t0
                        self.metrics.stage_latency.labels(stage="synthesis").observe(synthesis_s)
                        if item.speech_end_wall is not None:
                            response_s = now - item.speech_end_wall
                            stage = "acknowledgement" if item.kind == "acknowledgement" else "response"
                            self.metrics.stage_latency.labels(stage=stage).observe(response_s)
                    self._playback_end = max(self._playback_end, now) + len(frame) / 2 / SAMPLE_RATE
                    self._sent_s += len(frame) / 2 / SAMPLE_RATE
                    self._send(AudioOut(pcm16=frame, turn=item.seq))
            interrupted = False
            timings = {}
            if synthesis_s is not None:
                timings["synthesis_ms"] = round(synthesis_s * 1000, 1)
            if response_s is not None:
                # response_ms is only ever the answer's own first audio; an acknowledgement reports ack_ms.
                key = "ack_ms" if item.kind == "acknowledgement" else "response_ms"
                timings[key] = round(response_s * 1000, 1)
            self._send(AudioEnd(turn=item.seq, timings=timings))
        except Overloaded:
            interrupted = False
            self.metrics.errors.labels(kind="synthesis_overloaded").inc()
            self._send(ErrorOut(code="overloaded", message="speech synthesis is saturated"))
            self._send(AudioEnd(turn=item.seq))
        finally:
            played = self._sent_s
            if interrupted and self._first_audio_at is not None:
                played = min(self._sent_s, max(0.0, self.clock() - self._first_audio_at))
            self._record_bot_turn(item, synthesis_s=synthesis_s, response_s=response_s, played_s=played, interrupted=interrupted)

    async def _pace(self) -> None:
        # The producer waits while the send queue is half full, so a burst of audio never overflows it; a
        # client that stops reading is caught by the writer's send timeout instead.
        limit = self.settings.send_queue_max // 2
        while self.conn.backlog > limit and not self.conn.broken:
            await asyncio.sleep(0.01)
        if not self.settings.pace_audio:
            await asyncio.sleep(0)  # let the other stages (and calls) run between frames
            return
        ahead = self._playback_end - self.clock() - self.settings.playback_lead_s
        if ahead > 0:
            await asyncio.sleep(ahead)

    def _record_bot_turn(self, item: Speak, *, synthesis_s: float | None, response_s: float | None, played_s: float, interrupted: bool) -> None:
        fields: dict[str, Any] = {}
        route = None
        if item.decision is not None:
            decision, routing_s = item.decision
            route = decision.route
            fields = {"route": decision.route, "topic": decision.topic, "entry_id": decision.entry_id,
                      "score": float(decision.score), "decision_reason": str(decision.reason)[:64], "routing_s": routing_s}
        self.recorder.turn(
            seq=item.seq, speaker="bot", kind=item.kind, text=item.text, language=item.language,
            language_code=item.language, language_probability=1.0, language_source="call", mixed=False,
            synthesis_s=synthesis_s, response_s=response_s, played_s=round(played_s, 3), interrupted=interrupted, **fields,
        )
        self.metrics.turns.labels(speaker="bot", language=item.language, route=route or "prompt").inc()

    def _enter_queue(self, decision: Any) -> None:
        language = decision.other_language and f"other:{decision.other_language}" or decision.language
        ticket = self.ctx.queue.enqueue(call_id=self.call_id, language=language, topic=decision.topic, now=self.clock())
        self._queued = True
        self.no_input.enabled = False  # on hold: silence is expected
        self.recorder.update(state="queued", queue_language=language, queued_at=_utcnow())
        self.recorder.event("queued", {"language": language, "topic": decision.topic, "position": ticket.position})
        log.info("call queued for an agent", extra={"queue_language": language, "position": ticket.position})

    # ------------------------------------------------------------------ control lane

    async def _control_lane(self) -> None:
        while True:
            message = await self._control_q.get()
            if isinstance(message, BargeIn):
                self._barge_in(message)

    def _barge_in(self, message: BargeIn) -> None:
        item = self._playing
        if item is not None and not item.interruptible:
            return
        dropped = []
        while not self._speak_q.empty():  # queued speech of the interrupted answer goes too
            pending = self._speak_q.get_nowait()
            if pending.interruptible:
                dropped.append(pending)
            else:
                self._speak_q.put_nowait(pending)
                break
        turn = item.seq if item is not None else self._last_seq
        for gone in [*dropped, *([item] if item is not None else [])]:
            if gone.prefetch is not None:
                gone.prefetch.cancel()  # its synthesis will not be heard
        if self._play_task is not None and not self._play_task.done():
            self._play_task.cancel()
        self._playback_end = self.clock()
        self._send(AudioClear(turn=turn))
        if item is not None:
            self._send(AudioEnd(turn=turn, interrupted=True))
        self.metrics.barge_ins.inc()
        self.recorder.event("barge_in", {"turn": turn, "dropped": len(dropped)})

    # ------------------------------------------------------------------ no input, call length

    async def _timer(self) -> None:
        started = self.clock()
        while True:
            await asyncio.sleep(0.2)
            now = self.clock()
            if now - started > self.settings.max_call_s:
                self._control_now(EndCall("completed", "max_duration"))
                return
            idle = (
                not self._caller_speaking
                and self._busy == 0
                and self._speak_q.empty()
                and not self._is_playing(now)
            )
            action = self.no_input.tick(now, idle=idle)
            if action == "reprompt":
                self.recorder.event("no_input", {"action": "reprompt"})
                self._say("no_input_reprompt", self._prompt_language())
            elif action == "goodbye":
                self.recorder.event("no_input", {"action": "goodbye"})
                self._say("goodbye", self._prompt_language(), interruptible=False, then="hangup")

    def _prompt_language(self) -> str:
        current = getattr(getattr(self.pipeline.transcriber, "call_language", None), "current", None)
        if current is not None and current.label in ("en", "zh"):
            return current.label
        return self.language_hint or self.settings.languages[0]


def _being_cancelled() -> bool:
    """Whether the running task is being cancelled. A function of its own: a local holding the task in the frame
    that re-raises the CancelledError would make task -> error -> traceback -> frame -> task, a reference cycle
    that keeps the whole call (its session, audio, connection) until the garbage collector's next full pass."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _retrieve(task: asyncio.Task[Any]) -> None:
    """A preemptive synthesis nobody awaits: its failure (an overloaded pool) is not an error of the call."""
    if not task.cancelled():
        task.exception()


def _utcnow() -> Any:
    from server.store.models import utcnow

    return utcnow()


def _resample_pcm(pcm: bytes, rate: int) -> bytes:
    from voice.audio import float_to_pcm16, pcm16_to_float, resample

    return float_to_pcm16(resample(pcm16_to_float(pcm), rate, SAMPLE_RATE))
