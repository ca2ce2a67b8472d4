"""The versioned knowledge base on the store's engine: seed, drafts, publish, history, roll-back, import.

Every write that can change what callers hear (publish, roll-back, import) first builds the whole resulting knowledge
base and validates it with routing.knowledge.parse_knowledge, the loader of the YAML files: a base that the files
could not hold is never published. A publish is one transaction that marks the drafts published and bumps the
version, so another process polling the version sees all of it or none of it.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any, Iterable

import yaml
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from routing.knowledge import KnowledgeBase, KnowledgeEntry, KnowledgeError, entry_document, parse_knowledge
from server.knowledge.models import KnowledgeRevision, KnowledgeState
from server.store.models import as_utc, utcnow


class KnowledgeConflict(ValueError):
    """The request does not fit the stored state (no such entry or revision, nothing to publish)."""


def stored_document(entry: KnowledgeEntry) -> dict[str, Any]:
    """An entry's document as JSON can hold it (dates as ISO text; the loader reads both)."""
    return json.loads(json.dumps(entry_document(entry), default=lambda v: v.isoformat(), ensure_ascii=False))


def knowledge_from_documents(rows: Iterable[tuple[str, dict[str, Any]]]) -> KnowledgeBase:
    """(topic, document) pairs, in knowledge-base order, validated as topic files: the loader's one code path."""
    files: list[tuple[str, str]] = []
    current: str | None = None
    docs: list[dict[str, Any]] = []
    for topic, doc in list(rows) + [(None, None)]:  # type: ignore[list-item]
        if topic != current and current is not None:
            files.append((f"{current}.yaml", yaml.safe_dump({"topic": current, "entries": docs}, allow_unicode=True,
                                                           sort_keys=False)))
            docs = []
        current = topic
        if doc is not None:
            docs.append(doc)
    return parse_knowledge(files)


@dataclass(frozen=True)
class Row:
    """One revision as the editor shows it."""

    entry_id: str
    revision: int
    topic: str
    position: int
    document: dict[str, Any]
    deleted: bool
    action: str
    author: str
    created_at: dt.datetime
    published_at: dt.datetime | None
    published_by: str | None
    kb_version: int | None

    @classmethod
    def of(cls, r: KnowledgeRevision) -> "Row":
        return cls(r.entry_id, r.revision, r.topic, r.position, r.document, r.deleted, r.action, r.author,
                   as_utc(r.created_at), as_utc(r.published_at) if r.published_at else None, r.published_by,
                   r.kb_version)


def _latest(rows: Iterable[KnowledgeRevision], *, drafts: bool) -> list[KnowledgeRevision]:
    """Per entry: its draft (when `drafts`) or else its newest published revision; deleted entries left out; in
    knowledge-base order (topic, position)."""
    best: dict[str, KnowledgeRevision] = {}
    for r in rows:
        if r.published_at is None and not drafts:
            continue
        cur = best.get(r.entry_id)
        if cur is None or (r.published_at is None) > (cur.published_at is None) or (
                (r.published_at is None) == (cur.published_at is None) and r.revision > cur.revision):
            best[r.entry_id] = r
    live = [r for r in best.values() if not r.deleted]
    return sorted(live, key=lambda r: (r.topic, r.position, r.entry_id))


class KnowledgeStore:
    def __init__(self, store: Any, *, now: Any = utcnow) -> None:
        self.store = store  # server.store.Store (or anything with .sessions)
        self.now = now

    # ------------------------------------------------------------------ reads

    async def version(self) -> int:
        async with self.store.sessions() as s:
            state = await s.get(KnowledgeState, 1)
            return state.version if state else 0

    async def _all(self, s: Any) -> list[KnowledgeRevision]:
        return list((await s.execute(select(KnowledgeRevision))).scalars())

    async def entries(self, *, drafts: bool = False) -> list[Row]:
        """The published knowledge base (or the one a publish would make, with `drafts`), in order."""
        async with self.store.sessions() as s:
            return [Row.of(r) for r in _latest(await self._all(s), drafts=drafts)]

    async def drafts(self) -> list[Row]:
        async with self.store.sessions() as s:
            rows = await s.execute(select(KnowledgeRevision).where(KnowledgeRevision.published_at.is_(None)))
            return [Row.of(r) for r in rows.scalars()]

    async def knowledge(self, *, drafts: bool = False) -> KnowledgeBase:
        return knowledge_from_documents((r.topic, r.document) for r in await self.entries(drafts=drafts))

    async def history(self, entry_id: str) -> list[Row]:
        async with self.store.sessions() as s:
            rows = await s.execute(select(KnowledgeRevision).where(KnowledgeRevision.entry_id == entry_id)
                                   .order_by(KnowledgeRevision.revision.desc()))
            return [Row.of(r) for r in rows.scalars()]

    async def is_empty(self) -> bool:
        async with self.store.sessions() as s:
            return (await s.execute(select(func.count()).select_from(KnowledgeRevision))).scalar_one() == 0

    # ------------------------------------------------------------------ writes

    async def seed(self, kb: KnowledgeBase, *, author: str = "seed") -> bool:
        """A fresh install: the YAML knowledge base becomes revision 1 of every entry, published as version 1.
        Does nothing (False) when the store already holds a knowledge base."""
        now = self.now()
        try:
            async with self.store.sessions.begin() as s:
                if (await s.execute(select(func.count()).select_from(KnowledgeRevision))).scalar_one():
                    return False
                for position, entry in enumerate(kb.entries):
                    s.add(KnowledgeRevision(entry_id=entry.id, revision=1, topic=entry.topic, position=position,
                                            document=stored_document(entry), deleted=False, action="seed",
                                            author=author, created_at=now, published_at=now, published_by=author,
                                            kb_version=1))
                await self._bump(s, author, now, at_least=1)
        except IntegrityError:
            # Processes sharing one database start together: both saw it empty and both seeded; the other's seed
            # committed first, so this one's rows (revision 1 of the same entries) collide and roll back whole.
            if await self.is_empty():
                raise
            return False
        return True

    async def save_draft(self, entry: KnowledgeEntry, *, author: str, create: bool = False) -> Row:
        """Save `entry` (validated: a KnowledgeEntry comes only from the loader) as its draft, replacing an earlier
        draft. The knowledge base with every draft must still be valid. `create`: a new entry; its id must be new."""
        now = self.now()
        async with self.store.sessions.begin() as s:
            rows = await self._all(s)
            mine = [r for r in rows if r.entry_id == entry.id]
            if create and mine:
                raise KnowledgeConflict(f"an entry {entry.id!r} exists already (topic {mine[0].topic})")
            others = [r for r in _latest(rows, drafts=True) if r.entry_id != entry.id]
            position = max((r.position for r in mine), default=None)
            if position is None:
                position = 1 + max((r.position for r in rows if r.topic == entry.topic), default=-1)
            candidate = others + [KnowledgeRevision(entry_id=entry.id, topic=entry.topic, position=position,
                                                    document=stored_document(entry), deleted=False)]
            knowledge_from_documents((r.topic, r.document) for r in sorted(candidate, key=lambda r: (r.topic, r.position, r.entry_id)))
            await s.execute(delete(KnowledgeRevision).where(KnowledgeRevision.entry_id == entry.id,
                                                            KnowledgeRevision.published_at.is_(None)))
            row = KnowledgeRevision(entry_id=entry.id, revision=1 + max((r.revision for r in mine), default=0),
                                    topic=entry.topic, position=position, document=stored_document(entry),
                                    deleted=False, action="edit", author=author, created_at=now)
            s.add(row)
        return Row.of(row)

    async def discard_draft(self, entry_id: str) -> bool:
        async with self.store.sessions.begin() as s:
            result = await s.execute(delete(KnowledgeRevision).where(KnowledgeRevision.entry_id == entry_id,
                                                                     KnowledgeRevision.published_at.is_(None)))
            return (result.rowcount or 0) > 0

    async def publish(self, *, author: str) -> tuple[int, list[str]]:
        """Every draft goes live in one transaction: (new version, changed entry ids); with no drafts, nothing
        changes: (current version, [])."""
        now = self.now()
        async with self.store.sessions.begin() as s:
            rows = await self._all(s)
            drafts = [r for r in rows if r.published_at is None]
            if not drafts:
                state = await s.get(KnowledgeState, 1)
                return (state.version if state else 0), []  # nothing to publish: nothing changes
            knowledge_from_documents((r.topic, r.document) for r in _latest(rows, drafts=True))
            version = await self._bump(s, author, now)
            for r in drafts:
                r.published_at, r.published_by, r.kb_version = now, author, version
        return version, sorted(r.entry_id for r in drafts)

    async def rollback(self, entry_id: str, revision: int, *, author: str) -> tuple[int, Row]:
        """The entry's content at `revision` becomes its newest revision, published at once (its draft is dropped)."""
        now = self.now()
        async with self.store.sessions.begin() as s:
            rows = await self._all(s)
            mine = [r for r in rows if r.entry_id == entry_id]
            target = next((r for r in mine if r.revision == revision and r.published_at is not None), None)
            if target is None:
                raise KnowledgeConflict(f"entry {entry_id!r} has no published revision {revision}")
            rest = [r for r in rows if not (r.entry_id == entry_id and r.published_at is None)]
            copy = KnowledgeRevision(entry_id=entry_id, revision=1 + max(r.revision for r in mine), topic=target.topic,
                                     position=target.position, document=target.document, deleted=target.deleted,
                                     action="rollback", author=author, created_at=now, published_at=now,
                                     published_by=author)
            knowledge_from_documents((r.topic, r.document) for r in _latest(rest + [copy], drafts=False))
            await s.execute(delete(KnowledgeRevision).where(KnowledgeRevision.entry_id == entry_id,
                                                            KnowledgeRevision.published_at.is_(None)))
            copy.kb_version = await self._bump(s, author, now)
            s.add(copy)
        return copy.kb_version, Row.of(copy)

    async def import_knowledge(self, kb: KnowledgeBase, *, author: str, publish: bool = True) -> tuple[int | None, list[str]]:
        """Make the stored base equal to `kb` (already validated): a new revision for every entry that differs,
        a deleted revision for every entry `kb` lacks, positions in `kb`'s order. Published at once (one version)
        unless `publish` is False (then they are drafts). Returns (version or None, changed entry ids)."""
        now = self.now()
        async with self.store.sessions.begin() as s:
            rows = await self._all(s)
            await s.execute(delete(KnowledgeRevision).where(KnowledgeRevision.published_at.is_(None)))
            rows = [r for r in rows if r.published_at is not None]
            current = {r.entry_id: r for r in _latest(rows, drafts=False)}
            top = {}
            for r in rows:
                top[r.entry_id] = max(top.get(r.entry_id, 0), r.revision)
            changed: list[KnowledgeRevision] = []
            wanted = set()
            for position, entry in enumerate(kb.entries):
                wanted.add(entry.id)
                doc = stored_document(entry)
                cur = current.get(entry.id)
                if cur is not None and cur.document == doc and cur.topic == entry.topic and cur.position == position:
                    continue
                changed.append(KnowledgeRevision(entry_id=entry.id, revision=top.get(entry.id, 0) + 1, topic=entry.topic,
                                                 position=position, document=doc, deleted=False, action="import",
                                                 author=author, created_at=now))
            for entry_id, cur in current.items():
                if entry_id not in wanted:
                    changed.append(KnowledgeRevision(entry_id=entry_id, revision=top[entry_id] + 1, topic=cur.topic,
                                                     position=cur.position, document=cur.document, deleted=True,
                                                     action="delete", author=author, created_at=now))
            version = None
            if changed and publish:
                version = await self._bump(s, author, now)
                for r in changed:
                    r.published_at, r.published_by, r.kb_version = now, author, version
            s.add_all(changed)
        return version, sorted(r.entry_id for r in changed)

    async def _bump(self, s: Any, author: str, now: dt.datetime, *, at_least: int = 0) -> int:
        state = await s.get(KnowledgeState, 1)
        if state is None:
            s.add(KnowledgeState(id=1, version=max(1, at_least), published_at=now, published_by=author))
            return max(1, at_least)
        await s.execute(update(KnowledgeState).where(KnowledgeState.id == 1)
                        .values(version=KnowledgeState.version + 1, published_at=now, published_by=author))
        return (await s.execute(select(KnowledgeState.version).where(KnowledgeState.id == 1))).scalar_one()


__all__ = ["KnowledgeConflict", "KnowledgeError", "KnowledgeStore", "Row", "knowledge_from_documents", "stored_document"]
