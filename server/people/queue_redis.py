"""`RedisQueueStore`: the agent queue's state in Redis, shared by every `hotline serve` process (docs/queue.md).

Keys (under `<prefix>:queue:`):
    state    hash: version (an integer, +1 per decision), doc (the live state as JSON, routing/queue/codec.py, plus
             the parties: which process holds each call and agent), due (the next deadline, wall-clock seconds)
    finals   hash: call id -> its final state (JSON); order: list of those ids, oldest first, trimmed to
             AcdSettings.final_history. Kept apart so that a decision loads one final at most, never thousands.
    log      stream: one entry per decision, id 0-<version>: the actions, their time, the parties they name, the
             deciding process. Every process reads it in order and carries out what concerns its own calls and
             consoles (QueueRuntime.follow).
    turn     string, 100 ms at most: the process that lost TURN_AFTER_CONFLICTS races in a row commits next.

A decision is optimistic: read the version and the state, decide in Python with the one pure Acd, then one Lua
script checks that the version is still the one read and, only then, writes the state, the deadline, the new
finals and the log entry. On a conflict (another process committed in between) the decision is made again on the
fresh state, a bounded number of times. Each process keeps the state it last saw and decides on it first: when no
other process wrote since (the common case), a decision is ONE round trip; when one did, the script answers the
conflict with the winning state, so a retry is one round trip too. A decision on the kept copy that refuses the event or changes nothing is made again on a fresh read
before it counts, so errors and no-ops are never the verdict of a stale copy. Ticks always read fresh (a stale
"nothing is due" would leave a deadline unclaimed). Why not a lock: a process that dies holding a
lock stalls the queue until the lock expires, and a slow one past the expiry writes over its successor unless every
write carries a fencing token, which is this version check anyway. Why not WATCH/MULTI: the same check, but three
round trips instead of two and a connection held in the WATCH state. The Lua script only compares and writes; the
rules stay in Python, in one place.

Synchronous client on purpose: the call session asks the queue synchronously (AgentQueue: enqueue / position /
leave), and a decision is two round trips (about 0.2 ms each on one machine: `hotline bench queue` shows the
figures). The log is read by an asyncio client (`follow`).
"""
from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import AsyncIterator
from typing import Any

from routing.queue import Acd, AcdError, AcdSettings, AcdState, CallFinal, Decision, Party, QueueBusy, StoreView, build_snapshot
from routing.queue.codec import action_from_dict, action_to_dict, final_from_dict, final_to_dict, state_from_dict, state_to_dict
from routing.queue.store import EVENTS_READING_FINALS, apply_event, changes_nothing, decision_time, is_due, owned

log = logging.getLogger("hotline.queue.redis")

LOG_MAXLEN = 10_000  # decisions kept in the log: minutes of history, for a process that was briefly slow to read

# KEYS: state, finals, order, log, turn. ARGV: expected version, doc, due ('' = none), final_history, log entry,
# log maxlen, process id, claim the turn (0 | 1), n, then n call ids the decision took to have no final state, then
# (call id, final JSON) pairs. Returns the new version; or, when the version moved on or another process holds the
# turn, {-1, version, doc} (the state to decide on again, saving the retry a read); or -1 when one of those calls
# has a final state after all.
COMMIT = """
local current = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
local turn = redis.call('GET', KEYS[5])
if current ~= tonumber(ARGV[1]) or (turn and turn ~= ARGV[7]) then
  if ARGV[8] == '1' then redis.call('SET', KEYS[5], ARGV[7], 'NX', 'PX', 100) end
  return {-1, current, redis.call('HGET', KEYS[1], 'doc')}
end
local n = tonumber(ARGV[9])
for i = 10, 9 + n do
  if redis.call('HEXISTS', KEYS[2], ARGV[i]) == 1 then return -1 end
end
local v = current + 1
redis.call('HSET', KEYS[1], 'version', v, 'doc', ARGV[2], 'due', ARGV[3])
for i = 10 + n, #ARGV, 2 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  redis.call('RPUSH', KEYS[3], ARGV[i])
end
local excess = redis.call('LLEN', KEYS[3]) - tonumber(ARGV[4])
if excess > 0 then
  local old = redis.call('LPOP', KEYS[3], excess)
  redis.call('HDEL', KEYS[2], unpack(old))
end
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[6], '0-' .. v, 'd', ARGV[5])
if turn then redis.call('DEL', KEYS[5]) end
return v
"""
# After this many lost races in a row a process claims the turn: for up to 100 ms the others' commits are refused
# until it has committed, so a slow process is never starved by fast ones (measured: without it, 3 clients
# enqueueing at once on a loaded 2-core machine left one of them losing 50 races in a row).
TURN_AFTER_CONFLICTS = 3


class RedisUnavailable(RuntimeError):
    pass


def _party(data: dict[str, Any]) -> Party:
    return Party(process=data["process"], language=data.get("language"), topic=data.get("topic"))


class RedisQueueStore:
    """A QueueStore (routing/queue/store.py) in Redis. One per process; thread-safe (the client pools connections)."""

    def __init__(self, *, url: str, prefix: str, settings: AcdSettings, process_id: str, max_tries: int = 50,
                 client: Any = None) -> None:
        import redis

        self.url = url
        self.settings = settings
        self.process_id = process_id
        self.max_tries = max_tries
        self.client = client if client is not None else redis.Redis.from_url(
            url, socket_connect_timeout=2.0, socket_timeout=5.0, health_check_interval=30)
        base = f"{prefix}:queue:"
        self.keys = [base + "state", base + "finals", base + "order", base + "log", base + "turn"]
        self._commit_script = self.client.register_script(COMMIT)
        self.conflicts = 0  # decisions made again because another process committed first (bench, metrics)
        # (version, doc or (AcdState, parties)): the state as this process last saw it (see _decide).
        self._kept: tuple[int, Any] | None = None

    @classmethod
    def connect(cls, **kwargs: Any) -> "RedisQueueStore":
        """Build and check the connection now."""
        store = cls(**kwargs)
        store.check()
        return store

    def check(self) -> None:
        """Raise RedisUnavailable, naming the URL (its password left out), when Redis does not answer."""
        try:
            self.client.ping()
        except Exception as exc:
            raise RedisUnavailable(f"Redis is not reachable at {_safe(self.url)}: {type(exc).__name__}: {exc}") from exc

    # ------------------------------------------------------------------ loading

    def _load(self, call_ids: tuple[str, ...] = ()) -> tuple[int, Acd, dict[str, Party], set[str]]:
        version, doc_raw, finals = self._read(call_ids)
        acd, parties = self._parse(doc_raw, finals)
        return version, acd, parties, set(finals)

    def _read(self, call_ids: tuple[str, ...]) -> tuple[int, bytes | str | None, dict[str, CallFinal]]:
        pipe = self.client.pipeline(transaction=False)
        pipe.hmget(self.keys[0], "version", "doc")
        if call_ids:
            pipe.hmget(self.keys[1], *call_ids)
        results = pipe.execute()
        version_raw, doc_raw = results[0]
        finals: dict[str, CallFinal] = {}
        if call_ids:
            for call_id, raw in zip(call_ids, results[1]):
                if raw is not None:
                    finals[call_id] = final_from_dict(json.loads(raw))
        return int(version_raw or 0), doc_raw, finals

    def _parse(self, doc_raw: bytes | str | None, finals: dict[str, CallFinal]) -> tuple[Acd, dict[str, Party]]:
        if doc_raw is None:
            return Acd(settings=self.settings, state=AcdState()), {}
        doc = json.loads(doc_raw)
        parties = {key: _party(value) for key, value in doc["parties"].items()}
        return Acd(settings=self.settings, state=state_from_dict(doc["acd"], finals)), parties

    # ------------------------------------------------------------------ deciding

    def decide(self, event: str, *args: Any, now: float, info: Party | None = None, **kwargs: Any) -> Decision:
        call_ids = (args[0],) if event in EVENTS_READING_FINALS and args and isinstance(args[0], str) else ()
        return self._decide(event, args, kwargs, now, info, call_ids)

    def tick(self, now: float) -> Decision | None:
        return self._decide("tick", (), {}, now, None, ())

    def _decide(self, event: str, args: tuple[Any, ...], kwargs: dict[str, Any], now: float, info: Party | None,
                call_ids: tuple[str, ...]) -> Decision | None:
        kept = self._kept if event != "tick" else None
        for attempt in range(self.max_tries):
            if kept is not None:  # the state as this process last saw it: decide without a read (module doc)
                version, held, finals, kept = kept[0], kept[1], {}, None
                from_copy = True
                if isinstance(held, tuple):  # this process's own last write, still as objects: not even a parse
                    acd, parties = Acd(settings=self.settings, state=held[0]), held[1]
                else:
                    acd, parties = self._parse(held, finals)
            else:
                version, doc_raw, finals = self._read(call_ids)
                from_copy = False
                acd, parties = self._parse(doc_raw, finals)
            if event == "tick" and not is_due(acd, decision_time(acd.state, now)):
                return None  # nothing due (or another process claimed it first): nothing to write
            try:
                actions, at, named = apply_event(acd=acd, parties=parties, process_id=self.process_id, event=event,
                                                 args=args, kwargs=kwargs, now=now, info=info)
            except AcdError:
                if from_copy:
                    self._kept = None
                    continue  # perhaps only the copy is behind: the verdict comes from a fresh read
                raise
            if changes_nothing(event, actions):
                if from_copy:
                    self._kept = None
                    continue
                return Decision(version=version, at=at, origin=self.process_id, actions=(), parties={},
                                next_deadline=acd.next_deadline())
            absent = tuple(c for c in call_ids if c not in finals)  # the script checks they are still absent
            new_finals = [f for call_id, f in acd.state.finals.items() if call_id not in finals]
            due = acd.next_deadline()
            entry = json.dumps({"at": at, "origin": self.process_id, "due": due,
                                "actions": [action_to_dict(a) for a in actions],
                                "parties": {k: p.as_dict() for k, p in named.items()}}, separators=(",", ":"))
            doc = json.dumps({"acd": state_to_dict(acd.state), "parties": {k: p.as_dict() for k, p in parties.items()}},
                             separators=(",", ":"))
            new_version = self._commit(version, doc, due, new_finals, entry, absent,
                                       claim_turn=attempt + 1 >= TURN_AFTER_CONFLICTS)
            if new_version > 0:
                acd.state.finals.clear()  # saved; a later decision on this copy reads finals from Redis again
                self._kept = (new_version, (acd.state, parties))
                return Decision(version=new_version, at=at, origin=self.process_id, actions=tuple(actions),
                                parties=named, next_deadline=due)
            self.conflicts += 1
            kept = self._kept  # the state that won, as the script returned it (or None: read it again)
            if attempt >= 8:  # the turn did not help (its holder is stuck): spread the retries out
                time.sleep(random.uniform(0, 0.001 * min(attempt, 20)))
        raise QueueBusy(f"the shared agent queue is busy: {event} not committed after {self.max_tries} tries")

    def _commit(self, version: int, doc: str, due: float | None, finals: list[CallFinal], entry: str,
                absent: tuple[str, ...] = (), *, claim_turn: bool = False) -> int:
        """Write the decision if the state is still at `version` and the `absent` calls still have no final state:
        the new version, or -1 (someone else was first)."""
        argv: list[Any] = [version, doc, "" if due is None else repr(due), self.settings.final_history, entry,
                           LOG_MAXLEN, self.process_id, int(claim_turn), len(absent), *absent]
        for final in finals:
            argv += [final.call_id, json.dumps(final_to_dict(final), separators=(",", ":"))]
        result = self._commit_script(keys=self.keys, args=argv)
        if isinstance(result, list):  # lost the race: keep the winner's state for the next try
            self._kept = (int(result[1]), result[2])
            return -1
        if int(result) < 0:
            self._kept = None
        return int(result)

    # ------------------------------------------------------------------ reading

    def view(self, now: float) -> StoreView:
        version, acd, parties, _ = self._load()
        return StoreView(version=version, snapshot=build_snapshot(acd.state, decision_time(acd.state, now)),
                         parties=parties)

    def outcome(self, call_id: str) -> CallFinal | None:
        raw = self.client.hget(self.keys[1], call_id)
        return None if raw is None else final_from_dict(json.loads(raw))

    def next_deadline(self) -> float | None:
        raw = self.client.hget(self.keys[0], "due")
        return float(raw) if raw else None

    def version(self) -> int:
        return int(self.client.hget(self.keys[0], "version") or 0)

    def owned_by(self, process_id: str) -> tuple[list[str], list[str]]:
        return owned(self._load()[2], process_id)

    def close(self) -> None:
        self.client.close()

    def delete_all(self) -> None:
        """Remove every key of this queue (tests and benchmarks clean up after themselves)."""
        self.client.delete(*self.keys)

    # ------------------------------------------------------------------ following the log

    async def follow(self, after: int, *, block_ms: int = 1000) -> AsyncIterator[Decision]:
        """Every decision after version `after`, in order, as they are committed (by any process), forever.

        The blocking read runs in a worker thread with the synchronous client: cancelling the follower then
        never waits on a half-read reply (the thread ends by itself within block_ms)."""
        last = after
        while True:
            try:
                reply = await asyncio.to_thread(self.client.xread, {self.keys[3]: f"0-{last}"}, count=200,
                                                block=block_ms)
            except Exception as exc:  # Redis away: try again (the runtime's decisions fail loudly meanwhile)
                log.warning("the queue log is unreachable; retrying", extra={"error": type(exc).__name__})
                await asyncio.sleep(1.0)
                continue
            for _stream, entries in reply or []:
                for entry_id, fields in entries:
                    version = int(entry_id.decode().split("-")[1])
                    if version != last + 1:
                        # Trimmed before this process read it (it was stalled for LOG_MAXLEN decisions).
                        log.warning("queue decisions missed", extra={"count": version - last - 1})
                    last = version
                    yield decision_from_entry(version, fields[b"d"])


def decision_from_entry(version: int, raw: bytes) -> Decision:
    data = json.loads(raw)
    return Decision(version=version, at=data["at"], origin=data["origin"],
                    actions=tuple(action_from_dict(a) for a in data["actions"]),
                    parties={k: _party(v) for k, v in data["parties"].items()}, next_deadline=data["due"])


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    if "@" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
