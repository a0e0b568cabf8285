"""The real embedder behind a wrapper that tests adjust (rename, gate, fail)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

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


class Memoized(Wrapped):
    """The real model, remembering every text it has embedded: apps built one after the
    other in the tests embed the category prototypes (and common prompts) once, not once
    per app. The vectors are the model's own."""

    def __init__(self, inner: OnnxEmbedder) -> None:
        super().__init__(inner)
        self._seen: dict[str, Vectors] = {}

    def embed(self, texts: Sequence[str]) -> Vectors:
        missing = list(dict.fromkeys(t for t in texts if t not in self._seen))
        if missing:
            for text, vector in zip(missing, self.inner.embed(missing), strict=True):
                self._seen[text] = vector
        return np.stack([self._seen[t] for t in texts]) if texts else self.inner.embed(texts)
