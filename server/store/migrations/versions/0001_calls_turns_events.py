"""calls, turns, call_events

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

STATES = ("active", "queued", "completed", "caller_hangup", "dropped", "error", "transferred_to_agent", "no_input")


def upgrade() -> None:
    state_list = ", ".join(f"'{s}'" for s in STATES)
    op.create_table(
        "calls",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("protocol", sa.String(16), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("reason", sa.String(64)),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
        sa.Column("language", sa.String(8)),
        sa.Column("language_hint", sa.String(8)),
        sa.Column("caller_id", sa.String(64)),
        sa.Column("carrier_call_id", sa.String(64)),
        sa.Column("stream_id", sa.String(64)),
        sa.Column("queued_at", sa.DateTime(timezone=True)),
        sa.Column("queue_language", sa.String(16)),
        sa.CheckConstraint(f"state IN ({state_list})", name="ck_calls_state"),
    )
    op.create_index("ix_calls_state", "calls", ["state"])
    op.create_table(
        "turns",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("call_id", sa.String(32), sa.ForeignKey("calls.id", ondelete="CASCADE"), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("speaker", sa.String(8), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("language", sa.String(8), nullable=False),
        sa.Column("language_code", sa.String(16), nullable=False),
        sa.Column("language_probability", sa.Float),
        sa.Column("language_source", sa.String(16)),
        sa.Column("mixed", sa.Boolean, nullable=False),
        sa.Column("route", sa.String(16)),
        sa.Column("topic", sa.String(48)),
        sa.Column("entry_id", sa.String(96)),
        sa.Column("score", sa.Float),
        sa.Column("decision_reason", sa.String(64)),
        sa.Column("audio_start_s", sa.Float),
        sa.Column("audio_end_s", sa.Float),
        sa.Column("endpoint_s", sa.Float),
        sa.Column("recognition_s", sa.Float),
        sa.Column("routing_s", sa.Float),
        sa.Column("synthesis_s", sa.Float),
        sa.Column("response_s", sa.Float),
        sa.Column("played_s", sa.Float),
        sa.Column("interrupted", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("call_id", "seq", name="uq_turns_call_seq"),
        sa.CheckConstraint("speaker IN ('caller', 'bot')", name="ck_turns_speaker"),
    )
    op.create_index("ix_turns_call_id", "turns", ["call_id"])
    op.create_table(
        "call_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("call_id", sa.String(32), sa.ForeignKey("calls.id", ondelete="CASCADE"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("data", sa.JSON),
    )
    op.create_index("ix_call_events_call_at", "call_events", ["call_id", "id"])


def downgrade() -> None:
    op.drop_table("call_events")
    op.drop_table("turns")
    op.drop_table("calls")
