"""routing: the answering tier and example utility of entries, the route of events

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27 18:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cache_entries", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("answered_tier", sa.String(length=8), nullable=False, server_default="")
        )
        batch_op.add_column(
            sa.Column("example_good", sa.Float(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("example_bad", sa.Float(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("example_retired", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("request_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("route", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("route_reason", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("examples", sa.String(length=256), nullable=True))
        batch_op.add_column(sa.Column("routing_saved_usd", sa.Float(), nullable=True))
        batch_op.create_index("ix_request_events_entry_id", ["entry_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("request_events", schema=None) as batch_op:
        batch_op.drop_index("ix_request_events_entry_id")
        for column in ("routing_saved_usd", "examples", "route_reason", "route"):
            batch_op.drop_column(column)
    with op.batch_alter_table("cache_entries", schema=None) as batch_op:
        for column in ("example_retired", "example_bad", "example_good", "answered_tier"):
            batch_op.drop_column(column)
