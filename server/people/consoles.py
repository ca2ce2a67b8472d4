"""The console websockets: `GET /ws/agent?ticket=…` (agents) and `GET /ws/supervisor?ticket=…` (supervisors, admins).

Both refuse the upgrade (HTTP 403) without a valid session of an allowed role (a one-time ticket from
`POST /api/ws-ticket`, the session cookie or a bearer header; server/people/auth.py), and a browser's upgrade from
another site (the Origin must be the service's own host or one of `people.allowed_origins`). Every JSON message is
checked again: the session must still be valid and the message type allowed for the role (`WS_MESSAGES`); anything
else gets `{"event": "error", "code": "forbidden" | "unknown_message" | ...}`. A session that ends (sign-out,
revocation, a disabled account: at once; expiry: within `people.session_check_s`) closes the console with
`session_expired` and 1008, whether or not the console sends anything.

Agent console protocol
    from the console (JSON, key "type"):
        availability {state: available|away}    accept {call_id}    decline {call_id}
        end {call_id}          hand_back {call_id}          reply {text}   (spoken to the caller by the synthesizer)
        wrap_up {disposition, note}              complete_callback {task_id}
        audio.format {sample_rate}   the microphone's rate when not 16000 (resampled here, at the edge)
    binary: microphone audio, PCM16 mono (16 kHz unless audio.format said otherwise), sent to the caller on a call
    to the console: hello, agent.state, queue, offer (language, topic, masked transcript so far), offer.withdrawn,
        call.connected (full transcript), transcript (live lines: caller, bot, agent), decision, call.ended,
        reply.sent, callback.task, error;  binary: the caller's audio, 16 kHz PCM16, 20 ms frames
Supervisor console protocol
    from the console: watch {call_id} | unwatch | listen {call_id} | unlisten       (watch and listen are audited)
    to the console: hello, queue (with agents), live (calls in progress), transcript (masked), call.ended, error;
        binary while listening: one byte channel (1 caller, 2 what the caller hears) + 16 kHz PCM16
"""
from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any, AsyncIterator, Callable
from urllib.parse import urlsplit

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from routing.queue import AcdError
from server.people.auth import PERMISSIONS, Principal, websocket_principal, websocket_token
from server.people.masking import mask_text
from server.people.live import Subscriber
from server.tasks import cancel_and_wait

log = logging.getLogger("hotline.people.ws")
router = APIRouter()

# websocket path -> (permission needed to connect, message types allowed)
WS_MESSAGES: dict[str, tuple[str, frozenset[str]]] = {
    "/ws/agent": ("agent.console", frozenset({"availability", "accept", "decline", "end", "hand_back", "reply",
                                               "wrap_up", "complete_callback", "audio.format", "ping"})),
    "/ws/supervisor": ("calls.review", frozenset({"watch", "unwatch", "listen", "unlisten", "ping"})),
}
MAX_TEXT = 16 * 1024
MAX_AUDIO = 64 * 1024


class MaskingSubscriber(Subscriber):
    """A supervisor's view of a live call: transcript text masked before it is queued."""

    def put(self, item: Any) -> None:
        if isinstance(item, dict) and isinstance(item.get("text"), str):
            item = {**item, "text": mask_text(item["text"])}
        super().put(item)


def origin_allowed(websocket: WebSocket) -> bool:
    """Cross-site websocket hijacking: a page on another site can open a websocket to this one with the user's
    cookie. Browsers always send Origin; it must name this service (or an allowed origin). Clients that are not
    browsers send none and are judged by their credentials alone."""
    origin = websocket.headers.get("origin")
    if origin is None:
        return True
    settings = getattr(websocket.app.state.people, "settings", None)
    if origin in (getattr(settings, "allowed_origins", ()) or ()):
        return True
    return urlsplit(origin).netloc.lower() == (websocket.headers.get("host") or "").lower()


async def _open(websocket: WebSocket, path: str) -> Principal | None:
    permission, _ = WS_MESSAGES[path]
    if not origin_allowed(websocket):
        log.warning("console websocket refused: foreign origin")
        await websocket.close(code=1008)  # before accept: the upgrade is answered 403
        return None
    principal = await websocket_principal(websocket)
    if principal is None or principal.role not in PERMISSIONS[permission]:
        await websocket.close(code=1008)  # before accept: the upgrade is answered 403
        return None
    await websocket.accept()
    return principal


async def _session_guard(websocket: WebSocket, principal: Principal, sub: Subscriber, writer: asyncio.Task[None]) -> None:
    """Close the console when its session ends: told at once on sign-out, revocation or a disabled account, and
    checked every `session_check_s` for expiry, without waiting for the console to send anything."""
    auth = websocket.app.state.auth
    every_s = getattr(getattr(websocket.app.state.people, "settings", None), "session_check_s", 5.0)
    ended = asyncio.Event()
    unwatch = auth.watch(websocket_token(websocket) or "", principal.user_id, lambda _why: ended.set())
    try:
        while not ended.is_set():
            try:
                async with asyncio.timeout(every_s):
                    await ended.wait()
            except TimeoutError:
                again = await websocket_principal(websocket)
                if again is None or again.user_id != principal.user_id:
                    break
        await _last_words(websocket, writer, sub, "session_expired")
    finally:
        unwatch()


async def _writer(websocket: WebSocket, sub: Subscriber) -> None:
    while True:
        item = await sub.queue.get()
        try:
            async with asyncio.timeout(5):  # not wait_for: see server/call/transports/connection.py
                if isinstance(item, (bytes, bytearray)):
                    await websocket.send_bytes(bytes(item))
                else:
                    await websocket.send_text(json.dumps(item, ensure_ascii=False, default=str))
        except Exception:
            return


async def _checked(websocket: WebSocket, path: str, principal: Principal, raw: str) -> dict[str, Any] | str:
    """The parsed message, or an error code. The token is checked again: a signed-out session stops here."""
    if len(raw) > MAX_TEXT:
        return "too_large"
    try:
        msg = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: "[[[[…" nested deeper than the parser goes
        return "bad_json"
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        return "bad_message"
    again = await websocket_principal(websocket)
    if again is None or again.user_id != principal.user_id:
        return "session_expired"
    permission, allowed = WS_MESSAGES[path]
    if msg["type"] not in allowed:
        return "unknown_message"
    if again.role not in PERMISSIONS[permission]:
        return "forbidden"
    return msg


async def _messages(
    websocket: WebSocket, path: str, principal: Principal, sub: Subscriber, writer: asyncio.Task[None],
    *, on_binary: Callable[[bytes], None],
) -> AsyncIterator[dict[str, Any]]:
    """A console's checked JSON messages until it disconnects. A bad one is answered with an error event and
    skipped; binary frames go to `on_binary`; an expired session gets its last word and a 1008 close."""
    guard = asyncio.create_task(_session_guard(websocket, principal, sub, writer))
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is not None:
                on_binary(message["bytes"])
                continue
            msg = await _checked(websocket, path, principal, message.get("text") or "")
            if msg == "session_expired":
                await _last_words(websocket, writer, sub, msg)
                return
            if isinstance(msg, str):
                _error(sub, msg)
                continue
            yield msg
    finally:
        await cancel_and_wait(guard)


async def _last_words(websocket: WebSocket, writer: asyncio.Task[None], sub: Subscriber, code: str) -> None:
    """Say why the console is being closed, after what is already queued, then close with 1008 (policy)."""
    _error(sub, code)
    for _ in range(100):
        if sub.queue.empty() or writer.done():
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    try:
        await websocket.close(code=1008)
    except Exception:
        pass


def _error(sub: Subscriber, code: str, message: str = "") -> None:
    sub.put({"event": "error", "code": code, "message": message or code.replace("_", " ")})


@router.websocket("/ws/agent")
async def agent_console(websocket: WebSocket) -> None:
    principal = await _open(websocket, "/ws/agent")
    if principal is None:
        return
    people = websocket.app.state.people
    runtime = people.queue
    languages = tuple(x for x in principal.languages if x in ("en", "zh")) or ("en",)
    link = _resume(people, runtime, principal.name)
    sub = link.sub if link is not None else Subscriber(maxsize=1000)
    writer = asyncio.create_task(_writer(websocket, sub))
    sub.put({"event": "hello", "user": {"name": principal.name, "role": principal.role, "languages": list(languages)},
             "resumed": link is not None})
    if link is None:
        link = runtime.connect_agent(name=principal.name, languages=languages, sub=sub)  # then agent.state: away
    else:
        _resent_state(runtime, link)
    presence = getattr(websocket.app.state, "presence", None)  # several processes: the console's heartbeat
    if presence is not None:
        await presence.agent_connected(principal.name)
    sub.put({"event": "queue", **runtime.queue_view(masked=True), "agents": None})

    def audio(data: bytes) -> None:
        if len(data) > MAX_AUDIO or len(data) % 2:
            _error(sub, "bad_audio", "PCM16 frames of at most 64 KiB")
            return
        try:
            runtime.agent_audio(principal.name, data)
        except AcdError as exc:
            _error(sub, "bad_audio", str(exc))

    try:
        async for msg in _messages(websocket, "/ws/agent", principal, sub, writer, on_binary=audio):
            await _agent_message(runtime, principal, link, sub, msg, max_reply=people.settings.reply_max_chars)
    except WebSocketDisconnect:
        pass
    finally:
        if runtime.agents.get(principal.name) is link:
            grace = people.settings.console_grace_s
            if grace > 0:  # (a console replaced by another one is no longer the agent's link: no grace)
                _hold(people, runtime, principal.name, link, grace, presence)
            else:
                runtime.disconnect_agent(principal.name)
                if presence is not None:
                    await presence.agent_disconnected(principal.name)
        await cancel_and_wait(writer)
        if websocket.application_state != WebSocketState.DISCONNECTED:
            try:
                await websocket.close()
            except Exception:
                pass


def _holds(people: Any) -> dict[str, tuple[Any, asyncio.Task[None]]]:
    if not hasattr(people, "console_holds"):
        people.console_holds = {}
    return people.console_holds


def _hold(people: Any, runtime: Any, name: str, link: Any, grace: float, presence: Any) -> None:
    """Keep the agent's place in the queue (and its call) while the console reconnects; sign out after `grace`."""

    async def expire() -> None:
        await asyncio.sleep(grace)
        _holds(people).pop(name, None)
        if runtime.agents.get(name) is link:
            runtime.disconnect_agent(name)
            if presence is not None:
                await presence.agent_disconnected(name)

    old = _holds(people).pop(name, None)
    if old is not None:
        old[1].cancel()
    _holds(people)[name] = (link, asyncio.get_running_loop().create_task(expire()))


def _resume(people: Any, runtime: Any, name: str) -> Any:
    """The link kept for an agent whose console is reconnecting, or None."""
    held = _holds(people).pop(name, None)
    if held is None:
        return None
    link, task = held
    task.cancel()
    if runtime.agents.get(name) is not link:
        return None
    # Audio queued while no one listened is stale; the events (offers, transcript lines) are kept.
    kept = []
    while not link.sub.queue.empty():
        item = link.sub.queue.get_nowait()
        if not isinstance(item, (bytes, bytearray)):
            kept.append(item)
    for item in kept:
        link.sub.put(item)
    return link


def _resent_state(runtime: Any, link: Any) -> None:
    """What a console that reconnected needs to show again: the queue, and the call it is on."""
    link.sub.put({"event": "queue", **runtime.queue_view(masked=True), "agents": None})
    link.sub.put({"event": "agent.state", "state": runtime.agent_state(link.name)})
    if link.call_id is not None:
        link.sub.put({"event": "call.connected", "call_id": link.call_id, "resumed": True,
                      "transcript": runtime.transcript_of(link.call_id, masked=False)})


_SENTENCE_END = re.compile(r"(?<=[.!?。！？；;])\s*")


def split_sentences(text: str, *, max_chars: int = 240) -> list[str]:
    """A typed reply cut at sentence ends (English and Chinese punctuation); a sentence longer than `max_chars`
    is cut at that length."""
    out: list[str] = []
    for sentence in _SENTENCE_END.split(text.strip()):
        sentence = sentence.strip()
        while len(sentence) > max_chars:
            out.append(sentence[:max_chars])
            sentence = sentence[max_chars:].strip()
        if sentence:
            out.append(sentence)
    return out


async def _agent_message(runtime: Any, principal: Principal, link: Any, sub: Subscriber, msg: dict[str, Any],
                         max_reply: int = 1000) -> None:
    kind = msg["type"]
    name = principal.name
    try:
        if kind == "ping":
            sub.put({"event": "pong"})
        elif kind == "availability":
            runtime.set_availability(name, str(msg.get("state")))
        elif kind in ("accept", "decline", "end", "hand_back"):
            call_id = msg.get("call_id")
            if not isinstance(call_id, str) or not call_id:
                raise AcdError("call_id is required")
            {"accept": runtime.accept, "decline": runtime.decline, "end": runtime.end_call,
             "hand_back": runtime.hand_back}[kind](name, call_id)
        elif kind == "reply":
            text = msg.get("text")
            if not isinstance(text, str) or not text.strip():
                raise AcdError("text is required")
            if len(text) > max_reply:
                raise AcdError(f"a reply has at most {max_reply} characters")

            async def speak() -> None:
                # One synthesis job per sentence, in order: a long reply never holds the (shared) synthesis worker
                # for all of its length, and the caller hears the first sentence sooner.
                try:
                    for sentence in split_sentences(text):
                        said = await runtime.reply(name, sentence)
                        sub.put({"event": "reply.sent", **said})
                except AcdError as exc:
                    _error(sub, "refused", str(exc))
                except Exception as exc:  # synthesis overloaded or failed
                    _error(sub, "reply_failed", type(exc).__name__)

            runtime._spawn(speak())
        elif kind == "wrap_up":
            call_id = runtime.finish_wrap_up(name, disposition=str(msg.get("disposition") or ""),
                                             note=str(msg.get("note") or ""))
            sub.put({"event": "wrap_up.saved", "call_id": call_id})
        elif kind == "complete_callback":
            runtime.complete_callback(name, str(msg.get("task_id") or ""))
        elif kind == "audio.format":
            rate = msg.get("sample_rate")
            if not isinstance(rate, int) or not 8000 <= rate <= 96000:
                raise AcdError("sample_rate must be an integer between 8000 and 96000")
            link.input_rate = rate
    except AcdError as exc:
        _error(sub, "refused", str(exc))


@router.websocket("/ws/supervisor")
async def supervisor_console(websocket: WebSocket) -> None:
    principal = await _open(websocket, "/ws/supervisor")
    if principal is None:
        return
    people = websocket.app.state.people
    sub = MaskingSubscriber(maxsize=2000)
    writer = asyncio.create_task(_writer(websocket, sub))
    people.queue.observers.add(sub)
    watching: Any = None
    listening: Any = None

    async def live_loop() -> None:
        while True:
            now = people.live.clock()
            sub.put({"event": "live", "calls": people.live.summaries(now)})
            await asyncio.sleep(1.0)

    ticker = asyncio.create_task(live_loop())
    sub.put({"event": "hello", "user": {"name": principal.name, "role": principal.role}})
    try:
        no_audio = lambda _data: _error(sub, "unexpected_audio", "supervisors only listen")  # noqa: E731
        async for msg in _messages(websocket, "/ws/supervisor", principal, sub, writer, on_binary=no_audio):
            kind = msg["type"]
            if kind == "ping":
                sub.put({"event": "pong"})
                continue
            if kind in ("unwatch", "watch") and watching is not None:
                watching.watchers.discard(sub)
                watching = None
            if kind in ("unlisten", "listen") and listening is not None:
                listening.listeners.discard(sub)
                listening = None
            if kind in ("unwatch", "unlisten"):
                sub.put({"event": kind + "ed"})
            if kind in ("watch", "listen"):
                live = people.live.get(str(msg.get("call_id") or ""))
                if live is None:
                    _error(sub, "no_such_call", "that call is not in progress")
                    continue
                await people.auth.audit(principal, "watch_live" if kind == "watch" else "listen", call_id=live.call_id)
                if kind == "watch":
                    watching = live
                    live.watchers.add(sub)
                    sub.put({"event": "watching", "call_id": live.call_id,
                             "transcript": people.queue.transcript_of(live.call_id, masked=True) or
                             [{**e.as_dict(), "text": mask_text(e.text)} for e in live.transcript]})
                else:
                    listening = live
                    live.listeners.add(sub)
                    sub.put({"event": "listening", "call_id": live.call_id})
    except WebSocketDisconnect:
        pass
    finally:
        people.queue.observers.discard(sub)
        if watching is not None:
            watching.watchers.discard(sub)
        if listening is not None:
            listening.listeners.discard(sub)
        await cancel_and_wait(ticker, writer)
