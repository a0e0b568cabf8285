"""Embedders for the tests: the real model behind wrappers that tests adjust (rename, gate,
fail, remember), and a fast hashing stand-in for tests that do not depend on meaning."""

from __future__ import annotations

import hashlib
import itertools
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


class HashingEmbedder:
    """A fast, deterministic stand-in for the model, for tests that do not depend on meaning
    (auth, limits, errors, the OpenAPI document, the fuzz): each word and word pair of a
    text is hashed to one of `dim` signed coordinates, and the sum is normalised. Texts that
    share words are near; identical texts are identical; no model is loaded."""

    model_id = "test-hashing-v1"

    def __init__(self, dim: int = 384) -> None:
        self._dim = dim

    @property
    def dim(self) -> int:
        return self._dim

    def embed(self, texts: Sequence[str]) -> Vectors:
        vectors = np.zeros((len(texts), self._dim), np.float32)
        for row, text in enumerate(texts):
            words = text.lower().split() or [""]
            for feature in [*words, *(f"{a} {b}" for a, b in itertools.pairwise(words))]:
                digest = hashlib.blake2b(feature.encode("utf-8", "replace"), digest_size=8)
                value = int.from_bytes(digest.digest(), "little")
                vectors[row, value % self._dim] += 1.0 if value >> 63 else -1.0
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        normalised: Vectors = (vectors / np.where(norms == 0, 1.0, norms)).astype(np.float32)
        return normalised
