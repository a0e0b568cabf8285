from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from federated.augment import contrast, contrast_pairs
from federated.pairs import (
    Pair,
    PairsError,
    check_trainable,
    kmeans,
    partition_by_topic,
    read_pairs,
    split,
    write_pairs,
)

GOOD = '{"a": "How do I cook rice?", "b": "What is the way to cook rice?", "label": 1}'


def write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_malformed_lines_are_reported_with_numbers_and_reasons(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        GOOD,
        "not json",
        '["a", "b"]',
        '{"a": "", "b": "x", "label": 1}',
        '{"a": "x", "b": "y", "label": 2}',
        '{"a": "x", "b": "y", "label": true}',
        "",
        '{"a": "x", "b": "y"}',
        GOOD,
    )
    read = read_pairs(path)
    assert len(read.pairs) == 2
    assert [(p.line, p.reason) for p in read.problems] == [
        (2, "not JSON (Expecting value)"),
        (3, "not a JSON object"),
        (4, '"a" must be a non-empty string'),
        (5, '"label" must be 0 or 1'),
        (6, '"label" must be 0 or 1'),
        (8, '"label" must be 0 or 1'),
    ]
    with pytest.raises(PairsError, match=r"pairs.jsonl:2: not JSON"):
        read_pairs(path, strict=True)
    written = tmp_path / "written.jsonl"
    write_pairs(written, read.pairs)
    assert read_pairs(written, strict=True).pairs == read.pairs  # what is written reads back
    # a paraphrase file: a missing label means "the same question"
    assert read_pairs(write(tmp_path, '{"a": "x", "b": "y"}'), default_label=1).pairs == [
        Pair("x", "y", 1)
    ]


def test_an_empty_or_one_class_set_is_refused() -> None:
    with pytest.raises(PairsError, match="empty"):
        check_trainable([])
    with pytest.raises(PairsError, match="only duplicates"):
        check_trainable([Pair("a", "b", 1)] * 3)
    with pytest.raises(PairsError, match="only non-duplicates"):
        check_trainable([Pair("a", "b", 0)])
    check_trainable([Pair("a", "b", 1), Pair("a", "c", 0)])  # both classes: accepted


def test_the_split_never_shares_a_question_between_parts() -> None:
    rng = random.Random(3)
    questions = [f"question number {i}" for i in range(600)]
    pairs = [
        Pair(rng.choice(questions), rng.choice(questions), rng.randint(0, 1)) for _ in range(150)
    ]
    parts = split(pairs)
    assert len(parts.train) + len(parts.validation) + len(parts.test) == len(pairs)
    assert parts.validation and parts.test and len(parts.train) > len(parts.test)

    def seen(part: list[Pair]) -> set[str]:
        return {t.lower() for p in part for t in (p.a, p.b)}

    assert not seen(parts.train) & seen(parts.test)
    assert not seen(parts.train) & seen(parts.validation)
    assert not seen(parts.validation) & seen(parts.test)
    assert split(list(reversed(pairs))).test == list(reversed(parts.test))  # deterministic


def test_topic_partitions_follow_the_clusters() -> None:
    rng = np.random.default_rng(0)
    centres = np.eye(3, 8, dtype=np.float32)
    vectors = np.concatenate([c + 0.05 * rng.standard_normal((20, 8)) for c in centres])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    clusters = kmeans(vectors.astype(np.float32), 3)
    # each true topic lands whole in one cluster, and the three are different
    owners = [set(clusters[i * 20 : (i + 1) * 20].tolist()) for i in range(3)]
    assert all(len(o) == 1 for o in owners) and len(set.union(*owners)) == 3
    pairs = [Pair(f"q{i}", f"r{i}", i % 2) for i in range(60)]
    parts = partition_by_topic(pairs, vectors.astype(np.float32), 3)
    assert sorted(len(p) for p in parts) == [20, 20, 20]
    with pytest.raises(PairsError):
        partition_by_topic(pairs[:2], vectors[:2].astype(np.float32), 3)


def test_contrast_pairs_change_one_word_or_number() -> None:
    rng = random.Random(0)
    assert contrast("How do I turn on dark mode?", rng) == "How do I turn off dark mode?"
    assert contrast("Enable the firewall", rng) == "Disable the firewall"
    changed = contrast("What is 15 times 3?", random.Random(1))
    assert changed is not None and changed != "What is 15 times 3?"
    assert contrast("Why is the sky blue?", rng) is None
    made = contrast_pairs([Pair("Sort in ascending order", "Why is the sky blue?", 1)], 10)
    assert made == [Pair("Sort in ascending order", "Sort in descending order", 0)]
