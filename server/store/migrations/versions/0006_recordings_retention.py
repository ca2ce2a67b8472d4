"""recordings.created_at indexed: retention deletes the old recordings kept in the database every hour
(server/people/retention.py) without reading every row's audio to find their dates

Revision ID: 0006
Revises: 0005
"""
from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_recordings_created_at", "recordings", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_recordings_created_at", table_name="recordings")
