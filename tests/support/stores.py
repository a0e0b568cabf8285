"""The store a test runs on: a SQLite file by default; with `GATEWAY_TEST_POSTGRES` set (a
server URL such as `postgresql+psycopg://postgres@127.0.0.1:55432`), a fresh PostgreSQL
database per path instead, so that the whole suite runs against either store."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

POSTGRES = os.environ.get("GATEWAY_TEST_POSTGRES", "")
_created: set[str] = set()


def on_postgres() -> bool:
    return bool(POSTGRES)


def store_url(path: Path, *, migrated: bool = True) -> str:
    """The store URL for a test's database `path`: the SQLite file, or a PostgreSQL
    database made for it (the same one for the same path). A PostgreSQL database is copied
    from a template the migrations already ran on (`migrated`), else made empty."""
    if not POSTGRES:
        return f"sqlite:///{path}"
    name = "t_" + hashlib.sha256(str(path).encode()).hexdigest()[:24]
    if name not in _created:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        template = f' TEMPLATE "{_template()}"' if migrated else ""
        _admin(f'CREATE DATABASE "{name}"{template}')
        _created.add(name)
    return f"{POSTGRES.rstrip('/')}/{name}"


def _template() -> str:
    """A database at the latest schema, made once per session, to copy."""
    name = f"t_template_{os.getpid()}"
    if name not in _created:
        from gateway.store import open_store

        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        _admin(f'CREATE DATABASE "{name}"')
        _created.add(name)
        open_store(f"{POSTGRES.rstrip('/')}/{name}").engine.dispose()
    return name


def drop_created() -> None:
    """Drops every database this process made (at the end of the session)."""
    for name in sorted(_created):
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _created.clear()


def admin_sql(statement: str) -> None:
    """Runs one statement on the server's `postgres` database (autocommit)."""
    _admin(statement)


def _admin(statement: str) -> None:
    import psycopg

    url = POSTGRES.replace("postgresql+psycopg://", "postgresql://", 1).rstrip("/")
    with psycopg.connect(f"{url}/postgres", autocommit=True) as connection:
        connection.execute(statement)  # type: ignore[arg-type]
