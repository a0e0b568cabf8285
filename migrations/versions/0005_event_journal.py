"""event journal: segments whose events are committed

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 13:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "journal_segments",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("written_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_journal_segments")),
    )


def downgrade() -> None:
    op.drop_table("journal_segments")
