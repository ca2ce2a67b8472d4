"""Missed questions: the caller turns the bot could not answer well, grouped so that a supervisor sees what to add.

A caller turn is missed when the bot's decision on it (stored on the bot turn that spoke it) was a `clarify`, an
out-of-scope answer, a transfer after repeated misses, or an answer with a low retrieval score. Explicit requests for
a person and unserved languages are not misses of the knowledge base.

Grouping uses the router's own multilingual embeddings. Raw E5 cosines crowd into a narrow band, and a question and
its translation score lower than two unrelated questions in one language (measured: 0.855 for a driving-licence
question and its Chinese translation, 0.89 for two unrelated English questions), so each vector is first centred on
the mean of its language's knowledge-base phrasings (which removes the language's own direction), then the turns are
clustered with average linkage at a cosine of GROUP_COSINE (the same pairs then score 0.42 against 0.46 at most for
unrelated questions sharing a place name; translations of short questions 0.53-0.81).
"""
from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from sqlalchemy import and_, select

from routing.retrieval_text import main_language, normalize
from routing.topics import OUT_OF_SCOPE
from server.people.masking import mask_text
from server.store.models import Call, Turn, as_utc

GROUP_COSINE = 0.3
MAX_TURNS = 2000  # the most recent missed turns that are grouped (average linkage is quadratic in memory)
NOT_MISSES = ("explicit_agent_request", "human_agent_topic", "language_not_served", "application_lookup",
              "application_number_unknown")


@dataclass(frozen=True)
class MissedTurn:
    turn_id: int
    call_id: str
    at: dt.datetime
    text: str  # unmasked: stays in the service (grouping, re-routing); masked on the way out
    language: str
    route: str
    topic: str | None
    entry_id: str | None
    score: float | None
    reason: str  # clarify | out_of_scope | transfer_after_misses | low_score


def miss_reason(route: str | None, topic: str | None, decision_reason: str | None, score: float | None,
                *, low_score: float) -> str | None:
    """Why this decision is a miss, or None (pure: the rules of the report in one place)."""
    if route is None or (decision_reason or "") in NOT_MISSES:
        return None
    if route == "clarify":
        return "clarify"
    if route == "agent":
        return "transfer_after_misses" if decision_reason == "repeated_low_confidence" else None
    if topic == OUT_OF_SCOPE:
        return "out_of_scope"
    if route == "answer" and score is not None and score < low_score:
        return "low_score"
    return None


async def missed_turns(store: Any, *, date_from: dt.date | None, date_to: dt.date | None, language: str | None,
                       low_score: float, limit: int = MAX_TURNS) -> list[MissedTurn]:
    conds = []
    if date_from:
        conds.append(Turn.created_at >= dt.datetime.combine(date_from, dt.time(), dt.timezone.utc))
    if date_to:
        conds.append(Turn.created_at < dt.datetime.combine(date_to + dt.timedelta(days=1), dt.time(), dt.timezone.utc))
    query = (select(Turn).join(Call, Call.id == Turn.call_id)
             .where(and_(*conds, Turn.kind.in_(("utterance", "answer"))) if conds else Turn.kind.in_(("utterance", "answer")))
             .order_by(Turn.call_id, Turn.seq))
    async with store.sessions() as s:
        turns = list((await s.execute(query)).scalars())
    out: list[MissedTurn] = []
    last_caller: Turn | None = None
    for t in turns:
        if last_caller is not None and last_caller.call_id != t.call_id:
            last_caller = None
        if t.speaker == "caller":
            last_caller = t
            continue
        if t.route is None or last_caller is None:
            continue
        caller, last_caller = last_caller, None  # one decision per caller turn: the first bot turn that spoke it
        reason = miss_reason(t.route, t.topic, t.decision_reason, t.score, low_score=low_score)
        if reason is None or not caller.text.strip():
            continue
        if language and caller.language != language:
            continue
        out.append(MissedTurn(turn_id=caller.id, call_id=caller.call_id, at=as_utc(caller.created_at), text=caller.text,
                              language=caller.language, route=t.route, topic=t.topic, entry_id=t.entry_id,
                              score=t.score, reason=reason))
    out.sort(key=lambda m: m.at, reverse=True)
    return out[:limit]


def language_means(retriever: Any) -> dict[str, np.ndarray]:
    """Mean embedding of the knowledge base's English and Chinese phrasings (the centres used for grouping)."""
    known = retriever.known_vectors() if hasattr(retriever, "known_vectors") else {}
    groups: dict[str, list[np.ndarray]] = {}
    for text, vector in known.items():
        groups.setdefault(main_language(text), []).append(vector)
    return {lang: np.mean(vs, axis=0) for lang, vs in groups.items() if lang in ("en", "zh")}


def group_labels(texts: Sequence[str], vectors: np.ndarray | None, means: dict[str, np.ndarray]) -> list[int]:
    """A group number per text: average-linkage clusters of the language-centred embeddings, or equal normalised
    texts when there are no embeddings."""
    if len(texts) == 0:
        return []
    if vectors is None or len(texts) == 1:
        keys: dict[str, int] = {}
        return [keys.setdefault(normalize(t), len(keys)) for t in texts]
    centred = np.asarray(vectors, dtype=np.float64).copy()
    for i, t in enumerate(texts):
        mean = means.get(main_language(normalize(t)))
        if mean is not None:
            centred[i] -= mean
    centred /= np.maximum(np.linalg.norm(centred, axis=1, keepdims=True), 1e-9)
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import pdist

    distances = np.clip(pdist(centred, metric="cosine"), 0.0, 2.0)
    tree = linkage(distances, method="average")
    return [int(x) for x in fcluster(tree, t=1.0 - GROUP_COSINE, criterion="distance")]


def group_missed(turns: list[MissedTurn], retriever: Any, *, examples: int = 8) -> list[dict[str, Any]]:
    """Groups, biggest first: counts per language and reason, masked examples with links to their calls, the topic
    the router guessed most often and the mean score. Blocking (embeddings): run it in a thread."""
    texts = [t.text for t in turns]
    vectors = retriever.embed_questions(texts) if texts and hasattr(retriever, "embed_questions") else None
    labels = group_labels(texts, vectors, language_means(retriever) if vectors is not None else {})
    members: dict[int, list[MissedTurn]] = {}
    for label, turn in zip(labels, turns):
        members.setdefault(label, []).append(turn)
    groups = []
    for items in members.values():
        topics = Counter(t.topic for t in items if t.topic)
        scores = [t.score for t in items if t.score is not None]
        groups.append({
            "key": f"g{min(t.turn_id for t in items)}",
            "count": len(items),
            "calls": len({t.call_id for t in items}),
            "languages": dict(Counter(t.language for t in items)),
            "reasons": dict(Counter(t.reason for t in items)),
            "topic": topics.most_common(1)[0][0] if topics else None,
            "entry_id": Counter(t.entry_id for t in items if t.entry_id).most_common(1)[0][0]
            if any(t.entry_id for t in items) else None,
            "score": round(float(np.mean(scores)), 3) if scores else None,
            "first_at": min(t.at for t in items).isoformat(),
            "last_at": max(t.at for t in items).isoformat(),
            "turn_ids": [t.turn_id for t in items],
            "examples": [{"turn_id": t.turn_id, "call_id": t.call_id, "text": mask_text(t.text), "language": t.language,
                          "at": t.at.isoformat(), "route": t.route, "topic": t.topic, "score": t.score,
                          "reason": t.reason} for t in _spread(items, examples)],
        })
    groups.sort(key=lambda g: (-g["count"], g["key"]))
    return groups


def _spread(items: list[MissedTurn], n: int) -> list[MissedTurn]:
    """Examples from every language of the group first, newest first within each."""
    by_lang: dict[str, list[MissedTurn]] = {}
    for t in items:
        by_lang.setdefault(t.language, []).append(t)
    out: list[MissedTurn] = []
    while len(out) < min(n, len(items)):
        for lang in sorted(by_lang):
            if by_lang[lang] and len(out) < n:
                out.append(by_lang[lang].pop(0))
    return out


async def turn_texts(store: Any, turn_ids: Sequence[int]) -> list[tuple[int, str, str]]:
    """(turn id, text, language) of caller turns, for routing a group again."""
    if not turn_ids:
        return []
    async with store.sessions() as s:
        rows = await s.execute(select(Turn.id, Turn.text, Turn.language)
                               .where(Turn.id.in_(list(turn_ids)), Turn.speaker == "caller"))
        return [(r[0], r[1], r[2]) for r in rows.all()]
