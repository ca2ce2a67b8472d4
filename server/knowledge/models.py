"""Tables of the knowledge editor. Every saved change is a revision; nothing is updated in place except a draft.

- `knowledge_revisions`: one row per revision of one entry. `published_at` None = the entry's draft (at most one per
  entry, replaced by the next save); the published content of an entry is its published revision with the highest
  `revision`; `deleted` revisions remove the entry. `document` is the entry as written in a topic file
  (routing.knowledge.entry_document, dates as ISO text), so the store and the YAML files share one validation.
- `knowledge_state`: one row; `version` goes up with every publish or roll-back. Every process polls it and reloads
  its router when it changed (several processes sharing one database see each other's publishes).
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from server.store.models import Base, utcnow


class KnowledgeRevision(Base):
    __tablename__ = "knowledge_revisions"
    __table_args__ = (UniqueConstraint("entry_id", "revision", name="uq_knowledge_revisions_entry_revision"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    entry_id: Mapped[str] = mapped_column(String(96), index=True)
    revision: Mapped[int] = mapped_column(Integer)
    topic: Mapped[str] = mapped_column(String(48))
    position: Mapped[int] = mapped_column(Integer)  # order within the knowledge base (retrieval breaks ties by it)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    action: Mapped[str] = mapped_column(String(16))  # seed | edit | import | rollback | delete
    author: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    published_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    published_by: Mapped[str | None] = mapped_column(String(64))
    kb_version: Mapped[int | None] = mapped_column(Integer)  # the knowledge_state.version it was published in


class KnowledgeState(Base):
    __tablename__ = "knowledge_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # always 1
    version: Mapped[int] = mapped_column(Integer, default=0)
    published_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    published_by: Mapped[str | None] = mapped_column(String(64))
