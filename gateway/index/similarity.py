"""The one similarity function of the project: cosine, in [-1, 1].

Thresholds in the configuration, the admin API, reports and calibration are all in these
units. hnswlib's "cosine" space returns a distance of 1 - cosine; `from_distance` is the
only place that converts it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]


def cosine(a: FloatArray, b: FloatArray) -> float:
    """Cosine similarity of two vectors (normalised or not)."""
    denominator = float(np.linalg.norm(a) * np.linalg.norm(b))
    if denominator == 0.0:
        return 0.0
    return float(np.clip(np.dot(a, b) / denominator, -1.0, 1.0))


def cosine_matrix(queries: FloatArray, keys: FloatArray) -> FloatArray:
    """Pairwise cosine similarity, shape (len(queries), len(keys))."""
    q = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
    k = keys / np.maximum(np.linalg.norm(keys, axis=1, keepdims=True), 1e-12)
    result: FloatArray = np.clip(q @ k.T, -1.0, 1.0).astype(np.float32)
    return result


def from_distance(distance: float) -> float:
    """hnswlib cosine-space distance to cosine similarity."""
    return float(min(1.0, max(-1.0, 1.0 - distance)))
