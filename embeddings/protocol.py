"""The seam between the gateway and whatever turns text into vectors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 rows, one per text.

    `model_id` names the embedding space: vectors of different ids are never compared.
    `embed` is blocking CPU or GPU work; call it from a worker thread, not the event loop.
    """

    @property
    def model_id(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> Vectors: ...


def embed_all(embedder: Embedder, texts: Sequence[str], *, batch_size: int = 64) -> Vectors:
    """Embed many texts in batches of similar length (less padding), in input order."""
    if not texts:
        return np.zeros((0, embedder.dim), dtype=np.float32)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.empty((len(texts), embedder.dim), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        out[rows] = embedder.embed([texts[i] for i in rows])
    return out
