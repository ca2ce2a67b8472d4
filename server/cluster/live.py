"""The live view across processes: every process's calls for every supervisor, and a call held by another process
handled through the same `LiveCall` / `CallPort` surface the people side already uses.

- Each process writes the summaries of its live calls to `live:<process id>` (a hash with the heartbeat's expiry,
  so a dead process's calls leave the view by themselves) and reads the others' every interval.
- `LiveRegistry.get(call_id)` of a call another process holds returns a `RemoteLiveCall`: it subscribes to the
  call's channel and asks the owner to tap the call ("tap"); the owner then publishes the call's audio frames and
  console events (transcript, decisions, the end) there. Watchers, listeners and the agent bridge hang off it as
  off a local call.
- Its `port` is a `RemoteCallPort`: each action (prompts, audio for the caller, speech cut, events, end) is a
  command on the owner's channel, carried out there by the owner's own `CallPort`. Recognition and synthesis for
  the agent's side run where the agent is (this process's models); only 20 ms frames cross.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Callable

from server.call.messages import AudioEnd, AudioOut, AudioStart
from server.cluster.bus import Bus, decode_audio_to_caller, encode_audio_to_caller, encode_command, encode_event
from server.people.live import CHANNEL_CALLER, LiveCall, LiveRegistry, TranscriptEntry
from server.tasks import cancel_and_wait

log = logging.getLogger("hotline.cluster.live")

REMOTE_TURNS_FROM = 1_000_000  # turn numbers a remote port hands out; the owner maps them to its own
IDLE_REMOTE_S = 5.0  # a remote call nobody looks at is let go after this long


class BusTap:
    """On the owner: put into a live call's watchers and listeners; publishes what it gets on the call's channel."""

    def __init__(self, bus: Bus, call_id: str) -> None:
        self.bus = bus
        self.channel = bus.call_channel(call_id)
        self.processes: set[str] = set()

    def put(self, item: Any) -> None:
        if isinstance(item, (bytes, bytearray)):
            self.bus.send(self.channel, b"f" + bytes(item))
        elif isinstance(item, dict):
            self.bus.send(self.channel, encode_event(item))


class RemoteCallPort:
    """CallPort for a call held by another process: every action is a command to that process."""

    def __init__(self, *, cluster: "ClusterLive", live: "RemoteLiveCall") -> None:
        self.cluster = cluster
        self.live = live
        self._turn = REMOTE_TURNS_FROM

    def _command(self, op: str, **args: Any) -> None:
        self.cluster.command(self.live.process_id, self.live.call_id, op, **args)

    def say(self, key: str, language: str, **params: Any) -> None:
        self._command("say", key=key, language=language, params=params)

    def send(self, message: Any) -> bool:
        if isinstance(message, AudioOut):
            self.cluster.bus.send(self.cluster.bus.process_channel(self.live.process_id),
                                  encode_audio_to_caller(self.live.call_id, message.turn, message.pcm16))
        elif isinstance(message, AudioStart):
            speaker, self.live.next_speaker = self.live.next_speaker, None
            self._command("audio_start", turn=message.turn, text=message.text, language=message.language,
                          speaker=speaker)
        elif isinstance(message, AudioEnd):
            self._command("audio_end", turn=message.turn, interrupted=bool(message.interrupted))
        return True

    def stop_speech(self, now: float) -> None:
        self._command("stop_speech")

    def idle(self, now: float) -> bool:
        return True  # waiting for speech to finish is done by the owner (end_after_speech)

    def next_turn(self) -> int:
        self._turn += 1
        return self._turn

    def event(self, kind: str, data: dict[str, Any] | None = None) -> None:
        self._command("event", kind=kind, data=data)

    def end(self, state: str, reason: str, close_code: int = 1000) -> None:
        self._command("end", state=state, reason=reason, close_code=close_code)

    def resume_bot(self) -> None:
        self._command("resume_bot")

    async def end_after_speech(self, state: str, reason: str, *, clock: Callable[[], float], timeout: float = 30.0) -> None:
        self._command("end_after_speech", state=state, reason=reason, timeout=timeout)

    @property
    def components(self) -> Any:
        return self.cluster.local_context().components

    @property
    def pools(self) -> Any:
        return self.cluster.local_context().pools


class RemoteLiveCall(LiveCall):
    """A call held by another process, as this process sees it (built from its summary, fed by its channel)."""

    process_id: str = ""
    cluster: Any = None
    last_used: float = 0.0

    @property
    def port(self) -> Any:
        if not hasattr(self, "_port"):
            self._port = RemoteCallPort(cluster=self.cluster, live=self)
        return self._port

    def forward_entry(self, entry: TranscriptEntry) -> None:
        """A line said on this process (the agent's speech, recognised here) joins the transcript where the call is."""
        self.cluster.command(self.process_id, self.call_id, "entry", entry=entry.as_dict())

    def in_use(self) -> bool:
        return bool(self.watchers or self.listeners or self.on_caller_audio or self.on_transcript)

    def receive(self, data: bytes) -> None:
        kind = data[:1]
        if kind == b"f":
            frame = data[1:]
            if frame[:1] == bytes([CHANNEL_CALLER]):
                for fn in list(self.on_caller_audio):
                    fn(frame[1:])
            for sub in list(self.listeners):
                sub.put(frame)
            return
        if kind != b"e":
            return
        event = json.loads(data[1:])
        name = event.get("event")
        if name == "transcript.snapshot":
            for item in event.get("entries", []):
                self._entry(item, {"event": "transcript", "call_id": self.call_id, **item})
            return
        if name == "transcript":
            self._entry({k: v for k, v in event.items() if k not in ("event", "call_id")}, event)
            return
        if name == "decision":
            self.route, self.topic = event.get("route"), event.get("topic")
        if name == "call.ended":
            self.state = "ended"
            self.cluster.forget(self.call_id)
        for sub in list(self.watchers):
            sub.put(event)

    def _entry(self, item: dict[str, Any], event: dict[str, Any]) -> None:
        entry = TranscriptEntry(**{k: item.get(k) for k in ("speaker", "text", "language", "at", "kind", "route",
                                                           "topic", "reason") if k in item})
        if entry.language in ("en", "zh") and entry.speaker == "caller":
            self.language = entry.language
        self.transcript.append(entry)
        for fn in list(self.on_transcript):
            fn(entry)
        for sub in list(self.watchers):
            sub.put(event)


class ClusterLive:
    def __init__(self, *, redis: Any, bus: Bus, presence: Any, registry: LiveRegistry,
                 local_context: Callable[[], Any], interval_s: float, ttl_s: float) -> None:
        self.redis = redis
        self.bus = bus
        self.presence = presence
        self.registry = registry
        self.local_context = local_context  # -> CallContext (models and pools for the agent's side)
        self.interval_s = interval_s
        self.ttl_s = ttl_s
        self.process_id = bus.process_id
        self.snapshot: dict[str, dict[str, Any]] = {}  # call id -> summary, calls of other processes
        self.remote: dict[str, RemoteLiveCall] = {}
        self.taps: dict[str, BusTap] = {}  # calls of this process that other processes look at
        self._turns: dict[tuple[str, int], int] = {}  # (call id, remote turn) -> this process's turn
        self._task: asyncio.Task[None] | None = None
        self.retrying: asyncio.Task[None] | None = None  # start() again while Redis was away at start-up

    def _key(self, process_id: str) -> str:
        return f"{self.bus.prefix}live:{process_id}"

    async def start(self) -> None:
        await self.bus.start(self._on_command)  # raises while Redis is away: nothing below is done yet
        self.registry.cluster = self
        self.registry.on_end.append(self._local_ended)
        self.presence.on_process_lost.append(self.process_lost)
        self._task = asyncio.create_task(self._loop(), name="cluster-live")

    async def stop(self) -> None:
        await cancel_and_wait(self._task, self.retrying)
        try:
            await self.redis.delete(self._key(self.process_id))
        except Exception:  # noqa: BLE001
            pass
        await self.bus.stop()

    # ------------------------------------------------------------ the view
    def summaries(self, now: float) -> list[dict[str, Any]]:
        local = [{**c.summary(now), "process_id": self.process_id} for c in list(self.registry.calls.values())]
        return local + [s for cid, s in self.snapshot.items() if cid not in self.registry.calls]

    async def _loop(self) -> None:
        while True:
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis away: the view is stale until it returns
                log.warning("cluster view refresh failed", extra={"error": type(exc).__name__})
            await asyncio.sleep(self.interval_s)

    async def refresh(self) -> None:
        now = self.registry.clock()
        mine = {c.call_id: json.dumps({**c.summary(now), "process_id": self.process_id})
                for c in list(self.registry.calls.values())}
        key = self._key(self.process_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            if mine:
                pipe.hset(key, mapping=mine)
                pipe.pexpire(key, int(self.ttl_s * 1000))
            await pipe.execute()
        others = sorted(p for p in await self.presence.live_processes() if p != self.process_id)
        snapshot: dict[str, dict[str, Any]] = {}
        if others:
            async with self.redis.pipeline(transaction=False) as pipe:
                for p in others:
                    pipe.hgetall(self._key(p))
                for values in await pipe.execute():
                    for cid, raw in values.items():
                        cid = cid.decode() if isinstance(cid, bytes) else cid
                        snapshot[cid] = json.loads(raw)
        self.snapshot = snapshot
        clock = time.monotonic()
        for cid, live in list(self.remote.items()):
            if live.in_use():
                live.last_used = clock
            elif clock - live.last_used > IDLE_REMOTE_S or cid not in snapshot:
                await self._release(cid)

    # ------------------------------------------------------------ calls of other processes
    def remote_call(self, call_id: str) -> RemoteLiveCall | None:
        existing = self.remote.get(call_id)
        if existing is not None:
            return existing
        summary = self.snapshot.get(call_id)
        if summary is None:
            return None
        live = RemoteLiveCall(call_id=call_id, session=None, started_wall=summary.get("started_wall") or time.time(),
                              started=self.registry.clock() - float(summary.get("duration_s") or 0.0),
                              language=summary.get("language"), route=summary.get("route"),
                              topic=summary.get("topic"), state=summary.get("state") or "bot",
                              agent=summary.get("agent"))
        live.process_id, live.cluster, live.last_used = summary["process_id"], self, time.monotonic()
        self.remote[call_id] = live
        asyncio.get_running_loop().create_task(self._attach(live))
        return live

    async def _attach(self, live: RemoteLiveCall) -> None:
        try:
            await self.bus.subscribe(self.bus.call_channel(live.call_id), live.receive)
        except Exception as exc:  # noqa: BLE001 - Redis away: the remote call is let go, asked for again later
            log.warning("could not follow a call of another process", extra={"error": type(exc).__name__})
            self.remote.pop(live.call_id, None)
            return
        self.command(live.process_id, live.call_id, "tap", process_id=self.process_id)

    async def _release(self, call_id: str) -> None:
        live = self.remote.pop(call_id, None)
        if live is None:
            return
        await self.bus.unsubscribe(self.bus.call_channel(call_id))
        if live.state != "ended":
            self.command(live.process_id, call_id, "untap", process_id=self.process_id)

    def forget(self, call_id: str) -> None:
        live = self.remote.pop(call_id, None)
        if live is not None:
            asyncio.get_running_loop().create_task(self.bus.unsubscribe(self.bus.call_channel(call_id)))

    def command(self, to: str, call_id: str, op: str, **args: Any) -> None:
        """`op` on call `call_id`, carried out by process `to` (the one that holds it)."""
        self.bus.send(self.bus.process_channel(to), encode_command(call_id, op, **args))

    async def process_lost(self, process_id: str, _agents: list[str]) -> None:
        for tap in self.taps.values():
            tap.processes.discard(process_id)
        for cid, live in list(self.remote.items()):
            if live.process_id == process_id:
                live.receive(encode_event({"event": "call.ended", "call_id": cid, "state": "dropped",
                                           "reason": "process_lost"}))

    # ------------------------------------------------------------ calls of this process, driven from elsewhere
    def _local_ended(self, live: LiveCall) -> None:
        self.taps.pop(live.call_id, None)
        for key in [k for k in self._turns if k[0] == live.call_id]:
            del self._turns[key]

    def _local_turn(self, live: LiveCall, remote_turn: int) -> int:
        key = (live.call_id, remote_turn)
        if key not in self._turns:
            self._turns[key] = live.port.next_turn()
        return self._turns[key]

    def _on_command(self, data: bytes) -> None:
        if data[:1] == b"o":
            call_id, turn, pcm = decode_audio_to_caller(data)
            live = self.registry.calls.get(call_id)
            if live is not None:
                live.port.send(AudioOut(pcm16=pcm, turn=self._local_turn(live, turn)))
            return
        if data[:1] != b"c":
            return
        cmd = json.loads(data[1:])
        live = self.registry.calls.get(str(cmd.get("call_id")))
        if live is None:
            return
        op = cmd.get("op")
        port = live.port
        if op == "tap":
            tap = self.taps.get(live.call_id)
            if tap is None:
                tap = self.taps[live.call_id] = BusTap(self.bus, live.call_id)
                live.watchers.add(tap)
                live.listeners.add(tap)
            tap.processes.add(str(cmd.get("process_id")))
            tap.put({"event": "transcript.snapshot", "call_id": live.call_id,
                     "entries": [e.as_dict() for e in live.transcript]})
        elif op == "untap":
            tap = self.taps.get(live.call_id)
            if tap is not None:
                tap.processes.discard(str(cmd.get("process_id")))
                if not tap.processes:
                    live.watchers.discard(tap)
                    live.listeners.discard(tap)
                    del self.taps[live.call_id]
        elif op == "say":
            port.say(cmd["key"], cmd["language"], **(cmd.get("params") or {}))
        elif op == "audio_start":
            if cmd.get("speaker"):
                live.next_speaker = cmd["speaker"]
            port.send(AudioStart(turn=self._local_turn(live, int(cmd["turn"])), text=cmd.get("text") or "",
                                 language=cmd.get("language") or "en"))
        elif op == "audio_end":
            port.send(AudioEnd(turn=self._local_turn(live, int(cmd["turn"])), interrupted=bool(cmd.get("interrupted"))))
        elif op == "stop_speech":
            port.stop_speech(self.registry.clock())
        elif op == "event":
            port.event(str(cmd.get("kind")), cmd.get("data"))
        elif op == "end":
            port.end(str(cmd["state"]), str(cmd["reason"]), int(cmd.get("close_code") or 1000))
        elif op == "entry":
            fields = {k: v for k, v in (cmd.get("entry") or {}).items()
                      if k in ("speaker", "text", "language", "at", "kind", "route", "topic", "reason")}
            if {"speaker", "text", "language", "at"} <= set(fields):
                self.registry.add_entry(live, TranscriptEntry(**fields))
        elif op == "resume_bot":
            port.resume_bot()
        elif op == "end_after_speech":
            asyncio.get_running_loop().create_task(port.end_after_speech(
                str(cmd["state"]), str(cmd["reason"]), clock=self.registry.clock, timeout=float(cmd.get("timeout") or 30)))


class ClusterRemoteCalls:
    """The agent queue's seam for a caller and an agent on two processes (QueueRuntime's `remote`): the media path
    is the RemoteLiveCall that `LiveRegistry.get` gives the agent's process, so `connected` only makes sure it is
    followed, and `ended` lets it go."""

    def __init__(self, cluster: ClusterLive) -> None:
        self.cluster = cluster

    def connected(self, action: Any, *, caller_here: bool, agent_here: bool) -> None:
        if agent_here and not caller_here:
            self.cluster.remote_call(action.call_id)

    def ended(self, call_id: str, agent_id: str | None) -> None:
        live = self.cluster.remote.get(call_id)
        if live is not None and not live.in_use():
            asyncio.get_running_loop().create_task(self.cluster._release(call_id))
