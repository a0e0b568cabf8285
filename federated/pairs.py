"""Labelled question pairs: reading them strictly, splitting them without leaks, and giving
each client its own part.

A pairs file holds one JSON object per line: `{"a": str, "b": str, "label": 0 or 1}`
(`label` may be left out in a file of paraphrases, where every pair is the same question).
Feedback exported from the gateway has the same shape.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAX_TEXT = 8192  # characters of one side: longer texts are not questions


class PairsError(ValueError):
    """A pairs file or a training set that cannot be used; the message says why."""


@dataclass(frozen=True)
class Pair:
    a: str
    b: str
    label: int  # 1: the same question


@dataclass(frozen=True)
class Problem:
    line: int
    reason: str


@dataclass(frozen=True)
class Pairs:
    pairs: list[Pair]
    problems: list[Problem]  # lines skipped, with reasons


def read_pairs(path: Path, *, strict: bool = False, default_label: int | None = None) -> Pairs:
    """Read a pairs file. A malformed line is skipped and reported with its number and
    reason; with `strict`, the first one stops the read. `default_label` is the label of a
    line without one (1 for a file of paraphrases); without it a label is required."""
    pairs: list[Pair] = []
    problems: list[Problem] = []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PairsError(f"cannot read {path}: {exc}") from exc
    # split on newlines only: questions may hold other line separators
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            pairs.append(_pair(line, default_label))
        except PairsError as exc:
            if strict:
                raise PairsError(f"{path}:{number}: {exc}") from None
            problems.append(Problem(number, str(exc)))
    return Pairs(pairs, problems)


def write_pairs(path: Path, pairs: Iterable[Pair]) -> None:
    """A pairs file `read_pairs` reads back."""
    lines = [json.dumps({"a": p.a, "b": p.b, "label": p.label}) for p in pairs]
    path.write_text("".join(line + "\n" for line in lines))


def _pair(line: str, default_label: int | None) -> Pair:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise PairsError(f"not JSON ({exc.msg})") from None
    if not isinstance(row, dict):
        raise PairsError("not a JSON object")
    sides = []
    for side in ("a", "b"):
        value = row.get(side)
        if not isinstance(value, str) or not value.strip():
            raise PairsError(f'"{side}" must be a non-empty string')
        if len(value) > MAX_TEXT:
            raise PairsError(f'"{side}" is longer than {MAX_TEXT} characters')
        sides.append(value)
    label = row.get("label", default_label)
    if isinstance(label, bool) or label not in (0, 1):
        raise PairsError('"label" must be 0 or 1')
    return Pair(sides[0], sides[1], int(label))


def check_trainable(pairs: Sequence[Pair], what: str = "training set") -> None:
    """Refuse a set that cannot teach anything: empty, or only one class."""
    if not pairs:
        raise PairsError(f"the {what} is empty")
    labels = {p.label for p in pairs}
    if labels != {0, 1}:
        kind = "duplicates" if labels == {1} else "non-duplicates"
        raise PairsError(
            f"the {what} holds only {kind} ({len(pairs)} pairs): it needs both "
            "labelled duplicates and labelled non-duplicates"
        )


@dataclass(frozen=True)
class Split:
    train: list[Pair]
    validation: list[Pair]
    test: list[Pair]


def split(pairs: Sequence[Pair], *, validation: float = 0.1, test: float = 0.1) -> Split:
    """A deterministic split in which a question never appears on both sides of a boundary:
    pairs are grouped by the questions they share (connected components), and each group
    goes to one part by the hash of its first question. Adding pairs to a file moves only
    the groups they touch."""
    parent: dict[str, str] = {}

    def find(text: str) -> str:
        parent.setdefault(text, text)
        while parent[text] != text:
            parent[text] = parent[parent[text]]
            text = parent[text]
        return text

    for pair in pairs:
        first, second = find(_norm(pair.a)), find(_norm(pair.b))
        if first != second:
            parent[max(first, second)] = min(first, second)
    parts: Split = Split([], [], [])
    for pair in pairs:
        bucket = _bucket(find(_norm(pair.a)))
        if bucket < test:
            parts.test.append(pair)
        elif bucket < test + validation:
            parts.validation.append(pair)
        else:
            parts.train.append(pair)
    return parts


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def _bucket(key: str) -> float:
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def partition_by_topic(
    pairs: Sequence[Pair], vectors: np.ndarray, clients: int, *, seed: int = 0
) -> list[list[Pair]]:
    """A non-IID split: k-means on the vectors of each pair's first question, one cluster
    of topics per client. `vectors` are unit-length rows, one per pair."""
    if clients < 1:
        raise PairsError("there must be at least one client")
    if len(pairs) < clients:
        raise PairsError(f"{len(pairs)} pairs cannot be split between {clients} clients")
    assignment = kmeans(vectors, clients, seed=seed)
    parts: list[list[Pair]] = [[] for _ in range(clients)]
    for pair, cluster in zip(pairs, assignment, strict=True):
        parts[int(cluster)].append(pair)
    return parts


def kmeans(vectors: np.ndarray, k: int, *, seed: int = 0, iterations: int = 25) -> np.ndarray:
    """Spherical k-means (cosine); clusters are kept non-empty. Returns each row's cluster."""
    rng = np.random.default_rng(seed)
    centres = vectors[rng.choice(len(vectors), size=k, replace=False)].copy()
    assignment = np.zeros(len(vectors), dtype=np.int64)
    for _ in range(iterations):
        assignment = np.argmax(vectors @ centres.T, axis=1)
        for cluster in range(k):
            members = vectors[assignment == cluster]
            if len(members) == 0:  # reseed an empty cluster with the worst-fitting row
                fit = np.max(vectors @ centres.T, axis=1)
                members = vectors[[int(np.argmin(fit))]]
            centre = members.mean(axis=0)
            centres[cluster] = centre / max(float(np.linalg.norm(centre)), 1e-12)
    assignment = np.argmax(vectors @ centres.T, axis=1)
    for cluster in range(k):  # the guarantee, for tiny sets: every client gets pairs
        if not np.any(assignment == cluster):
            counts = np.bincount(assignment, minlength=k)
            donor = int(np.argmax(counts))
            assignment[int(np.flatnonzero(assignment == donor)[0])] = cluster
    return np.asarray(assignment, dtype=np.int64)


def texts(pairs: Iterable[Pair]) -> tuple[list[str], list[str], list[int]]:
    rows = list(pairs)
    return [p.a for p in rows], [p.b for p in rows], [p.label for p in rows]
