"""The change log read by `ChangeReader`: from when the reader starts, each change once,
and a change that commits late with a lower id still read (PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.store import open_store
from gateway.store.changes import ChangeReader, log_change
from gateway.store.queries import Store
from tests.support.stores import on_postgres, store_url


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(store_url(tmp_path / "gateway.db"))
    yield opened
    opened.engine.dispose()


def _log(store: Store, detail: str) -> None:
    with store.session() as session, session.begin():
        log_change(session, "policy", detail)


def test_a_reader_reads_what_is_logged_after_it_starts_each_change_once(store: Store) -> None:
    _log(store, "before")
    reader = ChangeReader(store)
    reader.start()
    assert reader.read() == []  # logged before it started: not replayed
    _log(store, "code")
    _log(store, "math")
    assert [c.detail for c in reader.read()] == ["code", "math"]
    assert reader.read() == []


@pytest.mark.skipif(not on_postgres(), reason="SQLite runs one write transaction at a time")
def test_a_change_committed_late_with_a_lower_id_is_read(store: Store) -> None:
    reader = ChangeReader(store)
    reader.start()
    with store.session() as slow, slow.begin():
        log_change(slow, "policy", "slow")
        slow.flush()  # its id is taken now; it commits after the next one
        _log(store, "fast")
        assert [c.detail for c in reader.read()] == ["fast"]
    assert [c.detail for c in reader.read()] == ["slow"]
    assert reader.read() == []
