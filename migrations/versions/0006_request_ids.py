"""request ids and bypass reasons on events

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 14:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("request_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("bypass_reason", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("request_id", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("request_events", schema=None) as batch_op:
        batch_op.drop_column("request_id")
        batch_op.drop_column("bypass_reason")
