"""Reading the call store for the consoles: history with filters and full-text search, one call's transcript,
export rows and the dashboard figures. Works on SQLite and PostgreSQL alike.

Searches match the MASKED text only (`text_masked`, filled on insert by the listeners below and for older rows by
migration 0003): a search for digits of a phone number finds nothing, whatever the call said, so searching cannot
recover what the masking hides.

Full-text search: Chinese has no spaces between words, so word tokenizers (FTS5's default, PostgreSQL's tsvector)
miss most Chinese words. A substring match on lower-cased text (`lower(text) LIKE '%…%'`, with LIKE's wildcards
escaped) finds any word in either language on both databases, with no extension to install. It scans the turns of
the calls in the date range; at hotline volumes (thousands of calls a day) that is milliseconds. pg_trgm or FTS5
trigram indexes are the way up when it is not.
"""
from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, event, exists, func, or_, select
from sqlalchemy.orm import aliased

from server.people.masking import mask_text
from server.metrics import percentile
from server.people.models import AgentTurn, QueueOutcome
from server.store.models import Call, CallEvent, Turn, as_utc


def _fill_masked(_mapper: Any, _connection: Any, target: Any) -> None:
    target.text_masked = mask_text(target.text)


for _model in (Turn, AgentTurn):
    event.listen(_model, "before_insert", _fill_masked)
    event.listen(_model, "before_update", _fill_masked)


@dataclass(frozen=True)
class CallFilter:
    date_from: dt.date | None = None
    date_to: dt.date | None = None  # inclusive
    language: str | None = None
    route: str | None = None
    topic: str | None = None
    state: str | None = None  # a call final state or a queue outcome
    agent: str | None = None
    q: str | None = None
    limit: int = 200
    offset: int = 0


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _conditions(f: CallFilter) -> list[Any]:
    conds: list[Any] = []
    if f.date_from:
        conds.append(Call.started_at >= dt.datetime.combine(f.date_from, dt.time(), dt.timezone.utc))
    if f.date_to:
        conds.append(Call.started_at < dt.datetime.combine(f.date_to + dt.timedelta(days=1), dt.time(), dt.timezone.utc))
    if f.language:
        conds.append(or_(Call.language == f.language, Call.queue_language == f.language))
    if f.route:
        conds.append(exists().where(Turn.call_id == Call.id, Turn.route == f.route))
    if f.topic:
        conds.append(exists().where(Turn.call_id == Call.id, Turn.topic == f.topic))
    # Subqueries on an alias, correlated to calls only: the listing joins queue_outcomes itself.
    qo = aliased(QueueOutcome)
    if f.state:
        conds.append(or_(Call.state == f.state,
                         select(qo.call_id).where(qo.call_id == Call.id, qo.outcome == f.state).correlate(Call).exists()))
    if f.agent:
        conds.append(select(qo.call_id).where(qo.call_id == Call.id, qo.agent_name == f.agent).correlate(Call).exists())
    if f.q and f.q.strip():
        pattern = f"%{_escape_like(f.q.strip().lower())}%"
        conds.append(or_(
            exists().where(Turn.call_id == Call.id, func.lower(Turn.text_masked).like(pattern, escape="\\")),
            exists().where(AgentTurn.call_id == Call.id, func.lower(AgentTurn.text_masked).like(pattern, escape="\\")),
        ))
    return conds


def _iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.isoformat()


async def search_calls(store: Any, f: CallFilter) -> tuple[int, list[dict[str, Any]]]:
    conds = _conditions(f)
    async with store.sessions() as s:
        total = (await s.execute(select(func.count()).select_from(Call).where(and_(*conds)) if conds
                                 else select(func.count()).select_from(Call))).scalar_one()
        q = select(Call, QueueOutcome).outerjoin(QueueOutcome, QueueOutcome.call_id == Call.id)
        if conds:
            q = q.where(and_(*conds))
        rows = (await s.execute(q.order_by(Call.started_at.desc()).limit(f.limit).offset(f.offset))).all()
        ids = [c.id for c, _ in rows]
        turns: dict[str, list[Turn]] = defaultdict(list)
        if ids:
            for t in (await s.execute(select(Turn).where(Turn.call_id.in_(ids)).order_by(Turn.call_id, Turn.seq))).scalars():
                turns[t.call_id].append(t)
    return total, [call_summary(c, o, turns.get(c.id, [])) for c, o in rows]


def call_summary(c: Call, o: QueueOutcome | None, turns: list[Turn]) -> dict[str, Any]:
    answers = [t for t in turns if t.speaker == "bot" and t.route]
    first_caller = next((t for t in turns if t.speaker == "caller"), None)
    escalation = next((t for t in answers if t.route == "agent"), None)
    duration = None
    if c.ended_at is not None and c.started_at is not None:
        duration = round((as_utc(c.ended_at) - as_utc(c.started_at)).total_seconds(), 1)
    return {
        "call_id": c.id, "protocol": c.protocol, "started_at": _iso(c.started_at), "ended_at": _iso(c.ended_at),
        "duration_s": duration, "state": c.state, "reason": c.reason, "language": c.language or c.queue_language,
        "route": (escalation or (answers[-1] if answers else None)).route if answers else None,
        "topic": next((t.topic for t in answers if t.topic), None),
        "escalation_reason": escalation.decision_reason if escalation else None,
        "queue_outcome": o.outcome if o else None, "wait_s": o.wait_s if o else None,
        "agent": o.agent_name if o else None, "disposition": o.disposition if o else None,
        "turns": len(turns),
        "first_utterance": mask_text(first_caller.text)[:160] if first_caller else None,
    }


async def call_transcript(store: Any, call_id: str, *, masked: bool) -> dict[str, Any] | None:
    """The call with every turn (caller, bot, agent) and the bot's decisions, in time order."""
    async with store.sessions() as s:
        call = await s.get(Call, call_id)
        if call is None:
            return None
        outcome = await s.get(QueueOutcome, call_id)
        turns = list((await s.execute(select(Turn).where(Turn.call_id == call_id).order_by(Turn.seq))).scalars())
        agent_turns = list((await s.execute(select(AgentTurn).where(AgentTurn.call_id == call_id).order_by(AgentTurn.id))).scalars())
        events = list((await s.execute(select(CallEvent).where(CallEvent.call_id == call_id).order_by(CallEvent.id))).scalars())
    t0 = as_utc(call.started_at)
    rel = lambda at: round((as_utc(at) - t0).total_seconds(), 2)  # noqa: E731
    m = (lambda x: mask_text(x)) if masked else (lambda x: x)  # noqa: E731
    items: list[dict[str, Any]] = []
    for t in turns:
        items.append({"at_s": rel(t.created_at), "seq": t.seq, "speaker": t.speaker, "kind": t.kind, "text": m(t.text),
                      "language": t.language, "language_probability": t.language_probability,
                      "language_source": t.language_source, "route": t.route, "topic": t.topic,
                      "decision_reason": t.decision_reason, "score": t.score, "response_s": t.response_s,
                      "interrupted": t.interrupted})
    for a in agent_turns:
        items.append({"at_s": rel(a.created_at), "seq": None, "speaker": "agent", "kind": a.kind, "text": m(a.text),
                      "language": a.language, "agent": a.agent_name})
    items.sort(key=lambda x: (x["at_s"], x["seq"] or 0))
    decisions = [{"at_s": rel(e.at), "kind": e.kind, **(e.data or {})} for e in events
                 if e.kind in ("decision", "queued", "agent_connected", "agent_disconnected", "queue_final", "ended",
                               "barge_in", "no_input", "dtmf")]
    if masked:
        for d in decisions:
            d.pop("digit", None)  # key presses can spell a number
    summary = call_summary(call, outcome, turns)
    if outcome is not None:
        summary["note"] = m(outcome.note) if outcome.note else None
    summary["caller_id"] = ("[PHONE]" if call.caller_id else None) if masked else call.caller_id
    return {"call": summary, "turns": items, "decisions": decisions}


async def export_rows(store: Any, f: CallFilter) -> list[dict[str, Any]]:
    """Every call of the filter with its masked transcript (exports never carry caller data)."""
    _, calls = await search_calls(store, f)
    out = []
    for c in calls:
        t = await call_transcript(store, c["call_id"], masked=True)
        if t is None:
            continue
        c = dict(t["call"])
        c["transcript"] = [{k: v for k, v in x.items() if k in ("at_s", "speaker", "language", "text", "route", "topic")}
                           for x in t["turns"]]
        out.append(c)
    return out


async def dashboard(store: Any, *, days: int = 30, today: dt.date | None = None) -> dict[str, Any]:
    today = today or dt.datetime.now(dt.timezone.utc).date()
    start = today - dt.timedelta(days=days - 1)
    f = CallFilter(date_from=start, date_to=today, limit=100_000)
    conds = _conditions(f)
    async with store.sessions() as s:
        rows = (await s.execute(select(Call, QueueOutcome).outerjoin(QueueOutcome, QueueOutcome.call_id == Call.id)
                                .where(and_(*conds)))).all()
        bot_turns = (await s.execute(
            select(Turn.call_id, Turn.route, Turn.topic, Turn.decision_reason).join(Call, Call.id == Turn.call_id)
            .where(and_(*conds), Turn.speaker == "bot", Turn.route.is_not(None)).order_by(Turn.call_id, Turn.seq))).all()
    per_call: dict[str, list[Any]] = defaultdict(list)
    for row in bot_turns:
        per_call[row.call_id].append(row)
    per_day: dict[str, Counter[str]] = {(start + dt.timedelta(days=i)).isoformat(): Counter() for i in range(days)}
    reasons: Counter[str] = Counter()
    languages: Counter[str] = Counter()
    topics: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    waits: list[float] = []
    bot_only = escalated = 0
    for call, outcome in rows:
        day = as_utc(call.started_at).date().isoformat()
        answers = per_call.get(call.id, [])
        agent_turn = next((a for a in answers if a.route == "agent"), None)
        is_escalated = agent_turn is not None or call.queued_at is not None
        c = per_day.setdefault(day, Counter())
        c["calls"] += 1
        if is_escalated:
            escalated += 1
            c["escalated"] += 1
            reasons[(agent_turn.decision_reason if agent_turn else None) or "unknown"] += 1
        elif any(a.route == "answer" for a in answers):
            bot_only += 1
            c["bot_only"] += 1
        if outcome is not None:
            outcomes[outcome.outcome] += 1
            waits.append(float(outcome.wait_s))
            if outcome.outcome == "abandoned":
                c["abandoned"] += 1
        languages[call.language or call.queue_language or "unknown"] += 1
        topic = next((a.topic for a in answers if a.topic), None)
        topics[topic or "none"] += 1
    total = len(rows)
    return {
        "from": start.isoformat(), "to": today.isoformat(), "calls": total,
        "per_day": [{"day": d, "calls": c["calls"], "bot_only": c["bot_only"], "escalated": c["escalated"],
                     "abandoned": c["abandoned"]} for d, c in sorted(per_day.items())],
        "bot_only_share": round(bot_only / total, 4) if total else None,
        "escalations": escalated,
        "escalation_reasons": dict(reasons.most_common()),
        "wait_avg_s": round(sum(waits) / len(waits), 2) if waits else None,
        "wait_p95_s": round(percentile(waits, 95), 2) if waits else None,
        "abandoned": outcomes.get("abandoned", 0),
        "queue_outcomes": dict(outcomes),
        "by_language": dict(languages.most_common()),
        "by_topic": dict(topics.most_common(15)),
    }
