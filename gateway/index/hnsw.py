"""The in-memory vector index: a thin, thread-safe wrapper over hnswlib (cosine space).

Labels are store entry ids, so a search result names a database row directly.

Thread-safety: `search` may run in many threads at once; `add`, `delete`, `save` and the
automatic resize take the index exclusively (hnswlib's insert, resize and `set_ef` are not
safe alongside `knn_query`). All methods release the GIL inside hnswlib.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import hnswlib
import numpy as np
import numpy.typing as npt

from gateway.index.rwlock import ReadWriteLock
from gateway.index.similarity import from_distance
from gateway.settings import IndexParams

FORMAT_VERSION = 1
SPACE = "cosine"


class IndexFileError(Exception):
    """A saved index is missing, damaged, or was built for another model."""


@dataclass(frozen=True)
class Neighbor:
    entry_id: int
    similarity: float


@dataclass(frozen=True)
class IndexHeader:
    format: int
    space: str
    dim: int
    model_id: str
    last_entry_id: int
    count: int
    capacity: int
    data_bytes: int
    m: int
    ef_construction: int
    deleted: list[int]


class HnswIndex:
    def __init__(
        self,
        dim: int,
        *,
        model_id: str,
        params: IndexParams = IndexParams(),
        _raw: hnswlib.Index | None = None,
    ) -> None:
        self.dim = dim
        self.model_id = model_id
        self.params = params
        if _raw is None:
            _raw = hnswlib.Index(space=SPACE, dim=dim)
            _raw.init_index(
                max_elements=params.initial_capacity,
                M=params.m,
                ef_construction=params.ef_construction,
                allow_replace_deleted=True,
            )
        _raw.set_ef(params.ef_search)
        _raw.set_num_threads(1)
        self._raw = _raw
        self._lock = ReadWriteLock()
        self._live: set[int] = set()
        self._deleted: set[int] = set()
        self.last_entry_id = 0

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, entry_id: object) -> bool:
        return entry_id in self._live

    @property
    def capacity(self) -> int:
        return int(self._raw.get_max_elements())

    def ids(self) -> frozenset[int]:
        return frozenset(self._live)

    def add(self, entry_ids: Sequence[int], vectors: npt.ArrayLike) -> None:
        """Insert (or replace) vectors under the given entry ids."""
        data = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        if len(entry_ids) != len(data):
            raise ValueError(f"{len(entry_ids)} ids for {len(data)} vectors")
        if not len(data):
            return
        labels = [int(label) for label in entry_ids]
        with self._lock.write():
            known, fresh = self._split_known(labels)
            threads = -1 if len(labels) >= 256 else 1  # bulk loads use every core
            if known:
                rows = [i for i, label in enumerate(labels) if label in known]
                self._raw.add_items(data[rows], [labels[i] for i in rows], num_threads=threads)
            if fresh:
                rows = [i for i, label in enumerate(labels) if label in fresh]
                # Fresh labels take the slots of deleted entries first.
                vacant = self._raw.get_current_count() - len(self._live | known)
                needed = self._raw.get_current_count() + max(0, len(rows) - vacant)
                if needed > self._raw.get_max_elements():
                    self._raw.resize_index(max(needed, 2 * self._raw.get_max_elements()))
                self._raw.add_items(
                    data[rows],
                    [labels[i] for i in rows],
                    num_threads=threads,
                    replace_deleted=True,
                )
            self._live.update(labels)
            self.last_entry_id = max(self.last_entry_id, *labels)

    def _split_known(self, labels: Sequence[int]) -> tuple[set[int], set[int]]:
        """Labels hnswlib holds (updated in place) and fresh ones (need a slot).

        A deleted label is revived in its own slot when that slot has not been reused;
        adding it as fresh would leave a second live copy under the same label.
        """
        known: set[int] = set()
        fresh: set[int] = set()
        for label in labels:
            if label in self._live:
                known.add(label)
            elif label in self._deleted:
                self._deleted.discard(label)
                try:
                    self._raw.unmark_deleted(label)
                    known.add(label)
                except RuntimeError:  # its slot went to another entry
                    fresh.add(label)
            else:
                fresh.add(label)
        return known, fresh

    def delete(self, entry_ids: Iterable[int]) -> int:
        """Mark entries deleted; returns how many were present. Their slots are reused."""
        removed = 0
        with self._lock.write():
            for entry_id in entry_ids:
                if entry_id in self._live:
                    self._raw.mark_deleted(entry_id)
                    self._live.discard(entry_id)
                    self._deleted.add(entry_id)
                    removed += 1
        return removed

    def search(self, vector: npt.ArrayLike, k: int = 4) -> list[Neighbor]:
        """The up-to-k nearest live entries, most similar first."""
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, self.dim)
        with self._lock.read():
            k = min(k, len(self._live))
            if k <= 0:
                return []
            labels, distances = self._raw.knn_query(query, k=k)
        return [
            Neighbor(int(label), from_distance(float(distance)))
            for label, distance in zip(labels[0], distances[0], strict=True)
        ]

    def save(self, path: Path) -> None:
        """Write `path` (hnswlib's format) and `path.json` (header), each atomically."""
        path.parent.mkdir(parents=True, exist_ok=True)
        data_tmp = path.with_name(path.name + ".tmp")
        header_path = header_path_for(path)
        with self._lock.write():
            self._raw.save_index(str(data_tmp))
            header = IndexHeader(
                format=FORMAT_VERSION,
                space=SPACE,
                dim=self.dim,
                model_id=self.model_id,
                last_entry_id=self.last_entry_id,
                count=len(self._live),
                capacity=int(self._raw.get_max_elements()),
                data_bytes=data_tmp.stat().st_size,
                m=self.params.m,
                ef_construction=self.params.ef_construction,
                deleted=sorted({int(i) for i in self._raw.get_ids_list()} - self._live),
            )
        os.replace(data_tmp, path)
        header_tmp = header_path.with_name(header_path.name + ".tmp")
        header_tmp.write_text(json.dumps(asdict(header)))
        os.replace(header_tmp, header_path)

    @classmethod
    def load(
        cls, path: Path, *, dim: int, model_id: str, params: IndexParams = IndexParams()
    ) -> HnswIndex:
        """Load a saved index, refusing one of another model, dimension or format."""
        header = read_header(path)
        expected = (FORMAT_VERSION, SPACE, dim, model_id)
        found = (header.format, header.space, header.dim, header.model_id)
        if found != expected:
            raise IndexFileError(f"{path} was built for {found}, not {expected}")
        if not path.is_file() or path.stat().st_size != header.data_bytes:
            raise IndexFileError(f"{path} does not match its header (size differs)")
        raw = hnswlib.Index(space=SPACE, dim=dim)
        try:
            raw.load_index(str(path), max_elements=header.capacity, allow_replace_deleted=True)
        except (RuntimeError, ValueError) as exc:
            raise IndexFileError(f"{path} could not be loaded: {exc}") from exc
        index = cls(dim, model_id=model_id, params=params, _raw=raw)
        index._deleted = set(header.deleted)
        index._live = {int(i) for i in raw.get_ids_list()} - index._deleted
        if len(index._live) != header.count:
            raise IndexFileError(
                f"{path} holds {len(index._live)} entries, header says {header.count}"
            )
        index.last_entry_id = header.last_entry_id
        return index


def header_path_for(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def read_header(path: Path) -> IndexHeader:
    try:
        fields = json.loads(header_path_for(path).read_text())
        return IndexHeader(**fields)
    except FileNotFoundError as exc:
        raise IndexFileError(f"no saved index at {path}") from exc
    except (ValueError, TypeError) as exc:
        raise IndexFileError(f"unreadable index header for {path}: {exc}") from exc
