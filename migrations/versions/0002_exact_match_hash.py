"""exact match hash

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 03:45:53.026858
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cache_entries", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("request_hash", sa.String(length=64), server_default="", nullable=False)
        )
        batch_op.create_index(
            "ix_cache_entries_exact", ["tenant", "namespace", "request_hash"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("cache_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_cache_entries_exact")
        batch_op.drop_column("request_hash")
