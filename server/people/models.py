"""The tables of the people side: accounts, sessions, audit log, queue outcomes, agent turns, call-back tasks.

They share the call store's metadata (server.store.models.Base) so one Alembic history covers everything
(server/store/migrations/versions/0002_people.py creates them, with the audit log's append-only triggers).
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, CheckConstraint, DateTime, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from server.store.models import Base, utcnow

ROLES = ("agent", "supervisor", "admin")
QUEUE_FINALS = ("answered", "abandoned", "callback_requested", "transferred_back_to_bot", "closed")


class User(Base):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint("role IN ('agent', 'supervisor', 'admin')", name="ck_users_role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    languages: Mapped[str] = mapped_column(String(32), default="")  # "en,zh": the languages an agent takes calls in
    password_hash: Mapped[str] = mapped_column(String(256))
    dev_only: Mapped[bool] = mapped_column(Boolean, default=False)  # made with --dev: refused unless dev mode
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AuthToken(Base):
    __tablename__ = "auth_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the token; the token is never stored
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class AuditEntry(Base):
    """Append-only: the code has no update or delete path, and database triggers refuse both."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    user_name: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(48))  # read_transcript, export, listen, play_recording, ...
    call_id: Mapped[str | None] = mapped_column(String(32), index=True)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class QueueOutcome(Base):
    """The one final state of a call that went to the agent queue (routing.queue.CallOutcome) and its wrap-up."""

    __tablename__ = "queue_outcomes"
    __table_args__ = (CheckConstraint(
        "outcome IN ('answered', 'abandoned', 'callback_requested', 'transferred_back_to_bot', 'closed')",
        name="ck_queue_outcomes_outcome"),)

    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), primary_key=True)
    queue_language: Mapped[str] = mapped_column(String(16))
    topic: Mapped[str | None] = mapped_column(String(48))
    outcome: Mapped[str] = mapped_column(String(32), index=True)
    wait_s: Mapped[float] = mapped_column(Float)
    agent_name: Mapped[str | None] = mapped_column(String(64), index=True)
    disposition: Mapped[str | None] = mapped_column(String(32))
    note: Mapped[str | None] = mapped_column(Text)  # may hold caller data: masked when shown to supervisors
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AgentTurn(Base):
    """What an agent said on a call: typed replies (spoken by the synthesizer) and recognised microphone speech."""

    __tablename__ = "agent_turns"
    __table_args__ = (Index("ix_agent_turns_call", "call_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"))
    agent_name: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # typed | speech
    text: Mapped[str] = mapped_column(Text)
    text_masked: Mapped[str | None] = mapped_column(Text)  # as Turn.text_masked: what searches match
    language: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CallbackTaskRow(Base):
    __tablename__ = "callback_tasks"

    task_id: Mapped[str] = mapped_column(String(48), primary_key=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"))
    language: Mapped[str] = mapped_column(String(8))
    wait_s: Mapped[float] = mapped_column(Float)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    completed_by: Mapped[str | None] = mapped_column(String(64))
    completed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
