"""64-bit ids on PostgreSQL (SQLite's INTEGER is 64-bit already)

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-28 01:10:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    ("cache_entries", "id"),
    ("request_events", "id"),
    ("request_events", "entry_id"),
    ("feedback", "id"),
    ("feedback", "entry_id"),
    ("changes", "id"),
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column in COLUMNS:
        op.alter_column(table, column, type_=sa.BigInteger(), existing_type=sa.Integer())


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column in COLUMNS:
        op.alter_column(table, column, type_=sa.Integer(), existing_type=sa.BigInteger())
