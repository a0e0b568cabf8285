"""categories: quota index, classification step and effective threshold on events

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 05:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cache_entries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_cache_entries_quota", ["tenant", "category", "created_at"], unique=False
        )
    with op.batch_alter_table("request_events", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("category_step", sa.String(length=16), server_default="", nullable=False)
        )
        batch_op.add_column(sa.Column("threshold", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("request_events", schema=None) as batch_op:
        batch_op.drop_column("threshold")
        batch_op.drop_column("category_step")
    with op.batch_alter_table("cache_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_cache_entries_quota")
