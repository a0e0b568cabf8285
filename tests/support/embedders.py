"""The real embedder behind a wrapper that tests adjust (rename, gate, fail)."""

from __future__ import annotations

from collections.abc import Sequence

from embeddings.protocol import Vectors
from embeddings.runtime import OnnxEmbedder


class Wrapped:
    """Delegates to the real model; subclasses override what the test needs."""

    def __init__(self, inner: OnnxEmbedder, *, model_id: str | None = None) -> None:
        self.inner = inner
        self._model_id = model_id or inner.model_id

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def dim(self) -> int:
        return self.inner.dim

    def embed(self, texts: Sequence[str]) -> Vectors:
        return self.inner.embed(texts)
