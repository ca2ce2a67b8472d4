"""knowledge: knowledge_revisions (versioned entries of the knowledge editor), knowledge_state (published version)

Revision ID: 0003
Revises: 0002
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "knowledge_revisions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("entry_id", sa.String(96), nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("topic", sa.String(48), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("document", sa.JSON, nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("author", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True)),
        sa.Column("published_by", sa.String(64)),
        sa.Column("kb_version", sa.Integer),
        sa.UniqueConstraint("entry_id", "revision", name="uq_knowledge_revisions_entry_revision"),
    )
    op.create_index("ix_knowledge_revisions_entry_id", "knowledge_revisions", ["entry_id"])
    op.create_table(
        "knowledge_state",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True)),
        sa.Column("published_by", sa.String(64)),
    )


def downgrade() -> None:
    op.drop_table("knowledge_state")
    op.drop_index("ix_knowledge_revisions_entry_id", "knowledge_revisions")
    op.drop_table("knowledge_revisions")
