from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from embeddings.runtime import OnnxEmbedder
from gateway.index.hnsw import HnswIndex
from gateway.index.sync import index_file, load_or_rebuild
from gateway.store import NewEntry, Partition, Store, decode_vectors, open_store
from tests.support.embedders import Wrapped
from tests.support.stores import store_url

PARTITION = Partition(tenant="acme", namespace="", category="default")


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return open_store(store_url(tmp_path / "gateway.db"))


def _fill(
    store: Store, embedder: OnnxEmbedder, texts: list[str], partition: Partition = PARTITION
) -> list[int]:
    vectors = embedder.embed(texts)
    return [
        store.add_entry(
            NewEntry(
                partition=partition,
                model_family="m",
                text=t,
                context_hash="",
                request_json=json.dumps({"q": t}),
                response_json="{}",
                embedding=v,
                embedding_model=embedder.model_id,
                created_at=time.time(),
            )
        )
        for t, v in zip(texts, vectors, strict=True)
    ]


def test_missing_file_rebuilds_from_the_store(
    store: Store, embedder: OnnxEmbedder, prompts: list[str], tmp_path: Path
) -> None:
    ids = _fill(store, embedder, prompts[:50])
    index, report = load_or_rebuild(store, PARTITION, embedder, path=tmp_path / "x.hnsw")
    assert (report.action, report.entries, report.added) == ("rebuilt", 50, 50)
    assert "no saved index" in report.reason
    assert index.ids() == set(ids)
    assert index.search(embedder.embed([prompts[7]])[0], k=1)[0].entry_id == ids[7]


def test_saved_index_is_loaded_then_caught_up(
    store: Store, embedder: OnnxEmbedder, prompts: list[str], tmp_path: Path
) -> None:
    ids = _fill(store, embedder, prompts[:30])
    path = index_file(tmp_path, PARTITION)
    index, _ = load_or_rebuild(store, PARTITION, embedder, path=path)
    index.save(path)

    _, report = load_or_rebuild(store, PARTITION, embedder, path=path)
    assert (report.action, report.added, report.removed) == ("loaded", 0, 0)

    # Written by another replica after the save: two new entries, one deleted.
    new_ids = _fill(store, embedder, prompts[30:32])
    store.delete_entries([ids[0]])
    caught, report = load_or_rebuild(store, PARTITION, embedder, path=path)
    assert (report.action, report.added, report.removed) == ("caught_up", 2, 1)
    assert caught.ids() == (set(ids) - {ids[0]}) | set(new_ids)
    assert caught.search(embedder.embed([prompts[31]])[0], k=1)[0].entry_id == new_ids[1]


def test_index_of_another_model_is_rebuilt_and_store_reembedded(
    store: Store, embedder: OnnxEmbedder, prompts: list[str], tmp_path: Path
) -> None:
    ids = _fill(store, embedder, prompts[:20])
    path = tmp_path / "x.hnsw"
    index, _ = load_or_rebuild(store, PARTITION, embedder, path=path)
    index.save(path)

    upgraded = Wrapped(embedder, model_id="next-model")
    rebuilt, report = load_or_rebuild(store, PARTITION, upgraded, path=path)
    assert report.action == "rebuilt" and "built for" in report.reason
    assert report.reembedded == 20
    assert rebuilt.model_id == "next-model"
    row = store.get_entry(ids[3])
    assert row is not None and row.embedding_model == "next-model"
    expected = embedder.embed([prompts[3]])[0]
    assert np.allclose(decode_vectors([row.embedding], 384)[0], expected, atol=1e-5)


def test_partitions_do_not_leak_into_each_other(
    store: Store, embedder: OnnxEmbedder, prompts: list[str]
) -> None:
    other = Partition(tenant="globex", namespace="", category="default")
    _fill(store, embedder, prompts[:5])
    theirs = _fill(store, embedder, prompts[:5], partition=other)
    index, _ = load_or_rebuild(store, other, embedder, path=None)
    assert index.ids() == set(theirs)


def test_index_file_names_are_stable_and_distinct(tmp_path: Path) -> None:
    a = index_file(tmp_path, PARTITION)
    assert a == index_file(tmp_path, Partition("acme", "", "default"))
    assert a != index_file(tmp_path, Partition("acme", "ns", "default"))
    assert a.parent == tmp_path and "/" not in a.name


def test_empty_partition_gives_an_empty_index(store: Store, embedder: OnnxEmbedder) -> None:
    index, report = load_or_rebuild(store, PARTITION, embedder, path=None)
    assert isinstance(index, HnswIndex) and len(index) == 0 and report.action == "rebuilt"
