"""admin: demotion, feedback, policy overrides, response ids and upstream time on events

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 06:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cache_entries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("demoted_at", sa.Float(), nullable=True))
    with op.batch_alter_table("request_events", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("requested_model", sa.String(length=128), server_default="", nullable=False)
        )
        batch_op.add_column(sa.Column("upstream_ms", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("response_id", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("prompt", sa.Text(), nullable=True))
        batch_op.create_index("ix_request_events_response_id", ["response_id"], unique=False)
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("entry_id", sa.Integer(), nullable=False),
        sa.Column("response_id", sa.String(length=128), nullable=True),
        sa.Column("correct", sa.Boolean(), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=False),
        sa.Column("similarity", sa.Float(), nullable=True),
        sa.Column("prompt", sa.Text(), nullable=True),
        sa.Column("entry_text", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("note", sa.Text(), server_default="", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback")),
    )
    with op.batch_alter_table("feedback", schema=None) as batch_op:
        batch_op.create_index("ix_feedback_ts", ["ts"], unique=False)
    op.create_table(
        "policy_overrides",
        sa.Column("category", sa.String(length=64), nullable=False),
        sa.Column("policy_json", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("category", name=op.f("pk_policy_overrides")),
    )


def downgrade() -> None:
    op.drop_table("policy_overrides")
    with op.batch_alter_table("feedback", schema=None) as batch_op:
        batch_op.drop_index("ix_feedback_ts")
    op.drop_table("feedback")
    with op.batch_alter_table("request_events", schema=None) as batch_op:
        batch_op.drop_index("ix_request_events_response_id")
        batch_op.drop_column("prompt")
        batch_op.drop_column("response_id")
        batch_op.drop_column("upstream_ms")
        batch_op.drop_column("requested_model")
    with op.batch_alter_table("cache_entries", schema=None) as batch_op:
        batch_op.drop_column("demoted_at")
