"""scale-out: applications in the main store (they were in a SQLite file of their own); calls.process_id (which
process holds the caller, so that the others can close its calls when it dies); recordings in the database (one
WAV per call), so that a supervisor on any process can play any call

Revision ID: 0004
Revises: 0003
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "applications",
        sa.Column("number", sa.String(24), primary_key=True),
        sa.Column("digits", sa.String(24), nullable=False),
        sa.Column("status_en", sa.Text, nullable=False),
        sa.Column("status_zh", sa.Text, nullable=False),
        sa.Column("updated", sa.String(10), nullable=False),
        sa.Column("date_of_birth", sa.String(10)),
        sa.Column("passport_last4", sa.String(4)),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_applications_digits", "applications", ["digits"])
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("process_id", sa.String(64)))
    op.create_index("ix_calls_process_open", "calls", ["process_id", "ended_at"])
    op.create_table(
        "recordings",
        sa.Column("call_id", sa.String(32), primary_key=True),
        sa.Column("wav", sa.LargeBinary, nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("recordings")
    op.drop_index("ix_calls_process_open", table_name="calls")
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("process_id")
    op.drop_index("ix_applications_digits", table_name="applications")
    op.drop_table("applications")
