"""masked search text: turns.text_masked and agent_turns.text_masked, filled for the rows already stored

Supervisors' transcript search matches the masked text only (server/people/history.py).

Revision ID: 0005
Revises: 0004
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from server.people.masking import mask_text

    for table in ("turns", "agent_turns"):
        op.add_column(table, sa.Column("text_masked", sa.Text, nullable=True))
    bind = op.get_bind()
    for table in ("turns", "agent_turns"):
        rows = bind.execute(sa.text(f"SELECT id, text FROM {table}")).fetchall()
        for row_id, text in rows:
            bind.execute(sa.text(f"UPDATE {table} SET text_masked = :m WHERE id = :i"), {"m": mask_text(text), "i": row_id})


def downgrade() -> None:
    for table in ("turns", "agent_turns"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("text_masked")
