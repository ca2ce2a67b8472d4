"""REST endpoints of the consoles, under /api. Every route declares the permission it needs (server/people/auth.py
PERMISSIONS) and a response model: one schema per purpose, so nothing leaves the service by accident.

Transcripts: a supervisor or admin always gets them masked (server/people/masking.py), and every such read is written to
the audit log; an agent gets a call's transcript unmasked, and only for a call they answered.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import select

from server.people.auth import COOKIE, AuthError, AuthService, PasswordRejected, Principal, auth_service, request_token, require
from server.people import history
from server.people.models import QueueOutcome
from server.security import ERROR_RESPONSES, unprocessable

router = APIRouter(prefix="/api", responses=ERROR_RESPONSES)

# ------------------------------------------------------------------ schemas


class LoginIn(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class UserPublic(BaseModel):
    name: str
    role: str
    languages: list[str]


class LoginOut(BaseModel):
    token: str
    expires_in_s: float
    user: UserPublic


class UserCreate(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    role: Literal["agent", "supervisor", "admin"]
    languages: list[Literal["en", "zh"]] = []
    password: str = Field(min_length=1, max_length=1024)


class UserRow(UserPublic):
    dev_only: bool
    disabled: bool


class QueuedCallOut(BaseModel):
    call_id: str
    language: str
    topic: str | None
    position: int
    wait_s: float
    offered_to: str | None
    requeued: bool
    callback_offered: bool


class ActiveCallOut(BaseModel):
    call_id: str
    language: str
    agent: str
    wait_s: float
    talk_s: float


class AgentOut(BaseModel):
    name: str
    languages: list[str]
    state: str
    since_s: float
    call_id: str | None
    missed_offers: int


class CallbackTaskOut(BaseModel):
    task_id: str
    call_id: str
    language: str
    wait_s: float


class QueueOut(BaseModel):
    queue: list[QueuedCallOut]
    active: list[ActiveCallOut]
    agents: list[AgentOut] | None  # supervisors only
    callback_tasks: list[CallbackTaskOut]


class LiveCallOut(BaseModel):
    call_id: str
    state: str
    language: str | None
    topic: str | None
    route: str | None
    agent: str | None
    duration_s: float
    waiting_s: float | None


class CallSummaryOut(BaseModel):
    call_id: str
    protocol: str
    started_at: str | None
    ended_at: str | None
    duration_s: float | None
    state: str
    reason: str | None
    language: str | None
    route: str | None
    topic: str | None
    escalation_reason: str | None
    queue_outcome: str | None
    wait_s: float | None
    agent: str | None
    disposition: str | None
    turns: int
    first_utterance: str | None


class CallListOut(BaseModel):
    total: int
    items: list[CallSummaryOut]


class TranscriptTurnOut(BaseModel):
    at_s: float
    seq: int | None
    speaker: str
    kind: str
    text: str
    language: str
    language_probability: float | None = None
    language_source: str | None = None
    route: str | None = None
    topic: str | None = None
    decision_reason: str | None = None
    score: float | None = None
    response_s: float | None = None
    interrupted: bool | None = None
    agent: str | None = None


class TranscriptCallOut(CallSummaryOut):
    note: str | None = None
    caller_id: str | None = None


class TranscriptOut(BaseModel):
    call: TranscriptCallOut
    turns: list[TranscriptTurnOut]
    decisions: list[dict[str, Any]]
    masked: bool
    recording: bool


class DayOut(BaseModel):
    day: str
    calls: int
    bot_only: int
    escalated: int
    abandoned: int


class DashboardOut(BaseModel):
    from_: str = Field(alias="from")
    to: str
    calls: int
    per_day: list[DayOut]
    bot_only_share: float | None
    escalations: int
    escalation_reasons: dict[str, int]
    wait_avg_s: float | None
    wait_p95_s: float | None
    abandoned: int
    queue_outcomes: dict[str, int]
    by_language: dict[str, int]
    by_topic: dict[str, int]

    model_config = {"populate_by_name": True}


class AuditOut(BaseModel):
    id: int
    at: str
    user_name: str
    role: str
    action: str
    call_id: str | None
    detail: dict[str, Any] | None


class OkOut(BaseModel):
    ok: bool = True


class TicketOut(BaseModel):
    ticket: str
    expires_in_s: float


class PasswordIn(BaseModel):
    password: str = Field(min_length=1, max_length=1024)


class RevokedOut(BaseModel):
    revoked_sessions: int


Auth = Annotated[AuthService, Depends(auth_service)]


def _people(request: Request) -> Any:
    return request.app.state.people


def _public(p: Principal) -> UserPublic:
    return UserPublic(name=p.name, role=p.role, languages=list(p.languages))


# ------------------------------------------------------------------ sessions


@router.post("/auth/login", response_model=LoginOut)
async def login(body: LoginIn, request: Request, response: Response, auth: Auth) -> LoginOut:
    throttle = _people(request).throttle
    address = request.client.host if request.client else "unknown"
    wait = throttle.retry_after(name=body.name, address=address, now=time.monotonic())
    if wait is not None:
        raise HTTPException(status_code=429, detail="too many failed sign-ins; try again later",
                            headers={"Retry-After": str(wait)})
    try:
        token, principal = await auth.login(body.name, body.password)
    except AuthError as exc:
        throttle.failed(name=body.name, address=address, now=time.monotonic())
        await auth.audit_failure(body.name, "login_failed", detail={"address": address})
        raise HTTPException(status_code=401, detail=str(exc)) from None
    throttle.succeeded(name=body.name)
    response.set_cookie(COOKIE, token, max_age=int(auth.token_ttl_s), httponly=True, samesite="strict", path="/")
    return LoginOut(token=token, expires_in_s=auth.token_ttl_s, user=_public(principal))


@router.post("/auth/logout", response_model=OkOut)
async def logout(request: Request, response: Response, auth: Auth,
                 who: Annotated[Principal, require("self")]) -> OkOut:
    token = request_token(request)
    if token:
        await auth.logout(token)
    response.delete_cookie(COOKIE, path="/")
    return OkOut()


@router.post("/ws-ticket", response_model=TicketOut)
async def ws_ticket(request: Request, auth: Auth, who: Annotated[Principal, require("self")]) -> TicketOut:
    """A one-time ticket for opening a console websocket (`?ticket=`), valid for a few seconds: the session token
    itself never goes into a URL."""
    token = request_token(request) or ""
    return TicketOut(ticket=auth.tickets.issue(token, time.monotonic()), expires_in_s=auth.tickets.ttl_s)


@router.get("/me", response_model=UserPublic)
async def me(who: Annotated[Principal, require("self")]) -> UserPublic:
    return _public(who)


# ------------------------------------------------------------------ queue and live calls


@router.get("/queue", response_model=QueueOut)
async def queue(request: Request, who: Annotated[Principal, require("queue.view")]) -> QueueOut:
    view = _people(request).queue.queue_view(masked=True)
    if who.role == "agent":
        view["agents"] = None  # agents see the queue, not their colleagues' states
    return QueueOut(**view)


@router.get("/live", response_model=list[LiveCallOut])
async def live_calls(request: Request, who: Annotated[Principal, require("calls.review")]) -> list[LiveCallOut]:
    live = _people(request).live
    now = live.clock()
    return [LiveCallOut(**c.summary(now)) for c in list(live.calls.values())]


# ------------------------------------------------------------------ history


def _filter(date_from: dt.date | None, date_to: dt.date | None, language: str | None, route: str | None,
            topic: str | None, state: str | None, agent: str | None, q: str | None, limit: int, offset: int
            ) -> history.CallFilter:
    return history.CallFilter(date_from=date_from, date_to=date_to, language=language or None, route=route or None,
                              topic=topic or None, state=state or None, agent=agent or None, q=q or None,
                              limit=limit, offset=offset)



async def call_filter(date_from: dt.date | None = None, date_to: dt.date | None = None, language: str | None = None,
                      route: str | None = None, topic: str | None = None, state: str | None = None,
                      agent: str | None = None, q: Annotated[str | None, Query(max_length=200)] = None,
                      limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                      offset: Annotated[int, Query(ge=0)] = 0) -> history.CallFilter:
    return _filter(date_from, date_to, language, route, topic, state, agent, q, limit, offset)


@router.get("/calls", response_model=CallListOut)
async def calls(request: Request, who: Annotated[Principal, require("calls.review")],
                f: Annotated[history.CallFilter, Depends(call_filter)]) -> CallListOut:
    total, items = await history.search_calls(request.app.state.store, f)
    if f.q:
        # A search reads transcripts: it is audited like opening one (without the query text: it may be a number).
        await _people(request).auth.audit(who, "search_transcripts", detail={"results": total, "query_chars": len(f.q)})
    return CallListOut(total=total, items=[CallSummaryOut(**i) for i in items])


@router.get("/calls/export", response_class=Response, responses={200: {
    "description": "the calls of the filter with their masked transcripts, as CSV or JSON",
    "content": {"text/csv": {"schema": {"type": "string"}}, "application/json": {"schema": {"type": "object"}}}}})
async def export(request: Request, who: Annotated[Principal, require("calls.review")],
                 f: Annotated[history.CallFilter, Depends(call_filter)],
                 format: Literal["csv", "json"] = "csv") -> Response:
    rows = await history.export_rows(request.app.state.store, f)
    await _people(request).auth.audit(who, "export", detail={"format": format, "calls": len(rows),
                                                             "call_ids": [r["call_id"] for r in rows][:1000]})
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    if format == "json":
        body = json.dumps({"exported_at": stamp, "masked": True, "calls": rows}, ensure_ascii=False, indent=1)
        return Response(body, media_type="application/json; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="calls-{stamp}.json"'})
    out = io.StringIO()
    columns = ["call_id", "started_at", "ended_at", "duration_s", "state", "reason", "language", "route", "topic",
               "escalation_reason", "queue_outcome", "wait_s", "agent", "disposition", "note", "transcript"]
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        r = dict(r)
        r["transcript"] = "\n".join(f"[{t['at_s']:.1f}s {t['speaker']} {t['language']}] {t['text']}" for t in r["transcript"])
        writer.writerow(r)
    # BOM: spreadsheet programs read the Chinese text as UTF-8 only with it.
    return Response("\ufeff" + out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="calls-{stamp}.csv"'})


async def _agent_answered(request: Request, who: Principal, call_id: str) -> bool:
    live = _people(request).queue.agents.get(who.name)
    if live is not None and live.call_id == call_id:
        return True
    async with request.app.state.store.sessions() as s:
        row = (await s.execute(select(QueueOutcome.call_id).where(QueueOutcome.call_id == call_id,
                                                                  QueueOutcome.agent_name == who.name))).first()
    return row is not None


@router.get("/calls/{call_id}", response_model=TranscriptOut)
async def call_detail(call_id: str, request: Request, who: Annotated[Principal, require("queue.view")]) -> TranscriptOut:
    if who.role == "agent":
        # An agent sees only their own calls, unmasked (they heard it all on the line).
        if not await _agent_answered(request, who, call_id):
            raise HTTPException(status_code=404, detail="no such call among yours")
        masked = False
    else:
        masked = True
    data = await history.call_transcript(request.app.state.store, call_id, masked=masked)
    if data is None:
        raise HTTPException(status_code=404, detail="no such call")
    if who.role != "agent":
        await _people(request).auth.audit(who, "read_transcript", call_id=call_id)
    recordings = _people(request).recordings
    has_recording = bool(recordings is not None and await recordings.exists(call_id))
    return TranscriptOut(call=TranscriptCallOut(**data["call"]), turns=[TranscriptTurnOut(**t) for t in data["turns"]],
                         decisions=data["decisions"], masked=masked, recording=has_recording)


@router.get("/calls/{call_id}/recording")
async def recording(call_id: str, request: Request, who: Annotated[Principal, require("calls.review")]) -> Response:
    if not call_id.isalnum() or len(call_id) > 64:
        raise HTTPException(status_code=404, detail="no such recording")
    recordings = _people(request).recordings
    wav = await recordings.load(call_id) if recordings is not None else None
    if wav is None:
        raise HTTPException(status_code=404, detail="no recording of this call")
    await _people(request).auth.audit(who, "play_recording", call_id=call_id)
    return Response(wav, media_type="audio/wav", headers={"Cache-Control": "no-store"})


@router.get("/agent/calls", response_model=CallListOut)
async def my_calls(request: Request, who: Annotated[Principal, require("agent.console")],
                   limit: Annotated[int, Query(ge=1, le=200)] = 50) -> CallListOut:
    f = history.CallFilter(agent=who.name, limit=limit)
    total, items = await history.search_calls(request.app.state.store, f)
    return CallListOut(total=total, items=[CallSummaryOut(**i) for i in items])


@router.get("/dashboard", response_model=DashboardOut, response_model_by_alias=True)
async def dashboard_view(request: Request, who: Annotated[Principal, require("calls.review")],
                         days: Annotated[int, Query(ge=1, le=366)] = 14) -> DashboardOut:
    return DashboardOut(**await history.dashboard(request.app.state.store, days=days))


# ------------------------------------------------------------------ administration


@router.get("/users", response_model=list[UserRow])
async def users(auth: Auth, who: Annotated[Principal, require("users.manage")]) -> list[UserRow]:
    return [UserRow(name=u.name, role=u.role, languages=[x for x in u.languages.split(",") if x], dev_only=u.dev_only,
                    disabled=u.disabled) for u in await auth.users()]


@router.post("/users", response_model=UserPublic, status_code=201)
async def add_user(body: UserCreate, auth: Auth, who: Annotated[Principal, require("users.manage")]) -> UserPublic:
    try:
        user = await auth.add_user(name=body.name, role=body.role, password=body.password, languages=body.languages)
    except (AuthError, PasswordRejected) as exc:
        raise unprocessable("password" if isinstance(exc, PasswordRejected) else "name", str(exc)) from None
    await auth.audit(who, "add_user", detail={"user": user.name, "role": user.role})
    return UserPublic(name=user.name, role=user.role, languages=[x for x in user.languages.split(",") if x])


@router.get("/audit", response_model=list[AuditOut])
async def audit_log(auth: Auth, who: Annotated[Principal, require("audit.read")],
                    call_id: str | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> list[AuditOut]:
    rows = await auth.audit_entries(limit=limit, call_id=call_id)
    return [AuditOut(id=r.id, at=history._iso(r.at) or "", user_name=r.user_name, role=r.role, action=r.action,
                     call_id=r.call_id, detail=r.detail) for r in rows]


async def _manage(auth: AuthService, who: Principal, name: str, action: str, fn: Any) -> Any:
    try:
        result = await fn()
    except PasswordRejected as exc:
        raise unprocessable("password", str(exc)) from None
    except AuthError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None
    await auth.audit(who, action, detail={"user": name})
    return result


@router.post("/users/{name}/disable", response_model=OkOut)
async def disable_user(name: str, auth: Auth, who: Annotated[Principal, require("users.manage")]) -> OkOut:
    await _manage(auth, who, name, "disable_user", lambda: auth.set_disabled(name, True))
    return OkOut()


@router.post("/users/{name}/enable", response_model=OkOut)
async def enable_user(name: str, auth: Auth, who: Annotated[Principal, require("users.manage")]) -> OkOut:
    await _manage(auth, who, name, "enable_user", lambda: auth.set_disabled(name, False))
    return OkOut()


@router.post("/users/{name}/revoke", response_model=RevokedOut)
async def revoke_user(name: str, auth: Auth, who: Annotated[Principal, require("users.manage")]) -> RevokedOut:
    count = await _manage(auth, who, name, "revoke_sessions", lambda: auth.revoke(name))
    return RevokedOut(revoked_sessions=count)


@router.post("/users/{name}/password", response_model=OkOut)
async def reset_password(name: str, body: PasswordIn, auth: Auth,
                         who: Annotated[Principal, require("users.manage")]) -> OkOut:
    await _manage(auth, who, name, "reset_password", lambda: auth.reset_password(name, body.password))
    return OkOut()
