from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from embeddings.protocol import Vectors, embed_all
from embeddings.runtime import OnnxEmbedder
from gateway.index.hnsw import HnswIndex, IndexFileError, header_path_for
from gateway.index.similarity import cosine, cosine_matrix
from gateway.settings import IndexParams

MODEL = "test-model"


@pytest.fixture(scope="module")
def queries(embedder: OnnxEmbedder, prompts: list[str]) -> Vectors:
    # Real prompts that are not in the index.
    return embed_all(embedder, prompts[10_000:])


@pytest.fixture(scope="module")
def full_index(prompt_vectors: Vectors) -> HnswIndex:
    index = HnswIndex(384, model_id=MODEL, params=IndexParams(initial_capacity=100))
    index.add(list(range(1, len(prompt_vectors) + 1)), prompt_vectors)
    return index


def _recall_at_1(index: HnswIndex, data: Vectors, queries: Vectors) -> float:
    truth = np.argmax(cosine_matrix(queries, data), axis=1) + 1
    found = [index.search(q, k=1)[0].entry_id for q in queries]
    return float(np.mean(np.asarray(found) == truth))


def test_recall_against_brute_force(
    full_index: HnswIndex, prompt_vectors: Vectors, queries: Vectors
) -> None:
    assert len(full_index) == 10_000
    assert full_index.capacity >= 10_000  # grew from 100 by itself
    assert _recall_at_1(full_index, prompt_vectors, queries) >= 0.98


def test_recall_survives_save_and_load(
    full_index: HnswIndex, prompt_vectors: Vectors, queries: Vectors, tmp_path: Path
) -> None:
    path = tmp_path / "index.hnsw"
    full_index.save(path)
    loaded = HnswIndex.load(path, dim=384, model_id=MODEL)
    assert len(loaded) == 10_000
    assert loaded.last_entry_id == 10_000
    assert _recall_at_1(loaded, prompt_vectors, queries) >= 0.98


def test_similarity_is_cosine(full_index: HnswIndex, prompt_vectors: Vectors) -> None:
    query = prompt_vectors[41] * 0.5 + prompt_vectors[42] * 0.5
    best = full_index.search(query, k=3)
    assert [n.similarity for n in best] == sorted((n.similarity for n in best), reverse=True)
    for neighbor in best:
        expected = cosine(query, prompt_vectors[neighbor.entry_id - 1])
        assert neighbor.similarity == pytest.approx(expected, abs=1e-5)


def test_search_never_asks_for_more_than_it_holds(prompt_vectors: Vectors) -> None:
    index = HnswIndex(384, model_id=MODEL)
    assert index.search(prompt_vectors[0], k=5) == []
    index.add([1, 2, 3], prompt_vectors[:3])
    index.delete([2])
    found = index.search(prompt_vectors[1], k=10)
    assert sorted(n.entry_id for n in found) == [1, 3]


def test_deleted_entries_are_never_returned_and_slots_are_reused(
    prompt_vectors: Vectors,
) -> None:
    index = HnswIndex(384, model_id=MODEL, params=IndexParams(initial_capacity=8))
    index.add(list(range(1, 9)), prompt_vectors[:8])
    assert index.delete([3, 4, 99]) == 2
    assert 3 not in index and len(index) == 6
    assert all(n.entry_id not in (3, 4) for n in index.search(prompt_vectors[2], k=6))
    index.add([9, 10], prompt_vectors[8:10])
    assert index.capacity == 8  # the two deleted slots were reused
    assert index.search(prompt_vectors[9], k=1)[0].entry_id == 10


def test_readding_a_deleted_id_revives_it_once(prompt_vectors: Vectors) -> None:
    index = HnswIndex(384, model_id=MODEL)
    index.add([1, 2], prompt_vectors[:2])
    index.delete([1])
    index.add([1], prompt_vectors[5:6])
    assert len(index) == 2
    hits = [n.entry_id for n in index.search(prompt_vectors[5], k=2)]
    assert hits.count(1) == 1 and hits[0] == 1


def test_adding_an_existing_id_replaces_its_vector(prompt_vectors: Vectors) -> None:
    index = HnswIndex(384, model_id=MODEL)
    index.add([1, 2], prompt_vectors[:2])
    index.add([1], prompt_vectors[7:8])
    assert len(index) == 2
    assert index.search(prompt_vectors[7], k=1)[0].similarity == pytest.approx(1.0, abs=1e-5)


def test_load_refuses_another_model_or_dimension(prompt_vectors: Vectors, tmp_path: Path) -> None:
    index = HnswIndex(384, model_id=MODEL)
    index.add([1], prompt_vectors[:1])
    path = tmp_path / "i.hnsw"
    index.save(path)
    with pytest.raises(IndexFileError, match="built for"):
        HnswIndex.load(path, dim=384, model_id="other-model")
    with pytest.raises(IndexFileError, match="built for"):
        HnswIndex.load(path, dim=128, model_id=MODEL)


def test_load_refuses_missing_or_damaged_files(prompt_vectors: Vectors, tmp_path: Path) -> None:
    path = tmp_path / "i.hnsw"
    with pytest.raises(IndexFileError, match="no saved index"):
        HnswIndex.load(path, dim=384, model_id=MODEL)
    index = HnswIndex(384, model_id=MODEL)
    index.add([1, 2], prompt_vectors[:2])
    index.save(path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(IndexFileError, match="size differs"):
        HnswIndex.load(path, dim=384, model_id=MODEL)
    header_path_for(path).write_text("{not json")
    with pytest.raises(IndexFileError, match="unreadable"):
        HnswIndex.load(path, dim=384, model_id=MODEL)


def test_deletions_survive_save_and_load(prompt_vectors: Vectors, tmp_path: Path) -> None:
    index = HnswIndex(384, model_id=MODEL)
    index.add([1, 2, 3], prompt_vectors[:3])
    index.delete([2])
    path = tmp_path / "i.hnsw"
    index.save(path)
    loaded = HnswIndex.load(path, dim=384, model_id=MODEL)
    assert loaded.ids() == {1, 3}
    assert all(n.entry_id != 2 for n in loaded.search(prompt_vectors[1], k=2))


def test_concurrent_adds_deletes_and_searches(prompt_vectors: Vectors) -> None:
    index = HnswIndex(384, model_id=MODEL, params=IndexParams(initial_capacity=16))
    errors: list[BaseException] = []
    deleted = set(range(1, 2001, 7))

    def writer() -> None:
        try:
            for start in range(0, 2000, 50):
                ids = list(range(start + 1, start + 51))
                index.add(ids, prompt_vectors[start : start + 50])
                index.delete(i for i in ids if i in deleted)
        except BaseException as exc:
            errors.append(exc)

    def reader() -> None:
        try:
            for i in range(2000):
                for neighbor in index.search(prompt_vectors[i], k=5):
                    assert -1.0 <= neighbor.similarity <= 1.0
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer)] + [
        threading.Thread(target=reader) for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    assert len(index) == 2000 - len(deleted)
    assert index.ids() == set(range(1, 2001)) - deleted
