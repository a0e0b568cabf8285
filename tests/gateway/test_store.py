from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from gateway.store import (
    Base,
    NewEntry,
    NewEvent,
    Partition,
    Store,
    decode_vectors,
    open_engine,
    open_store,
    upgrade,
)
from tests.support.stores import store_url

PARTITION = Partition(tenant="t1", namespace="", category="default")


def _entry(vector: np.ndarray, text_: str = "What is HNSW?", **overrides: object) -> NewEntry:
    fields: dict[str, object] = {
        "partition": PARTITION,
        "model_family": "gpt-4o-mini",
        "text": text_,
        "context_hash": "c" * 64,
        "request_json": json.dumps({"messages": [{"role": "user", "content": text_}]}),
        "response_json": json.dumps({"choices": [{"message": {"content": "A graph index."}}]}),
        "embedding": vector,
        "embedding_model": "m1",
        "created_at": time.time(),
        "expires_at": time.time() + 3600,
        "prompt_tokens": 12,
        "completion_tokens": 5,
        "cost_usd": 0.00002,
        "upstream_model": "openai/gpt-4o-mini",
    }
    fields.update(overrides)
    return NewEntry(**fields)  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return open_store(store_url(tmp_path / "gateway.db"))


def test_upgrade_head_on_empty_database_matches_the_models(tmp_path: Path) -> None:
    engine = open_engine(store_url(tmp_path / "fresh.db", migrated=False))
    upgrade(engine)
    with engine.connect() as connection:
        assert set(inspect(connection).get_table_names()) >= {
            "cache_entries",
            "request_events",
            "alembic_version",
        }
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "render_as_batch": True}
        )
        assert compare_metadata(context, Base.metadata) == []


def test_a_model_change_without_a_revision_is_detected(tmp_path: Path) -> None:
    from sqlalchemy import Column, Integer, MetaData, Table

    engine = open_engine(store_url(tmp_path / "fresh.db", migrated=False))
    upgrade(engine)
    changed = MetaData()
    for table in Base.metadata.tables.values():
        table.to_metadata(changed)
    Table("new_table", changed, Column("id", Integer, primary_key=True))
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), changed)
    assert any(op[0] == "add_table" and op[1].name == "new_table" for op in diff)


def test_upgrade_is_idempotent(tmp_path: Path) -> None:
    url = store_url(tmp_path / "again.db", migrated=False)
    open_store(url).engine.dispose()
    store = open_store(url)
    assert store.count_entries() == 0


def test_sqlite_runs_in_wal_mode_with_full_sync(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'wal.db'}")  # SQLite's own, on either run
    with store.engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL


def test_entry_round_trip(store: Store) -> None:
    vector = np.random.default_rng(0).standard_normal(384).astype(np.float32)
    entry_id = store.add_entry(_entry(vector))
    row = store.get_entry(entry_id)
    assert row is not None
    assert (row.tenant, row.namespace, row.category) == ("t1", "", "default")
    assert row.embedding_dim == 384 and row.embedding_model == "m1"
    assert np.array_equal(decode_vectors([row.embedding], 384)[0], vector)
    assert row.hit_count == 0 and row.last_hit_at is None
    assert (row.prompt_tokens, row.completion_tokens) == (12, 5)
    assert json.loads(row.response_json)["choices"][0]["message"]["content"] == "A graph index."


def test_partitions_keep_entries_apart(store: Store) -> None:
    vector = np.ones(384, dtype=np.float32)
    a = store.add_entry(_entry(vector))
    other = Partition(tenant="t2", namespace="", category="default")
    b = store.add_entry(_entry(vector, partition=other))
    assert store.entry_ids(PARTITION) == {a}
    assert store.entry_ids(other) == {b}
    assert set(store.partitions()) == {PARTITION, other}


def test_embeddings_are_read_in_chunks_and_by_id(store: Store) -> None:
    ids = [store.add_entry(_entry(np.full(384, i, np.float32), f"q{i}")) for i in range(10)]
    chunks = list(store.embeddings(PARTITION, chunk=4))
    assert [len(c[0]) for c in chunks] == [4, 4, 2]
    assert [i for c in chunks for i in c[0]] == ids
    picked = list(store.embeddings(PARTITION, ids=[ids[7], ids[2]]))
    assert picked[0][0] == [ids[2], ids[7]] and picked[0][1] == ["q2", "q7"]


def test_delete_and_events(store: Store) -> None:
    entry_id = store.add_entry(_entry(np.ones(384, np.float32)))
    event_id = store.record_event(
        NewEvent(
            ts=time.time(),
            tenant="t1",
            category="default",
            outcome="hit_semantic",
            latency_ms=3.2,
            similarity=0.93,
            entry_id=entry_id,
        )
    )
    assert event_id > 0
    assert store.delete_entries([entry_id, 12345]) == 1
    assert store.get_entry(entry_id) is None
    assert store.delete_entries([]) == 0


def test_committed_entries_survive_a_new_connection(tmp_path: Path) -> None:
    url = store_url(tmp_path / "durable.db")
    first = open_store(url)
    entry_id = first.add_entry(_entry(np.ones(384, np.float32)))
    # No dispose, no checkpoint: a second process opening the file sees the commit.
    second = open_store(url)
    assert second.get_entry(entry_id) is not None
