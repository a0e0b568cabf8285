"""Compressed embeddings: a PCA projection fitted on a model's own vectors (MeanCache's
384 to 128), applied after the model and renormalised. Entries then keep a third of the
bytes, and the index a third of the vectors' memory.

A model directory may hold `projection.npz` (the mean and the components); its card then
lists the file's checksum and the thresholds calibrated on the projected vectors
(`compression`). `[embedding] compress = true` serves it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embeddings.card import PROJECTION_FILE, load_card
from embeddings.errors import ModelIntegrityError
from embeddings.model import bundled_minilm
from embeddings.protocol import Embedder, Vectors

__all__ = ["PROJECTION_FILE", "ProjectedEmbedder", "Projection", "load_projection"]


@dataclass(frozen=True)
class Projection:
    mean: np.ndarray  # (dim,)
    components: np.ndarray  # (dim, dims)

    @property
    def dims(self) -> int:
        return int(self.components.shape[1])

    @classmethod
    def fit(cls, vectors: np.ndarray, dims: int) -> Projection:
        """Principal components of `vectors` (rows), the first `dims` of them."""
        if not 0 < dims < vectors.shape[1]:
            raise ValueError(f"dims must be in (0, {vectors.shape[1]}), not {dims}")
        if len(vectors) < dims:
            raise ValueError(f"fitting {dims} components needs at least {dims} vectors")
        mean = vectors.mean(axis=0)
        _, _, vt = np.linalg.svd(vectors - mean, full_matrices=False)
        return cls(mean.astype(np.float32), np.ascontiguousarray(vt[:dims].T, dtype=np.float32))

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        projected = (np.asarray(vectors, dtype=np.float32) - self.mean) @ self.components
        norms = np.linalg.norm(projected, axis=1, keepdims=True)
        return np.ascontiguousarray(projected / np.maximum(norms, 1e-12), dtype=np.float32)

    def save(self, path: Path) -> None:
        with path.open("wb") as handle:
            np.savez(handle, mean=self.mean, components=self.components)

    @classmethod
    def load(cls, path: Path) -> Projection:
        with np.load(path) as data:
            return cls(data["mean"].astype(np.float32), data["components"].astype(np.float32))


class ProjectedEmbedder:
    """An embedder whose vectors go through a projection: same texts, fewer dimensions."""

    def __init__(self, inner: Embedder, projection: Projection) -> None:
        if projection.mean.shape != (inner.dim,):
            raise ValueError(f"the projection is for {projection.mean.shape[0]} dimensions")
        self._inner = inner
        self._projection = projection
        self.provider = getattr(inner, "provider", "")

    @property
    def model_id(self) -> str:
        return f"{self._inner.model_id}:pca{self._projection.dims}"

    @property
    def dim(self) -> int:
        return self._projection.dims

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._projection.apply(self._inner.embed(texts))

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        counter = getattr(self._inner, "token_counts", None)
        return counter(texts) if counter is not None else [0] * len(texts)


def load_projection(directory: Path) -> Projection:
    """The directory's projection, once its card and checksums check out."""
    base = bundled_minilm()
    card = load_card(directory, base_sha256=base.sha256, dim=base.dim)
    if card.compression is None or PROJECTION_FILE not in card.files:
        raise ModelIntegrityError(f"{directory} has no projection (train with --compress)")
    return Projection.load(directory / PROJECTION_FILE)
