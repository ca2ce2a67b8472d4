"""The agent queue at run time: decisions of the queue's store carried out, a ticker, and the views.

One `QueueRuntime` per process, built by install_people (server/people/service.py) with the QueueStore that the
settings chose (server/people/queue_store.py) and handed to the call context by create_app. It is the call session's
`AgentQueue` (server/people/queue_service.py: enqueue / position / leave / waiting), so a call routed to `agent`
lands here without the session knowing about agents.

Every event (a caller queues, an agent accepts, ...) is one `QueueStore.decide(...)`: the pure ACD
(routing/queue/decisions.py) decides atomically on the store's state and returns a numbered `Decision`. The queue's
time is `queue_clock`: this process's monotonic clock with the in-process store, the wall clock with a shared store
(every process must read comparable times). The ticker sleeps until the store's next deadline (or until a decision
changes it) and claims what fell due with `QueueStore.tick`; with a shared store every process's ticker does, so a
deadline fires even when the process that set it has died.

Several processes (a shared store): the store records which process holds each call and each agent console
(`Party`), and every process follows the store's log of decisions (`follow`), carrying decisions out strictly in
version order. Each action is carried out by the process that holds the party it concerns: the console part where
the agent's console is, the caller part where the caller's line is (`is_local_call`, `is_local_agent`). When an
agent on one process accepts a caller on another, the audio between them is the business of `RemoteCalls`
(the cluster's media bridge; by default none, and such a call is logged as not bridged).

What the actions become:
    Offer / OfferWithdrawn / AgentStateChanged / AgentSetAway -> messages on the agent's console websocket
    Announce        -> the caller hears prompts "queue_position" (or "agent_unavailable" when no agent who speaks
                       the language is signed in: no honest estimate exists) in the call's language
    OfferCallback   -> prompt "callback_offer"; the caller confirms with key 1 or by saying yes (是 / 好 / 要)
    CallConnected   -> audio bridge: the caller's 16 kHz frames go to the agent's websocket, the agent's microphone
                       frames go to the caller (resampled at the edge when the console declares another rate)
    CallRequeued    -> the bridge is cut, the caller hears "please_hold" and is back at the front of the queue
    CallbackTask*   -> stored (callback_tasks) and shown to agents
    CallFinal       -> stored once (queue_outcomes); answered calls ended by the agent end the caller's line,
                       calls handed back to the bot are answered by the bot again
Calls in a language the service does not serve (`other:xx`) wait for English-speaking agents.
Everything done to a caller's line goes through server/people/port.py (CallPort), the one place that knows the
call session's internals.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import re
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Protocol

from routing.queue import (
    AcdError,
    AgentSetAway,
    AgentState,
    AgentStateChanged,
    Announce,
    CallbackTaskCompleted,
    CallbackTaskCreated,
    CallConnected,
    CallFinal,
    CallOutcome,
    CallRequeued,
    Offer,
    OfferCallback,
    OfferWithdrawn,
)
from routing.queue.store import Decision, InProcessQueueStore, Party, QueueStore
from server.people.masking import mask_text
from server.call.messages import AudioEnd, AudioOut, AudioStart, DtmfIn
from server.people.live import LiveCall, LiveRegistry, Subscriber, TranscriptEntry
from server.people.queue_service import QueueTicket
from server.tasks import cancel_and_wait

log = logging.getLogger("hotline.queue")

SHARED_POLL_S = 1.0
FRAME_BYTES = 640
FRAME_S = 0.02
YES = re.compile(r"^\s*(yes|yeah|yep|sure|ok(ay)?|please( do)?|call me back|是的?|好的?|要|需要|可以|行|对)\b|^\s*(是|好|要|需要|可以|行|对)",
                 re.IGNORECASE)
DISPOSITIONS = ("resolved", "follow_up", "callback", "wrong_number", "abusive", "other")

if TYPE_CHECKING:
    from server.settings import PeopleSettings


class RemoteCalls(Protocol):
    """The seam for a caller and an agent held by two different processes (docs/queue.md).

    `connected` runs on BOTH processes when such a call is accepted (caller_here / agent_here say which side this
    process holds); `ended` runs on both when it stops being connected (final state, or requeued because the
    agent's console dropped). The implementation carries the caller's audio to the agent's process and the
    agent's microphone and typed replies back, and feeds both transcripts.
    """

    def connected(self, action: CallConnected, *, caller_here: bool, agent_here: bool) -> None: ...

    def ended(self, call_id: str, agent_id: str | None) -> None: ...


class NoRemoteCalls:
    """No media bridge between processes: such a call is connected in the queue, but nobody hears anybody."""

    def connected(self, action: CallConnected, *, caller_here: bool, agent_here: bool) -> None:
        log.error("caller and agent are on different processes and no media bridge is installed",
                  extra={"caller_here": caller_here, "agent_here": agent_here})

    def ended(self, call_id: str, agent_id: str | None) -> None:
        pass


@dataclass
class AgentLink:
    """One signed-in agent console."""

    name: str
    languages: tuple[str, ...]
    sub: Subscriber
    call_id: str | None = None
    offered: str | None = None
    last_call_id: str | None = None
    offered_info: dict[str, Any] = field(default_factory=dict)  # language / topic of the offered call
    input_rate: int = 16000
    turn: int | None = None  # the wire turn number of the agent's live audio on the caller's line
    transcriber: Any = None
    reply_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    finals: int = 0


@dataclass
class QueuedCall:
    call_id: str
    language: str  # the caller's language: en | zh | other:xx
    acd_language: str  # en | zh: who may take it
    topic: str
    enqueued_wall: float
    callback_offered: bool = False
    agent: str | None = None


class QueueRuntime:
    """`store` is the main database (outcomes, wrap-ups, agent turns); `queue_store` holds the queue's state.
    `clock` paces audio and stamps the call sessions' controls; `queue_clock` (default: `clock`) is the queue's time."""

    def __init__(self, *, settings: PeopleSettings, live: LiveRegistry, store: Any = None,
                 queue_store: QueueStore | None = None, clock: Callable[[], float] = time.monotonic,
                 queue_clock: Callable[[], float] | None = None, remote: RemoteCalls | None = None,
                 metrics: Any = None) -> None:
        self.settings = settings
        self.metrics = metrics  # server.metrics.Metrics: hotline_agent_queue_waiting{language}
        self.queue_store: QueueStore = queue_store or InProcessQueueStore(settings=settings.acd)
        self.process_id = self.queue_store.process_id
        self.shared = hasattr(self.queue_store, "follow")  # other processes decide too: follow the log
        self.remote: RemoteCalls = remote or NoRemoteCalls()
        self.live = live
        self.store = store
        self.clock = clock
        self.queue_clock = queue_clock or clock
        self._lock = threading.RLock()  # carrying out decisions in order (the event loop and tests' threads)
        self._applied = 0  # the last decision version carried out here
        self._pending: dict[int, Decision] = {}  # decisions of this process waiting for earlier ones of others
        self._follower: asyncio.Task[None] | None = None
        self.agents: dict[str, AgentLink] = {}
        self.calls: dict[str, QueuedCall] = {}
        self.finals: dict[str, CallFinal] = {}  # the latest calls' outcomes (oldest first), bounded in _final
        self.observers: set[Subscriber] = set()  # supervisor consoles: queue snapshots
        self._wake: asyncio.Event | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._broadcaster: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._writes: asyncio.Queue[Callable[[], Awaitable[Any]]] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._dirty = True

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the ticker, broadcaster and store writer (on the running loop). Idempotent."""
        if self._ticker is not None:
            return
        self._wake = asyncio.Event()
        self._writes = asyncio.Queue()
        if self.shared:
            with self._lock:
                self._applied = max(self._applied, self.queue_store.version())
            self._follower = asyncio.create_task(self._follow_loop(self._applied), name="acd-follower")
        self._ticker = asyncio.create_task(self._tick_loop(), name="acd-ticker")
        self._broadcaster = asyncio.create_task(self._broadcast_loop(), name="acd-broadcast")
        self._writer = asyncio.create_task(self._write_loop(), name="acd-writer")

    async def stop(self) -> None:
        """Alone, close the queue: every live call gets its final state (closed). With a shared store the queue
        goes on in the other processes: this one's consoles disconnect (their calls go back to the queue) and its
        callers leave it (their lines end with this process)."""
        if self._ticker is None:
            return
        if self.shared:
            for name in list(self.agents):
                self.disconnect_agent(name)
            for call_id in list(self.calls):
                self.leave(call_id, reason="server_shutdown")
        else:
            self._apply(self.queue_store.decide("close", now=self.queue_clock()))
        await self.drain()
        tasks = [t for t in (self._ticker, self._broadcaster, self._writer, self._follower, *self._tasks) if t]
        await cancel_and_wait(*tasks)
        self._ticker = self._follower = None

    async def drain(self, timeout: float = 5.0) -> None:
        """Wait until the store writes queued so far are done (tests, shutdown)."""
        if self._writes is None:
            return
        deadline = time.monotonic() + timeout
        while (self._writes.qsize() or getattr(self, "_writing", False)) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    def _run(self, event: str, *args: Any, info: Party | None = None, **kwargs: Any) -> list[Any]:
        """One decision of the queue (an Acd method name and its arguments), then carry out what it decided."""
        self.start_if_needed()
        decision = self.queue_store.decide(event, *args, now=self.queue_clock(), info=info, **kwargs)
        self._apply(decision)
        return list(decision.actions)

    def _apply(self, decision: Decision, *, from_log: bool = False) -> None:
        """Carry out decisions in version order, each once. A decision of this process may arrive before an earlier
        one of another process has been read from the log: it waits for it (the log delivers it next)."""
        if not decision.actions:
            return
        with self._lock:
            if decision.version <= self._applied:
                return  # already carried out (our own decision, read back from the log)
            if decision.version > self._applied + 1:
                if self._follower is not None and not from_log:
                    self._pending[decision.version] = decision
                    return
                # The log itself skipped (trimmed while this process stalled), or nobody follows it: go on.
            self._carry(decision)
            while self._applied + 1 in self._pending:
                self._carry(self._pending.pop(self._applied + 1))
        if self._wake is not None:
            self._wake.set()  # the schedule may have changed
        self._dirty = True

    def _carry(self, decision: Decision) -> None:
        self._applied = decision.version
        self._dispatch(list(decision.actions), decision.parties)

    async def _follow_loop(self, after: int) -> None:
        """Decisions of every process, from the shared store's log (see the module doc)."""
        while True:
            try:
                async for decision in self.queue_store.follow(after):  # type: ignore[attr-defined]
                    after = decision.version
                    self._apply(decision, from_log=True)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("following the queue's log failed; starting again")
                await asyncio.sleep(1.0)

    def take_over(self, process_id: str) -> tuple[list[str], list[str]]:
        """Another process died (its presence expired): its agents' consoles are disconnected (their offers and
        calls go back to the queue) and its callers leave the queue (their lines died with it). Returns (call ids,
        agent ids) so that the caller of this method records those calls' final state (dropped) in the main
        store: nobody else holds them any more. Safe to run on several survivors at once (each step is a decision,
        and a second one is a no-op)."""
        calls, agents = self.queue_store.owned_by(process_id)
        for name in agents:
            try:
                self._run("agent_disconnect", name)
            except AcdError:
                pass
        for call_id in calls:
            try:
                self._run("hangup", call_id)
            except AcdError:
                pass
        return calls, agents

    def is_local_call(self, call_id: str) -> bool:
        """Whether this process holds the caller's line (its QueuedCall)."""
        return call_id in self.calls

    @staticmethod
    def is_remote_call(live: Any) -> bool:
        """A call another process holds, followed through the cluster's bus (server/cluster/live.py)."""
        return getattr(live, "process_id", None) not in (None, "")

    def is_local_agent(self, name: str) -> bool:
        """Whether this process holds the agent's console."""
        return name in self.agents

    def start_if_needed(self) -> None:
        if self._ticker is None:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return
            self.start()

    async def _tick_loop(self) -> None:
        assert self._wake is not None
        while True:
            self._wake.clear()  # before reading the schedule: an event after this read wakes the wait below
            try:
                deadline = self.queue_store.next_deadline()
            except Exception:
                log.exception("could not read the queue's next deadline")
                deadline = None
            timeout = None if deadline is None else max(0.0, deadline - self.queue_clock())
            if self.shared:
                # Other processes' decisions wake this loop through the log; this bound also covers a log that
                # stalls, so a deadline never waits more than SHARED_POLL_S for some process to claim it.
                timeout = SHARED_POLL_S if timeout is None else min(timeout, SHARED_POLL_S)
            try:
                if timeout is None:
                    await self._wake.wait()
                else:
                    async with asyncio.timeout(timeout):  # not wait_for: see server/call/transports/connection.py
                        await self._wake.wait()
                continue  # woken by an event: recompute the deadline
            except TimeoutError:
                pass
            try:
                self.tick()
            except Exception:
                log.exception("queue tick failed")
                await asyncio.sleep(0.1)

    def tick(self) -> list[Any]:
        """Claim and carry out what fell due by now (the ticker calls this; tests too)."""
        decision = self.queue_store.tick(self.queue_clock())
        if decision is None:
            return []
        self._apply(decision)
        return list(decision.actions)

    async def _broadcast_loop(self) -> None:
        last_push = 0.0
        while True:
            await asyncio.sleep(0.25)
            now = self.clock()
            if self.shared:
                self._dirty = True  # other processes change the queue too; the snapshot is read from the store
            # Snapshots go out when something changed, and every 2 s anyway (waiting times grow).
            if not self._dirty and now - last_push < 2.0:
                continue
            self._dirty = False
            last_push = now
            try:
                view = self.queue_view(masked=True)
            except Exception:
                log.exception("could not read the queue")
                continue
            if self.metrics is not None:
                counts = {"en": 0, "zh": 0}
                for q in view["queue"]:
                    counts[q["language"]] = counts.get(q["language"], 0) + 1
                for language, n in counts.items():
                    self.metrics.agent_queue.labels(language=language).set(n)
            for link in list(self.agents.values()):
                link.sub.put({"event": "queue", **view, "agents": None})
            for sub in list(self.observers):
                sub.put({"event": "queue", **view})

    async def _write_loop(self) -> None:
        assert self._writes is not None
        while True:
            job = await self._writes.get()
            self._writing = True
            try:
                await job()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("queue store write failed", extra={"error": type(exc).__name__})
            finally:
                self._writing = self._writes.qsize() > 0

    def _write(self, job: Callable[[], Awaitable[Any]]) -> None:
        if self.store is None or self._writes is None:
            return
        self._writes.put_nowait(job)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ the session's AgentQueue interface

    def enqueue(self, *, call_id: str, language: str, topic: str, now: float | None = None) -> QueueTicket:
        acd_language = language if language in ("en", "zh") else "en"
        call = self.calls.get(call_id)
        if call is None:
            call = QueuedCall(call_id=call_id, language=language, acd_language=acd_language, topic=topic,
                              enqueued_wall=time.time())
            self.calls[call_id] = call
            live = self.live.get(call_id)
            if live is not None:
                live.state, live.queued_at = "queued", self.live.clock()
                live.on_inbound.append(lambda m, cid=call_id: self._caller_key(cid, m))
                live.on_transcript.append(lambda e, cid=call_id: self._caller_said(cid, e))
            self._run("enqueue", call_id, acd_language, info=Party(process=self.process_id, language=language, topic=topic))
        return QueueTicket(call_id=call_id, language=language, topic=topic, enqueued_at=now or 0.0,
                           position=self.position(call_id) or 0)

    def position(self, call_id: str) -> int | None:
        for view in self.queue_store.view(self.queue_clock()).snapshot.queue:
            if view.call_id == call_id:
                return view.position
        return None

    def leave(self, call_id: str, *, reason: str = "hangup", now: float | None = None) -> bool:
        """The caller's line ended (hang-up, drop): the ACD decides what that means (abandoned, answered, no-op)."""
        if call_id not in self.calls:
            return False
        try:
            self._run("hangup", call_id)
        except AcdError:
            return False
        return True

    def waiting(self) -> list[QueueTicket]:
        view = self.queue_store.view(self.queue_clock())
        out = []
        for v in view.snapshot.queue:
            language, topic = self._call_info(v.call_id, view.parties, v.language)
            out.append(QueueTicket(call_id=v.call_id, language=language, topic=topic or "", enqueued_at=v.enqueued_at,
                                   position=v.position))
        return out

    def _call_info(self, call_id: str, parties: Any, acd_language: str) -> tuple[str, str | None]:
        """The caller's language (en | zh | other:xx) and topic, from the local call or the store's party record."""
        call = self.calls.get(call_id)
        if call is not None:
            return call.language, call.topic
        party = parties.get("call:" + call_id) if parties else None
        if party is not None:
            return party.language or acd_language, party.topic
        return acd_language, None

    # ------------------------------------------------------------------ agents (the console websocket calls these)

    def connect_agent(self, *, name: str, languages: tuple[str, ...], sub: Subscriber) -> AgentLink:
        """An agent console connected: signed in, away until the agent chooses to be available."""
        old = self.agents.get(name)
        if old is not None:
            self.disconnect_agent(name)  # a second console replaces the first (its call goes back to the queue)
            old.sub.put({"event": "session.replaced"})
        link = AgentLink(name=name, languages=languages, sub=sub)
        self.agents[name] = link
        self._run("agent_login", name, languages, available=False)
        return link

    def disconnect_agent(self, name: str) -> None:
        link = self.agents.pop(name, None)
        if link is None:
            return
        try:
            self._run("agent_disconnect", name)
        except AcdError:
            pass
        self._unbridge(link)

    def set_availability(self, name: str, state: str) -> None:
        if state == "available":
            self._run("set_available", name)
        elif state == "away":
            self._run("set_away", name)
        else:
            raise AcdError("availability is 'available' or 'away'")

    def accept(self, name: str, call_id: str) -> None:
        self._run("accept", name, call_id)

    def decline(self, name: str, call_id: str) -> None:
        self._run("decline", name, call_id)

    def end_call(self, name: str, call_id: str) -> None:
        self._owns(name, call_id)
        self._run("end_call", name, call_id)

    def hand_back(self, name: str, call_id: str) -> None:
        self._owns(name, call_id)
        self._run("hand_back_to_bot", name, call_id)

    def finish_wrap_up(self, name: str, *, disposition: str, note: str = "") -> str | None:
        """Store the disposition and note of the agent's last call; the agent becomes available again."""
        if disposition not in DISPOSITIONS:
            raise AcdError(f"disposition must be one of {list(DISPOSITIONS)}")
        link = self.agents.get(name)
        call_id = link.last_call_id if link else None
        if call_id is None:
            raise AcdError("no call to wrap up")
        note = (note or "")[:2000]
        self._write(lambda: self._store_wrap_up(call_id, name, disposition, note))
        if self.agent_state(name) == AgentState.WRAP_UP.value:
            self._run("finish_wrap_up", name)
        return call_id

    def complete_callback(self, name: str, task_id: str) -> None:
        self._run("complete_callback_task", task_id, name)

    def _owns(self, name: str, call_id: str) -> None:
        link = self.agents.get(name)
        if link is None or link.call_id != call_id:
            raise AcdError("that call is not yours")

    # --- audio and replies from the agent

    def agent_audio(self, name: str, pcm: bytes) -> None:
        link = self.agents.get(name)
        if link is None or link.call_id is None:
            return  # not on a call: microphone audio goes nowhere
        if len(pcm) % 2:
            raise AcdError("audio frames are PCM16: an even number of bytes")
        if link.input_rate != 16000:
            from voice.audio import float_to_pcm16, pcm16_to_float, resample

            pcm = float_to_pcm16(resample(pcm16_to_float(pcm), link.input_rate, 16000))
        live = self.live.get(link.call_id)
        if live is None:
            return
        if link.turn is None:
            link.turn = live.port.next_turn()
        for start in range(0, len(pcm), FRAME_BYTES):
            live.port.send(AudioOut(pcm16=pcm[start : start + FRAME_BYTES], turn=link.turn))
        if link.transcriber is not None:
            self._agent_listen(link, live, pcm)

    def _agent_listen(self, link: AgentLink, live: LiveCall, pcm: bytes) -> None:
        from voice.streaming import FinalRequest

        try:
            events = link.transcriber.accept(pcm, self.clock())
        except Exception:
            log.exception("agent transcription failed; it is off for this call")
            link.transcriber = None
            return
        for event in events:
            if isinstance(event, FinalRequest):
                self._spawn(self._agent_final(link, live, event))

    async def _agent_final(self, link: AgentLink, live: LiveCall, request: Any) -> None:
        try:
            transcript = await live.port.pools.recognition.run(link.transcriber.final, request)
        except Exception:
            return  # overloaded or failed: the agent's words are heard by the caller anyway
        if transcript is None or not transcript.text.strip():
            return
        language = transcript.language.label if transcript.language.label in ("en", "zh") else (live.language or "en")
        self.live.add_entry(live, TranscriptEntry("agent", transcript.text, language,
                                                  round(self.live.clock() - live.started, 2), kind="speech"))
        self._write(lambda: self._store_agent_turn(live.call_id, link.name, "speech", transcript.text, language))

    async def reply(self, name: str, text: str) -> dict[str, Any]:
        """Speak `text` to the caller with the synthesizer, in the caller's language. Returns what was said."""
        text = (text or "").strip()
        if not text:
            raise AcdError("the reply is empty")
        # The same limit as the console's (people.reply_max_chars): a reply that crossed from another process is
        # held to this process's setting too.
        if len(text) > self.settings.reply_max_chars:
            raise AcdError(f"the reply is too long ({self.settings.reply_max_chars} characters at most)")
        link = self.agents.get(name)
        if link is None or link.call_id is None:
            raise AcdError("you are not on a call")
        live = self.live.get(link.call_id)
        call = self.calls.get(link.call_id)  # None when the caller is on another process (a remote live call)
        if live is None or (call is None and not self.is_remote_call(live)):
            raise AcdError("the call has ended")
        fallback = call.acd_language if call is not None else link.offered_info.get("language")
        language = live.language or fallback
        if language not in ("en", "zh"):
            language = fallback if fallback in ("en", "zh") else "en"
        port = live.port
        synthesizer = port.components.synthesizer
        async with link.reply_lock:
            chunks = await port.pools.synthesis.run(lambda: list(synthesizer.synthesize(text, language)))
            if link.call_id != live.call_id:
                raise AcdError("the call has ended")
            turn = port.next_turn()
            live.next_speaker = "agent"
            port.send(AudioStart(turn=turn, text=text, language=language))
            started = self.clock()
            sent = 0.0
            for chunk in chunks:
                pcm = chunk.pcm16
                rate = getattr(chunk, "sample_rate", 16000)
                if rate != 16000:
                    from voice.audio import float_to_pcm16, pcm16_to_float, resample

                    pcm = float_to_pcm16(resample(pcm16_to_float(pcm), rate, 16000))
                for start in range(0, len(pcm), FRAME_BYTES):
                    ahead = started + sent - self.settings.reply_lead_s - self.clock()
                    if ahead > 0:
                        await asyncio.sleep(ahead)  # paced to real time, like the bot's speech
                    frame = pcm[start : start + FRAME_BYTES]
                    port.send(AudioOut(pcm16=frame, turn=turn))
                    sent += len(frame) / 2 / 16000
            port.send(AudioEnd(turn=turn))
        self._write(lambda: self._store_agent_turn(live.call_id, name, "typed", text, language))
        return {"text": text, "language": language, "seconds": round(sent, 2)}

    # ------------------------------------------------------------------ the caller's side

    def _caller_key(self, call_id: str, message: Any) -> None:
        call = self.calls.get(call_id)
        if call is not None and call.callback_offered and isinstance(message, DtmfIn) and message.digit == "1":
            self._request_callback(call_id)

    def _caller_said(self, call_id: str, entry: TranscriptEntry) -> None:
        call = self.calls.get(call_id)
        if call is not None and call.callback_offered and entry.speaker == "caller" and YES.search(entry.text):
            self._request_callback(call_id)

    def _request_callback(self, call_id: str) -> None:
        try:
            self._run("request_callback", call_id)
        except AcdError:
            pass

    def _say(self, call_id: str, key: str, language: str, **params: Any) -> None:
        live = self.live.get(call_id)
        if live is None:
            return
        lang = language if language in ("en", "zh") else "en"
        try:
            live.port.say(key, lang, **params)
        except Exception:
            log.exception("could not queue a prompt", extra={"prompt": key})

    # ------------------------------------------------------------------ carrying out the ACD's actions

    def _dispatch(self, actions: list[Any], parties: Any = None) -> None:
        """Carry out the actions for the parties this process holds (the others are carried out where they are)."""
        for action in actions:
            try:
                self._carry_out(action, parties or {})
            except Exception:
                log.exception("queue action failed", extra={"action": type(action).__name__})

    def _carry_out(self, a: Any, parties: Any) -> None:
        if isinstance(a, Offer):
            link, live = self.agents.get(a.agent_id), self.live.get(a.call_id)
            if live is not None:
                live.state = "offered"
            if link is not None:
                language, topic = self._call_info(a.call_id, parties, a.language)
                link.offered = a.call_id
                link.offered_info = {"language": language, "topic": topic}
                link.sub.put({"event": "offer", "call_id": a.call_id, "language": language,
                              "topic": topic, "wait_s": round(a.wait_s, 1),
                              "expires_in_s": round(a.expires_at - a.at, 1), "language_match": a.language_match,
                              # Before accepting the agent is not yet "on the call": caller data stays masked.
                              "transcript": self.transcript_of(a.call_id, masked=True)})
        elif isinstance(a, OfferWithdrawn):
            link = self.agents.get(a.agent_id)
            live = self.live.get(a.call_id)
            if live is not None and live.state == "offered":
                live.state = "queued"
            if link is not None:
                link.offered = None
                link.sub.put({"event": "offer.withdrawn", "call_id": a.call_id, "reason": a.reason})
        elif isinstance(a, CallConnected):
            self._bridge(a)
        elif isinstance(a, CallRequeued):
            link = self.agents.get(a.agent_id)
            if link is not None:
                self._unbridge(link)
            if (link is None) != (a.call_id not in self.calls):
                self.remote.ended(a.call_id, a.agent_id)
            live = self.live.get(a.call_id)
            if live is not None:
                live.state, live.agent = "queued", None
                live.port.event("agent_disconnected", {"agent": a.agent_id})
            call = self.calls.get(a.call_id)
            self._say(a.call_id, "please_hold", call.acd_language if call else "en")
        elif isinstance(a, AgentStateChanged):
            link = self.agents.get(a.agent_id)
            if link is not None:
                link.sub.put({"event": "agent.state", "state": a.state.value, "reason": a.reason})
        elif isinstance(a, AgentSetAway):
            link = self.agents.get(a.agent_id)
            if link is not None:
                link.sub.put({"event": "agent.set_away", "missed_offers": a.missed_offers})
        elif isinstance(a, Announce):
            if a.estimated_wait_s is None:
                self._say(a.call_id, "agent_unavailable", a.language)
            else:
                self._say(a.call_id, "queue_position", a.language, position=a.position,
                          wait_minutes=max(1, math.ceil(a.estimated_wait_s / 60)))
        elif isinstance(a, OfferCallback):
            call = self.calls.get(a.call_id)
            if call is not None:
                call.callback_offered = True
            self._say(a.call_id, "callback_offer", a.language)
        elif isinstance(a, CallbackTaskCreated):
            t = a.task
            if t.call_id in self.calls:  # stored once, by the process that holds the call (and its stored row)
                self._write(lambda: self._store_callback(t.task_id, t.call_id, t.language, t.wait_s))
            for link in self.agents.values():
                link.sub.put({"event": "callback.task", "task_id": t.task_id, "call_id": t.call_id,
                              "language": t.language, "wait_s": round(t.wait_s, 1)})
        elif isinstance(a, CallbackTaskCompleted):
            if a.agent_id in self.agents:  # stored once, by the process of the agent who did it
                self._write(lambda: self._store_callback_done(a.task_id, a.agent_id))
        elif isinstance(a, CallFinal):
            self._final(a)

    def _bridge(self, a: CallConnected) -> None:
        link = self.agents.get(a.agent_id)
        live = self.live.get(a.call_id)
        call = self.calls.get(a.call_id)
        if call is not None:
            call.agent = a.agent_id
        if live is not None:  # the caller's side
            live.state, live.agent = "with_agent", a.agent_id
            # Hold prompts still queued or playing stop at once: the agent speaks now.
            live.port.stop_speech(self.clock())
        if link is not None:  # the agent's side
            link.offered = None
            link.call_id = link.last_call_id = a.call_id
        if (link is None) != (call is None):
            self.remote.connected(a, caller_here=call is not None, agent_here=link is not None)
        if live is not None and link is not None:
            live.watchers.add(link.sub)
            live.on_caller_audio.append(link.sub.put)
        if live is not None:
            live.port.event("agent_connected", {"agent": a.agent_id, "wait_s": round(a.wait_s, 2)})
        if link is None:
            return
        if live is not None:
            language, topic = live.language or (call.acd_language if call else None), call.topic if call else live.topic
        else:
            language, topic = link.offered_info.get("language"), link.offered_info.get("topic")
        if live is not None and self.settings.agent_transcription:
            try:
                link.transcriber = live.port.components.make_transcriber(language)
            except Exception:
                log.exception("no transcriber for the agent's microphone")
        link.sub.put({"event": "call.connected", "call_id": a.call_id, "language": language, "topic": topic,
                      "wait_s": round(a.wait_s, 1), "transcript": self.transcript_of(a.call_id, masked=False)})

    def _unbridge(self, link: AgentLink) -> None:
        call_id = link.call_id
        link.call_id, link.turn, link.transcriber = None, None, None
        if call_id is None:
            return
        live = self.live.get(call_id)
        if live is not None:
            live.watchers.discard(link.sub)
            if link.sub.put in live.on_caller_audio:
                live.on_caller_audio.remove(link.sub.put)

    def _final(self, a: CallFinal) -> None:
        self.finals[a.call_id] = a
        # The latest outcomes only (as many as the queue itself remembers): a service that runs for months must
        # not keep one entry per call it ever queued.
        while len(self.finals) > self.settings.acd.final_history:
            del self.finals[next(iter(self.finals))]
        call = self.calls.pop(a.call_id, None)
        link = self.agents.get(a.agent_id) if a.agent_id else None
        if link is not None and link.call_id == a.call_id:
            self._unbridge(link)
            link.last_call_id = a.call_id
            link.sub.put({"event": "call.ended", "call_id": a.call_id, "outcome": a.state.value,
                          "wrap_up": True})
        if a.agent_id is not None and (link is None) != (call is None):
            self.remote.ended(a.call_id, a.agent_id)
        if call is None:
            return  # the caller's line is held by another process: that one stores the outcome and ends the line
        self._write(lambda: self._store_outcome(a, call.language, call.topic))
        live = self.live.get(a.call_id)
        if live is None:
            return
        live.port.event("queue_final", {"outcome": a.state.value, "wait_s": round(a.wait_s, 2),
                                                    "agent": a.agent_id})
        port = live.port
        if a.state is CallOutcome.TRANSFERRED_BACK_TO_BOT:
            live.state, live.agent = "bot", None
            port.resume_bot()
        elif a.state is CallOutcome.ANSWERED:
            live.state = "ended"
            port.end("transferred_to_agent", "agent_ended")
        elif a.state is CallOutcome.CALLBACK_REQUESTED:
            self._say(a.call_id, "callback_confirmed", a.language)
            self._spawn(port.end_after_speech("transferred_to_agent", "callback_requested", clock=self.clock))
        elif a.state is CallOutcome.CLOSED:
            port.end("dropped", "queue_closed", 1001)

    # ------------------------------------------------------------------ views

    def transcript_of(self, call_id: str, *, masked: bool) -> list[dict[str, Any]]:
        live = self.live.get(call_id)
        if live is None:
            return []
        out = []
        for entry in live.transcript:
            d = entry.as_dict()
            if masked:
                d["text"] = mask_text(d["text"])
            out.append(d)
        return out

    def queue_view(self, *, masked: bool = True) -> dict[str, Any]:
        view = self.queue_store.view(self.queue_clock())
        snap, now = view.snapshot, view.snapshot.at
        queue = []
        for v in snap.queue:
            language, topic = self._call_info(v.call_id, view.parties, v.language)
            queue.append({"call_id": v.call_id, "language": language, "topic": topic, "position": v.position,
                          "wait_s": round(v.wait_s, 1), "offered_to": v.offered_to, "requeued": v.requeued,
                          "callback_offered": v.callback_offered})
        return {
            "queue": queue,
            "active": [{"call_id": c.call_id, "language": c.language, "agent": c.agent_id, "wait_s": round(c.wait_s, 1),
                        "talk_s": round(now - c.connected_at, 1)} for c in snap.active],
            "agents": [{"name": a.agent_id, "languages": sorted(a.languages), "state": a.state.value,
                        "since_s": round(now - a.state_since, 1), "call_id": a.call_id, "missed_offers": a.missed_offers}
                       for a in snap.agents],
            "callback_tasks": [{"task_id": t.task_id, "call_id": t.call_id, "language": t.language,
                                "wait_s": round(t.wait_s, 1)} for t in snap.callback_tasks],
        }

    def agent_state(self, name: str) -> str:
        for agent in self.queue_store.view(self.queue_clock()).snapshot.agents:
            if agent.agent_id == name:
                return agent.state.value
        return "offline"

    # ------------------------------------------------------------------ store writes (one writer, in order)

    async def _store_outcome(self, a: CallFinal, language: str, topic: str | None) -> None:
        from server.people.models import QueueOutcome
        from server.store.models import Call

        async with self.store.sessions.begin() as s:
            if await s.get(Call, a.call_id) is None:
                return  # not a stored call (unit tests of the queue alone)
            if await s.get(QueueOutcome, a.call_id) is not None:
                return  # exactly one final state: the first one stays
            s.add(QueueOutcome(call_id=a.call_id, queue_language=language, topic=topic, outcome=a.state.value,
                               wait_s=round(a.wait_s, 3), agent_name=a.agent_id, at=dt.datetime.now(dt.timezone.utc)))

    async def _store_wrap_up(self, call_id: str, agent: str, disposition: str, note: str) -> None:
        from sqlalchemy import update

        from server.people.models import QueueOutcome

        async with self.store.sessions.begin() as s:
            await s.execute(update(QueueOutcome).where(QueueOutcome.call_id == call_id, QueueOutcome.agent_name == agent)
                            .values(disposition=disposition, note=note or None))

    async def _store_agent_turn(self, call_id: str, agent: str, kind: str, text: str, language: str) -> None:
        from server.people.models import AgentTurn
        from server.store.models import Call

        async with self.store.sessions.begin() as s:
            if await s.get(Call, call_id) is None:
                return
            s.add(AgentTurn(call_id=call_id, agent_name=agent, kind=kind, text=text, language=language,
                            created_at=dt.datetime.now(dt.timezone.utc)))

    async def _store_callback(self, task_id: str, call_id: str, language: str, wait_s: float) -> None:
        from server.people.models import CallbackTaskRow
        from server.store.models import Call

        async with self.store.sessions.begin() as s:
            if await s.get(Call, call_id) is None:
                return
            s.add(CallbackTaskRow(task_id=task_id, call_id=call_id, language=language, wait_s=wait_s,
                                  created_at=dt.datetime.now(dt.timezone.utc)))

    async def _store_callback_done(self, task_id: str, agent: str) -> None:
        from sqlalchemy import update

        from server.people.models import CallbackTaskRow

        async with self.store.sessions.begin() as s:
            await s.execute(update(CallbackTaskRow).where(CallbackTaskRow.task_id == task_id)
                            .values(completed_by=agent, completed_at=dt.datetime.now(dt.timezone.utc)))
