"""The trained category model: a small MLP over the prompt's embedding (the vector the
gateway computes for the cache anyway), so that classifying costs one 384x256 and one
256xC product, a few microseconds.

Its weights are an `.npz` file: the arrays, and a JSON `meta` with the categories, the
embedding model they were trained on, the softmax temperature and the confidence below
which a prompt goes to `default` (both calibrated on a validation split), and the card:
the data and the held-out metrics. The shipped file is `categories/weights/`; `gateway
train-classifier` writes another. Inference is NumPy alone (no torch at serving)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

SHIPPED = "category-model.npz"
Array = npt.NDArray[np.float32]


class ModelFileError(ValueError):
    """A category model file is missing or unusable; the message says why."""


def model_family(model_id: str) -> str:
    """The part of an embedder's id that names its weights (`name:fingerprint`), without
    the variant (int8, fp32) and the window: vectors of one family differ by rounding."""
    return ":".join(model_id.split(":")[:2])


@dataclass(frozen=True)
class CategoryModel:
    """Thread-safety: immutable; `predict` may run in any thread."""

    categories: tuple[str, ...]
    w1: Array  # dim x hidden
    b1: Array
    w2: Array  # hidden x categories
    b2: Array
    embedding: str  # the model family the vectors came from
    temperature: float = 1.0
    min_confidence: float = 0.0
    card: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        hidden = self.w1.shape[1]
        ok = self.b1.shape == (hidden,) and self.w2.shape == (hidden, len(self.categories))
        if not ok or self.b2.shape != (len(self.categories),) or self.temperature <= 0:
            raise ModelFileError("category model: the weights' shapes do not agree")

    @property
    def dim(self) -> int:
        return int(self.w1.shape[0])

    def fits(self, model_id: str, dim: int) -> bool:
        """Whether vectors of this embedder are what the model was trained on."""
        return dim == self.dim and model_family(model_id) == self.embedding

    def probabilities(self, vectors: npt.ArrayLike) -> Array:
        """Calibrated probabilities, one row per vector (columns: `categories`)."""
        x = np.asarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        hidden = np.maximum(x @ self.w1 + self.b1, 0.0)
        logits = (hidden @ self.w2 + self.b2) / self.temperature
        logits -= logits.max(axis=1, keepdims=True)
        weights = np.exp(logits)
        result: Array = (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)
        return result

    def predict(self, vector: npt.ArrayLike) -> tuple[str, float]:
        """The most probable category of one vector, and its probability."""
        p = self.probabilities(vector)[0]
        best = int(np.argmax(p))
        return self.categories[best], float(p[best])

    def save(self, path: Path) -> None:
        meta = {
            "categories": list(self.categories),
            "embedding": self.embedding,
            "temperature": self.temperature,
            "min_confidence": self.min_confidence,
            "card": self.card,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as out:
            np.savez_compressed(
                out,
                w1=self.w1,
                b1=self.b1,
                w2=self.w2,
                b2=self.b2,
                meta=np.asarray(json.dumps(meta)),
            )

    @classmethod
    def load(cls, path: Path) -> CategoryModel:
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                arrays = {
                    k: np.asarray(data[k], dtype=np.float32) for k in ("w1", "b1", "w2", "b2")
                }
        except FileNotFoundError:
            raise ModelFileError(f"category model not found: {path}") from None
        except (OSError, KeyError, ValueError) as exc:
            raise ModelFileError(f"{path}: not a category model ({exc})") from None
        try:
            return cls(
                categories=tuple(str(c) for c in meta["categories"]),
                embedding=str(meta["embedding"]),
                temperature=float(meta["temperature"]),
                min_confidence=float(meta["min_confidence"]),
                card=dict(meta.get("card", {})),
                **arrays,
            )
        except (KeyError, TypeError) as exc:
            raise ModelFileError(f"{path}: not a category model ({exc})") from None


def shipped_path() -> Path:
    return Path(str(resources.files("categories").joinpath("weights", SHIPPED)))


def load_model(path: Path | None, trained: Path | None = None) -> CategoryModel | None:
    """The model in force: `path` if one is configured (an error if unusable), else the one
    `gateway train-classifier` left at `trained`, else the shipped one (None if absent)."""
    if path is not None:
        return CategoryModel.load(path)
    for candidate in (trained, shipped_path()):
        if candidate is not None and candidate.is_file():
            try:
                return CategoryModel.load(candidate)
            except ModelFileError as exc:
                logger.error("%s; classifying by rules and prototypes", exc)
                return None
    return None
