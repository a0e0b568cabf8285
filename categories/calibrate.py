"""Choosing a category's threshold from labelled pairs (`{"a", "b", "label"}`, label 1 when
`b` asks the same as `a`): the precision/recall curve of cosine(a, b), and the lowest
threshold whose precision reaches the target (the most hits at that precision). A pair
belongs to its `category` field if it has one, else to the category the classifier gives
`a`."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from categories.classifier import Classifier
from embeddings.protocol import Embedder, Vectors, embed_all

BETA = 0.5
THRESHOLDS = tuple(round(0.70 + 0.01 * i, 2) for i in range(30))  # 0.70 ... 0.99


class PairsError(ValueError):
    """The pairs file is unusable; the message names the line."""


@dataclass(frozen=True)
class Pair:
    a: str
    b: str
    label: bool
    category: str | None = None


@dataclass(frozen=True)
class Point:
    threshold: float
    accepted: int
    true: int
    false: int
    precision: float
    recall: float
    f_beta: float


@dataclass(frozen=True)
class Calibration:
    category: str
    pairs: int
    positives: int
    curve: list[Point]
    chosen: Point | None  # None: no threshold reaches the target precision


def read_pairs(path: Path, *, limit: int = 0) -> list[Pair]:
    pairs: list[Pair] = []
    try:
        lines = path.read_text("utf-8").splitlines()
    except FileNotFoundError:
        raise PairsError(f"pairs file not found: {path}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise PairsError(f"{path}:{number}: not JSON ({exc})") from None
        ok = isinstance(row, dict) and isinstance(row.get("a"), str)
        ok = ok and isinstance(row.get("b"), str) and row.get("label") in (0, 1, True, False)
        if not ok:
            raise PairsError(f'{path}:{number}: expected {{"a": str, "b": str, "label": 0 or 1}}')
        category = row.get("category")
        pairs.append(Pair(row["a"], row["b"], bool(row["label"]), category))
        if limit and len(pairs) >= limit:
            break
    if not pairs:
        raise PairsError(f"{path}: no pairs")
    return pairs


def curve(similarity: npt.NDArray[np.float64], labels: npt.NDArray[np.bool_]) -> list[Point]:
    positives = int(labels.sum())
    points = []
    for threshold in THRESHOLDS:
        accepted = similarity >= threshold - 1e-9
        true = int(np.sum(accepted & labels))
        total = int(accepted.sum())
        precision = true / total if total else 1.0
        recall = true / positives if positives else 0.0
        denominator = BETA**2 * precision + recall
        f_beta = (1 + BETA**2) * precision * recall / denominator if denominator else 0.0
        points.append(Point(threshold, total, true, total - true, precision, recall, f_beta))
    return points


def choose(points: Sequence[Point], target: float) -> Point | None:
    """The lowest threshold whose precision (over every pair it accepts) reaches `target`:
    the most hits at that precision."""
    return next((p for p in points if p.accepted and p.precision >= target), None)


def calibrate(
    pairs: Sequence[Pair],
    embedder: Embedder,
    classifier: Classifier,
    *,
    target: float,
    category: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[Calibration]:
    """One calibration per category found (or only `category`), then `all` over them."""
    texts = list(dict.fromkeys(t for p in pairs for t in (p.a, p.b)))
    if progress:
        progress(f"embedding {len(texts)} texts of {len(pairs)} pairs")
    vectors = embed_all(embedder, texts)
    row = {text: i for i, text in enumerate(texts)}
    a = vectors[[row[p.a] for p in pairs]]
    b = vectors[[row[p.b] for p in pairs]]
    similarity = np.sum(a * b, axis=1).astype(np.float64)
    labels = np.asarray([p.label for p in pairs])
    owners = np.asarray(_categories(pairs, a, classifier))
    names = [category] if category else sorted(set(owners.tolist()))
    results = []
    for name in names:
        mask = owners == name
        results.append(_one(name, similarity[mask], labels[mask], target))
    if category is None:
        results.append(_one("all", similarity, labels, target))
    return results


def _categories(pairs: Sequence[Pair], a: Vectors, classifier: Classifier) -> list[str]:
    return [
        p.category or classifier.classify(p.a, vector).category
        for p, vector in zip(pairs, a, strict=True)
    ]


def _one(
    name: str, similarity: npt.NDArray[np.float64], labels: npt.NDArray[np.bool_], target: float
) -> Calibration:
    points = curve(similarity, labels)
    return Calibration(name, len(labels), int(labels.sum()), points, choose(points, target))


def report(results: Sequence[Calibration], target: float) -> str:
    """The curve of each calibration (every 0.02, and the chosen threshold), then a summary."""
    lines: list[str] = []
    for result in results:
        lines.append(
            f"\n{result.category}: {result.pairs} pairs, {result.positives} labelled the same"
        )
        lines.append(
            f"{'threshold':>9}  {'accepted':>8}  {'false':>6}  {'precision':>9}  "
            f"{'recall':>6}  {'F0.5':>6}"
        )
        for point in result.curve:
            chosen = result.chosen is not None and point.threshold == result.chosen.threshold
            if round(point.threshold * 100) % 2 and not chosen:
                continue
            lines.append(
                f"{point.threshold:>9.2f}  {point.accepted:>8}  {point.false:>6}  "
                f"{point.precision:>9.3f}  {point.recall:>6.3f}  {point.f_beta:>6.3f}"
                + ("  <- chosen" if chosen else "")
            )
    lines.append(f"\nthreshold for precision >= {target:.2f}:")
    for result in results:
        if result.chosen is None:
            lines.append(f"  {result.category:<16} none reaches it ({result.pairs} pairs)")
        else:
            c = result.chosen
            lines.append(
                f"  {result.category:<16} {c.threshold:.2f}  (precision {c.precision:.3f}, "
                f"recall {c.recall:.3f}, {result.pairs} pairs)"
            )
    return "\n".join(lines)


def to_json(results: Sequence[Calibration], target: float) -> dict[str, object]:
    return {
        "target_precision": target,
        "categories": {
            r.category: {
                "pairs": r.pairs,
                "positives": r.positives,
                "threshold": r.chosen.threshold if r.chosen else None,
                "chosen": vars(r.chosen) if r.chosen else None,
                "curve": [vars(p) for p in r.curve],
            }
            for r in results
        },
    }
