"""Keeping an in-memory index in step with the store, which is the source of truth.

At start an index is loaded from its saved file when that file is of the same model and
dimension, then reconciled with the store (entries added or deleted since it was saved);
otherwise it is rebuilt from the embeddings kept in the store. Entries embedded by another
model are embedded again and written back, so a model change costs one pass, once.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embeddings.protocol import Embedder, embed_all
from gateway.index.hnsw import HnswIndex, IndexFileError
from gateway.settings import IndexParams
from gateway.store.queries import Partition, Store, decode_vectors

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SyncReport:
    action: str  # "loaded", "caught_up" or "rebuilt"
    entries: int
    added: int
    removed: int
    reembedded: int
    reason: str = ""


def index_file(directory: Path, partition: Partition) -> Path:
    """Where a partition's index is saved; hashed, since tenant names are arbitrary."""
    key = "\x1f".join((partition.tenant, partition.namespace, partition.category))
    return directory / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.hnsw"


def reconcile(
    index: HnswIndex, store: Store, partition: Partition, embedder: Embedder
) -> tuple[int, int, int]:
    """Make `index` hold exactly the partition's store entries; returns (added, removed,
    re-embedded)."""
    store_ids = store.entry_ids(partition)
    removed = index.delete(index.ids() - store_ids)
    missing = store_ids - index.ids()
    added = reembedded = 0
    for ids, texts, blobs, models in store.embeddings(partition, ids=missing):
        vectors = np.empty((len(ids), index.dim), dtype=np.float32)
        same = [i for i, model in enumerate(models) if model == embedder.model_id]
        other = [i for i, model in enumerate(models) if model != embedder.model_id]
        if same:
            vectors[same] = decode_vectors([blobs[i] for i in same], index.dim)
        if other:
            fresh = embed_all(embedder, [texts[i] for i in other])
            store.replace_embeddings([ids[i] for i in other], fresh, embedder.model_id)
            vectors[other] = fresh
            reembedded += len(other)
        index.add(ids, vectors)
        added += len(ids)
    return added, removed, reembedded


def load_or_rebuild(
    store: Store,
    partition: Partition,
    embedder: Embedder,
    *,
    path: Path | None,
    params: IndexParams = IndexParams(),
) -> tuple[HnswIndex, SyncReport]:
    index: HnswIndex | None = None
    reason = "no saved index"
    if path is not None:
        try:
            index = HnswIndex.load(
                path, dim=embedder.dim, model_id=embedder.model_id, params=params
            )
        except IndexFileError as exc:
            reason = str(exc)
    loaded = index is not None
    if index is None:
        index = HnswIndex(embedder.dim, model_id=embedder.model_id, params=params)
    added, removed, reembedded = reconcile(index, store, partition, embedder)
    if not loaded:
        action = "rebuilt"
        logger.info("rebuilt index for %s from the store (%s)", partition, reason)
    else:
        action = "caught_up" if added or removed else "loaded"
        reason = ""
    return index, SyncReport(action, len(index), added, removed, reembedded, reason)
