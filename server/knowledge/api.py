"""REST routes of the knowledge editor and the missed-questions report, under /api/knowledge.

Supervisors and admins edit and publish (`knowledge.edit`, `knowledge.publish` in server/people/auth.py); agents
cannot. Edits are drafts until published; a publish and a roll-back go live in every process (server/knowledge/
service.py) and are written to the audit log, as are draft saves.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import io
import wave
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response
from pydantic import BaseModel, Field

from routing.knowledge import MAX_ANSWER_CHARS, MAX_QUESTION_CHARS, KnowledgeEntry, KnowledgeError, parse_topic_file
from routing.topics import OUT_OF_SCOPE, TOPICS
from server.knowledge import missed
from server.knowledge.store import KnowledgeConflict, Row
from server.people.auth import Principal, require
from server.security import ERROR_RESPONSES, unprocessable

router = APIRouter(prefix="/api/knowledge", responses=ERROR_RESPONSES)

Editor = Annotated[Principal, require("knowledge.edit")]
Publisher = Annotated[Principal, require("knowledge.publish")]


class EntryIn(BaseModel):
    """An entry as written in a topic file, plus its topic (validated by the YAML loader's code)."""

    topic: str = Field(max_length=48)
    document: dict[str, Any]
    create: bool = False  # a new entry: refused if the id exists


class VariantIn(BaseModel):
    language: Literal["en", "zh"]
    text: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS)


class QuestionIn(BaseModel):
    text: str = Field(min_length=1, max_length=600)
    language: Literal["en", "zh", "auto"] = "auto"


class PreviewIn(BaseModel):
    questions: list[QuestionIn] = Field(default_factory=list, max_length=50)
    # A missed-question group, routed again. Row ids: a value past the database's 64-bit integers is refused here
    # rather than by the database.
    turn_ids: list[Annotated[int, Field(ge=1, le=2**63 - 1)]] = Field(default_factory=list, max_length=500)


class SpeechIn(BaseModel):
    text: str = Field(min_length=1, max_length=MAX_ANSWER_CHARS)
    language: Literal["en", "zh"]


class RollbackIn(BaseModel):
    revision: int = Field(ge=1)


class RevisionOut(BaseModel):
    entry_id: str
    revision: int
    topic: str
    document: dict[str, Any]
    deleted: bool
    action: str
    author: str
    created_at: str
    published_at: str | None
    published_by: str | None
    kb_version: int | None
    draft: bool


class EntryOut(BaseModel):
    id: str
    topic: str
    document: dict[str, Any]
    draft: bool  # the document is an unpublished draft
    published: bool  # the entry is in the published base
    overdue: bool  # past its review-by day
    revision: int


class EntryListOut(BaseModel):
    version: int
    served_version: int
    drafts: int
    overdue: int
    topics: list[str]
    items: list[EntryOut]


class DecisionOut(BaseModel):
    text: str | None = None  # the question (masked for turns of a group: not sent back)
    turn_id: int | None = None
    route: str
    topic: str
    entry_id: str | None
    answer: str
    language: str
    score: float
    reason: str
    before_route: str | None = None
    before_entry_id: str | None = None


class PreviewOut(BaseModel):
    decisions: list[DecisionOut]
    group: dict[str, int] | None  # {"examples", "answered_before", "answered_now"}


class PublishOut(BaseModel):
    version: int
    changed: list[str]


class MissedOut(BaseModel):
    date_from: str | None
    date_to: str | None
    language: str | None
    below: float
    turns: int
    groups: list[dict[str, Any]]


def _service(request: Request) -> Any:
    service = getattr(request.app.state, "knowledge", None)
    if service is None or getattr(request.app.state, "store", None) is None:
        raise HTTPException(status_code=503, detail="the service is starting")
    return service


def _ready(request: Request) -> Any:
    service = _service(request)
    if service.router is None:
        raise HTTPException(status_code=503, detail="the models are still loading")
    return service


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def _revision(r: Row) -> RevisionOut:
    return RevisionOut(entry_id=r.entry_id, revision=r.revision, topic=r.topic, document=r.document, deleted=r.deleted,
                       action=r.action, author=r.author, created_at=_iso(r.created_at) or "",
                       published_at=_iso(r.published_at), published_by=r.published_by, kb_version=r.kb_version,
                       draft=r.published_at is None)


def validate_entry(topic: str, document: dict[str, Any]) -> KnowledgeEntry:
    """One entry through the YAML loader's validation (routing.knowledge.parse_topic_file): 422 with its message."""
    try:
        return parse_topic_file({"topic": topic, "entries": [document]}, "editor")[0]
    except KnowledgeError as exc:
        raise unprocessable("document", str(exc)) from None


def _today() -> dt.date:
    return dt.datetime.now(dt.timezone.utc).date()


def _matches(row: Row, q: str) -> bool:
    doc = row.document
    hay = [row.entry_id, row.topic, *(doc.get("answer") or {}).values()]
    for phrasings in (doc.get("questions") or {}).values():
        hay.extend(phrasings)
    needle = q.strip().lower()
    return any(needle in str(h).lower() for h in hay)


async def _audit(request: Request, who: Principal, action: str, detail: dict[str, Any]) -> None:
    await request.app.state.people.auth.audit(who, action, detail=detail)


# ------------------------------------------------------------------ entries


@router.get("/entries", response_model=EntryListOut)
async def entries(request: Request, who: Editor, q: Annotated[str | None, Query(max_length=200)] = None,
                  topic: str | None = None, overdue: bool = False) -> EntryListOut:
    service = _service(request)
    store = service.store
    rows = await store.entries(drafts=True)
    published = {r.entry_id for r in await store.entries()}
    today = _today()
    items = []
    all_overdue = 0
    for r in rows:
        review_by = r.document.get("review_by")
        late = bool(review_by) and dt.date.fromisoformat(str(review_by)) < today
        all_overdue += late
        if (q and not _matches(r, q)) or (topic and r.topic != topic) or (overdue and not late):
            continue
        items.append(EntryOut(id=r.entry_id, topic=r.topic, document=r.document, draft=r.published_at is None,
                              published=r.entry_id in published, overdue=late, revision=r.revision))
    return EntryListOut(version=await store.version(), served_version=service.version,
                        drafts=len(await store.drafts()), overdue=all_overdue, topics=list(TOPICS), items=items)


@router.get("/entries/{entry_id}/history", response_model=list[RevisionOut])
async def history(entry_id: str, request: Request, who: Editor) -> list[RevisionOut]:
    rows = await _service(request).store.history(entry_id)
    if not rows:
        raise HTTPException(status_code=404, detail="no such entry")
    return [_revision(r) for r in rows]


@router.put("/entries/{entry_id}", response_model=RevisionOut)
async def save_entry(entry_id: str, body: EntryIn, request: Request, who: Editor) -> RevisionOut:
    """Save an entry (new or changed) as a draft. The id in the path and the document must agree."""
    document = dict(body.document)
    if document.get("id", entry_id) != entry_id:
        raise unprocessable("document", "the id in the document differs from the one in the path")
    document["id"] = entry_id
    entry = validate_entry(body.topic, document)
    try:
        row = await _service(request).store.save_draft(entry, author=who.name, create=body.create)
    except KnowledgeConflict as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from None
    except KnowledgeError as exc:
        raise unprocessable("document", str(exc)) from None
    await _audit(request, who, "knowledge_edit", {"entry_id": entry_id, "revision": row.revision})
    return _revision(row)


@router.post("/entries/{entry_id}/variants", response_model=RevisionOut)
async def add_variant(entry_id: str, body: VariantIn, request: Request, who: Editor) -> RevisionOut:
    """Add a caller's phrasing as a question variant of the entry (to its draft, or to a new draft)."""
    store = _service(request).store
    current = next((r for r in await store.entries(drafts=True) if r.entry_id == entry_id), None)
    if current is None:
        raise HTTPException(status_code=404, detail="no such entry")
    document = dict(current.document)
    questions = {k: list(v) for k, v in (document.get("questions") or {}).items()}
    text = " ".join(body.text.split())
    if text not in questions.get(body.language, []):
        questions.setdefault(body.language, []).append(text)
    document["questions"] = questions
    entry = validate_entry(current.topic, document)
    row = await store.save_draft(entry, author=who.name)
    await _audit(request, who, "knowledge_edit", {"entry_id": entry_id, "revision": row.revision, "variant": body.language})
    return _revision(row)


@router.delete("/entries/{entry_id}/draft", response_model=PublishOut)
async def discard_draft(entry_id: str, request: Request, who: Editor) -> PublishOut:
    service = _service(request)
    dropped = await service.store.discard_draft(entry_id)
    return PublishOut(version=await service.store.version(), changed=[entry_id] if dropped else [])


# ------------------------------------------------------------------ preview


def _route_all(router_: Any, questions: list[tuple[int | None, str, str]]) -> list[Any]:
    return [router_.decide(text, language=language if language != "auto" else "unknown") for _, text, language in questions]


@router.post("/preview", response_model=PreviewOut)
async def preview(body: PreviewIn, request: Request, who: Editor) -> PreviewOut:
    """Route test questions (and a missed-question group's turns) on the knowledge base with every draft, and on the
    published one: what publishing would change, before publishing."""
    service = _ready(request)
    try:
        draft_kb = await service.store.knowledge(drafts=True)
    except KnowledgeError as exc:
        raise unprocessable("document", str(exc)) from None
    draft_router = await service.preview_router(draft_kb)
    turns = await missed.turn_texts(request.app.state.store, body.turn_ids)
    asked = [(None, q.text, q.language) for q in body.questions] + [(tid, text, lang) for tid, text, lang in turns]
    now = await asyncio.to_thread(_route_all, draft_router, asked)
    before = await asyncio.to_thread(_route_all, service.router, asked)
    decisions = []
    for (turn_id, text, _), d, b in zip(asked, now, before):
        decisions.append(DecisionOut(text=text if turn_id is None else None, turn_id=turn_id, route=d.route,
                                     topic=d.topic, entry_id=d.entry_id, answer=d.answer, language=d.language,
                                     score=round(float(d.score), 4), reason=str(d.reason), before_route=b.route,
                                     before_entry_id=b.entry_id))
    group = None
    if body.turn_ids:
        answered = lambda d: d.route == "answer" and d.topic != OUT_OF_SCOPE  # noqa: E731
        group = {"examples": len(turns), "answered_before": sum(answered(b) for b in before[len(body.questions):]),
                 "answered_now": sum(answered(d) for d in now[len(body.questions):])}
    return PreviewOut(decisions=decisions, group=group)


@router.post("/speech", response_class=Response,
             responses={200: {"content": {"audio/wav": {"schema": {"type": "string", "format": "binary"}}}}})
async def speech(body: SpeechIn, request: Request, who: Editor) -> Response:
    """An answer spoken in the hotline's voice (WAV), to hear a draft before publishing it."""
    service = _ready(request)
    synth = service.components.synthesizer
    from server.call.turn_taking import split_by_language

    def speak() -> tuple[bytes, int]:
        pcm, rate = bytearray(), 16000
        for seg in split_by_language(body.text, body.language):
            for chunk in synth.synthesize(seg.text, seg.language):
                pcm += chunk.pcm16
                rate = getattr(chunk, "sample_rate", rate)
        return bytes(pcm), rate

    pcm, rate = await asyncio.to_thread(speak)
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(rate), w.writeframes(pcm)
    return Response(out.getvalue(), media_type="audio/wav", headers={"Cache-Control": "no-store"})


# ------------------------------------------------------------------ publish and roll-back


@router.post("/publish", response_model=PublishOut)
async def publish(request: Request, who: Publisher) -> PublishOut:
    service = _service(request)
    try:
        version, changed = await service.store.publish(author=who.name)
    except KnowledgeError as exc:
        raise unprocessable("document", str(exc)) from None
    if changed:
        await _audit(request, who, "knowledge_publish", {"version": version, "entries": changed})
        await service.reload()  # this process at once; the others on the Redis announcement or their next poll
        await service.announce()
    return PublishOut(version=version, changed=changed)


@router.post("/entries/{entry_id}/rollback", response_model=PublishOut)
async def rollback(entry_id: str, body: RollbackIn, request: Request, who: Publisher) -> PublishOut:
    service = _service(request)
    try:
        version, row = await service.store.rollback(entry_id, body.revision, author=who.name)
    except KnowledgeConflict as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None
    except KnowledgeError as exc:
        raise unprocessable("document", str(exc)) from None
    await _audit(request, who, "knowledge_rollback", {"version": version, "entry_id": entry_id,
                                                       "to_revision": body.revision, "revision": row.revision})
    await service.reload()
    await service.announce()
    return PublishOut(version=version, changed=[entry_id])


# ------------------------------------------------------------------ missed questions


@router.get("/missed", response_model=MissedOut)
async def missed_questions(request: Request, who: Annotated[Principal, require("calls.review")],
                           date_from: dt.date | None = None, date_to: dt.date | None = None,
                           language: Literal["en", "zh", "other"] | None = None,
                           below: Annotated[float | None, Query(ge=0, le=1)] = None) -> MissedOut:
    """Caller turns the bot could not answer, grouped by meaning across both languages (examples masked)."""
    service = _ready(request)
    settings = getattr(service.router, "settings", None)
    low = below if below is not None else float(getattr(settings, "answer_threshold", 0.45)) + 0.1
    turns = await missed.missed_turns(request.app.state.store, date_from=date_from, date_to=date_to, language=language,
                                      low_score=low)
    groups = await asyncio.to_thread(missed.group_missed, turns, getattr(service.router, "retriever", None))
    # It reads callers' words (masked): audited like a transcript search.
    await _audit(request, who, "missed_questions", {"turns": len(turns), "groups": len(groups)})
    return MissedOut(date_from=date_from.isoformat() if date_from else None,
                     date_to=date_to.isoformat() if date_to else None, language=language, below=low, turns=len(turns),
                     groups=groups)

