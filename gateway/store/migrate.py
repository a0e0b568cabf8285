"""Running the Alembic revisions in `migrations/` from code."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, text

import migrations


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    return config


# A PostgreSQL advisory lock's key: replicas starting together migrate one at a time (the
# others then find the schema current).
MIGRATION_LOCK = 0x6761746577617931


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database of `engine` to `revision` (creating tables on an empty one)."""
    config = alembic_config()
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":  # released at the transaction's end
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
