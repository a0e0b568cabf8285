"""How well a model judges "the same question", measured as the cache uses it.

Cache view: every pair's first question is a cache entry, its second question a query; the
query's nearest entry is served when its cosine clears the threshold. A served answer is
right only when the pair is a labelled duplicate of that entry (or the very same text).
Precision is right answers over answers served; recall is right answers over duplicates.
F0.5 weighs precision twice as much as recall: a wrong answer costs more than a miss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

from federated.pairs import Pair

BETA = 0.5
GRID = np.round(np.arange(0.50, 0.9951, 0.005), 3)  # thresholds tried


@dataclass(frozen=True)
class Scores:
    threshold: float
    hits: int
    true_hits: int
    false_hits: int
    precision: float
    recall: float
    f_beta: float

    def to_dict(self) -> dict[str, float]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


def score(
    similarity: npt.NDArray[np.float64],
    correct: npt.NDArray[np.bool_],
    positives: int,
    threshold: float,
) -> Scores:
    """Scores at one threshold, from each query's top-1 similarity and whether it is right."""
    served = similarity >= threshold
    true_hits = int(np.sum(served & correct))
    hits = int(np.sum(served))
    precision = true_hits / hits if hits else 1.0
    recall = true_hits / positives if positives else 0.0
    denominator = BETA**2 * precision + recall
    f_beta = (1 + BETA**2) * precision * recall / denominator if denominator else 0.0
    return Scores(float(threshold), hits, true_hits, hits - true_hits, precision, recall, f_beta)


@dataclass(frozen=True)
class CacheView:
    similarity: npt.NDArray[np.float64]  # each query's top-1 cosine
    correct: npt.NDArray[np.bool_]  # whether that neighbour is a right answer
    positives: int  # labelled duplicates

    def at(self, threshold: float) -> Scores:
        return score(self.similarity, self.correct, self.positives, threshold)

    def sweep(self, grid: Sequence[float] = tuple(GRID)) -> list[Scores]:
        return [self.at(t) for t in grid]

    def best(self) -> Scores:
        return max(self.sweep(), key=lambda s: (s.f_beta, s.threshold))

    def recall_at_precision(self, floor: float) -> Scores | None:
        """The highest-recall threshold whose precision is at least `floor`."""
        kept = [s for s in self.sweep() if s.precision >= floor and s.hits]
        return max(kept, key=lambda s: s.recall) if kept else None


def cache_view(pairs: Sequence[Pair], a: np.ndarray, b: np.ndarray) -> CacheView:
    """Score a model's vectors of both sides (rows in pair order, unit length)."""
    entries = list(dict.fromkeys(p.a for p in pairs))
    row = {text: i for i, text in enumerate(entries)}
    first = [row[p.a] for p in pairs]
    entry_vectors = np.zeros((len(entries), a.shape[1]), dtype=np.float32)
    entry_vectors[first] = a
    duplicates = {(p.a, p.b) for p in pairs if p.label == 1}
    duplicates |= {(y, x) for x, y in duplicates}
    similarity = np.empty(len(pairs))
    correct = np.zeros(len(pairs), dtype=bool)
    for start in range(0, len(pairs), 2048):
        block = b[start : start + 2048] @ entry_vectors.T
        nearest = np.argmax(block, axis=1)
        for offset, column in enumerate(nearest):
            i = start + offset
            similarity[i] = float(block[offset, column])
            served = entries[int(column)]
            correct[i] = served == pairs[i].b or (served, pairs[i].b) in duplicates
    return CacheView(similarity, correct, sum(p.label == 1 for p in pairs))
