"""The tables. Every stored turn has a language (with its probability and source); every call ends in exactly one
final state."""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ACTIVE = "active"
# The final states a call can end in. `state` says what happened; `reason` says exactly why (hangup, stop,
# connection_closed, slow_consumer, no_input, unsupported_sample_rate, server_shutdown, ...).
FINAL_STATES = ("completed", "caller_hangup", "dropped", "error", "transferred_to_agent", "no_input")
STATES = (ACTIVE, "queued", *FINAL_STATES)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def as_utc(value: dt.datetime) -> dt.datetime:
    """A stored time as an aware UTC datetime: SQLite gives timestamps back naive (PostgreSQL keeps the zone)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.timezone.utc)


class Base(DeclarativeBase):
    pass


_STATE_LIST = ", ".join(f"'{s}'" for s in STATES)


class Call(Base):
    __tablename__ = "calls"
    __table_args__ = (
        CheckConstraint(f"state IN ({_STATE_LIST})", name="ck_calls_state"),
        Index("ix_calls_process_open", "process_id", "ended_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    protocol: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(32), default=ACTIVE, index=True)
    reason: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    language: Mapped[str | None] = mapped_column(String(8))  # call language so far: en | zh | other
    language_hint: Mapped[str | None] = mapped_column(String(8))
    caller_id: Mapped[str | None] = mapped_column(String(64))  # caller data
    carrier_call_id: Mapped[str | None] = mapped_column(String(64))
    stream_id: Mapped[str | None] = mapped_column(String(64))
    queued_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    queue_language: Mapped[str | None] = mapped_column(String(16))
    # The process that holds the caller's connection (server/cluster): when it dies, the others close its calls.
    process_id: Mapped[str | None] = mapped_column(String(64))


class Turn(Base):
    __tablename__ = "turns"
    __table_args__ = (
        UniqueConstraint("call_id", "seq", name="uq_turns_call_seq"),
        CheckConstraint("speaker IN ('caller', 'bot')", name="ck_turns_speaker"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer)  # order within the call, both speakers
    speaker: Mapped[str] = mapped_column(String(8))
    kind: Mapped[str] = mapped_column(String(16))  # utterance | answer | prompt
    text: Mapped[str] = mapped_column(Text)
    # The text with caller data masked (server/people/masking.py), set on insert: supervisors' searches match this
    # and never `text`, so a masked number cannot be recovered digit by digit through searches.
    text_masked: Mapped[str | None] = mapped_column(Text)
    language: Mapped[str] = mapped_column(String(8))  # en | zh | other | unknown
    language_code: Mapped[str] = mapped_column(String(16), default="")
    language_probability: Mapped[float | None] = mapped_column(Float)
    language_source: Mapped[str | None] = mapped_column(String(16))
    mixed: Mapped[bool] = mapped_column(Boolean, default=False)
    route: Mapped[str | None] = mapped_column(String(16))
    topic: Mapped[str | None] = mapped_column(String(48))
    entry_id: Mapped[str | None] = mapped_column(String(96))
    score: Mapped[float | None] = mapped_column(Float)
    decision_reason: Mapped[str | None] = mapped_column(String(64))
    audio_start_s: Mapped[float | None] = mapped_column(Float)  # caller turns: position in the call's audio
    audio_end_s: Mapped[float | None] = mapped_column(Float)
    # Timings in seconds (None where a stage did not apply).
    endpoint_s: Mapped[float | None] = mapped_column(Float)  # caller stopped speaking -> utterance closed
    recognition_s: Mapped[float | None] = mapped_column(Float)
    routing_s: Mapped[float | None] = mapped_column(Float)
    synthesis_s: Mapped[float | None] = mapped_column(Float)  # until the first audio chunk
    response_s: Mapped[float | None] = mapped_column(Float)  # end of caller speech -> first answer audio byte sent
    played_s: Mapped[float | None] = mapped_column(Float)  # bot turns: audio actually played
    interrupted: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CallEvent(Base):
    __tablename__ = "call_events"
    __table_args__ = (Index("ix_call_events_call_at", "call_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"))
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    kind: Mapped[str] = mapped_column(String(32))  # started, barge_in, dtmf, queued, error, ended ...
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class ApplicationRow(Base):
    """A work-permit application the hotline can read back (routing.progress.Application), in the main store so that
    every process sees the same ones. The second factor is kept as little as it needs to be: the date of birth and
    only the last four characters of the passport."""

    __tablename__ = "applications"

    number: Mapped[str] = mapped_column(String(24), primary_key=True)  # letters upper-case, then digits
    digits: Mapped[str] = mapped_column(String(24), index=True)  # a number said without its letters
    status_en: Mapped[str] = mapped_column(Text)
    status_zh: Mapped[str] = mapped_column(Text)
    updated: Mapped[str] = mapped_column(String(10))  # ISO date
    date_of_birth: Mapped[str | None] = mapped_column(String(10))  # ISO date
    passport_last4: Mapped[str | None] = mapped_column(String(4))
    imported_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class RecordingRow(Base):
    """A call's recording (a WAV file, 16 kHz mono) when recordings are kept in the database: every process can
    serve it. No foreign key: the recording is saved as the call ends, possibly before its row is written."""

    __tablename__ = "recordings"

    call_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    wav: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
