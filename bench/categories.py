"""Categories, measured on public labelled data.

1. Classification: accuracy per category and the confusion matrix, on arena-hard-v2
   (coding, math, creative writing), SituatedQA (is_dependent: time-sensitive, else
   factual) and CLINC150 (intents mapped to categories below).
2. Per-category thresholds against one global threshold, on the QQP pairs: thresholds are
   calibrated (`categories.calibrate`) on one half of the pairs, and both policies are
   scored on the other half in the cache view of bench/quality.py (each query's top-1
   neighbour among the entries of its own category, served at or above the threshold).

    python -m bench.categories [--target-precision P]
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.common import (
    add_cache_dir,
    duplicate_pairs,
    embed_cached,
    print_table,
    read_pairs,
    shared_data,
    write_json,
)
from categories.calibrate import choose, curve
from categories.classifier import Classifier
from categories.load import Acceptance, acceptance
from categories.policy import PolicySet, load_policies
from embeddings.options import EmbedderOptions
from embeddings.protocol import Embedder
from embeddings.runtime import load_embedder
from gateway.cache.guard import check
from gateway.index.hnsw import HnswIndex
from gateway.settings import IndexParams

# CLINC150 intents whose answer depends on the moment, on small talk, or on health, law or
# money; the other intents are assistant actions and personal data: `default`.
CLINC = {
    "time_sensitive": (
        "weather time date exchange_rate traffic flight_status how_busy next_holiday "
        "interest_rate travel_alert gas"
    ),
    "conversation": (
        "greeting goodbye tell_joke how_old_are_you what_is_your_name are_you_a_bot "
        "do_you_have_pets what_are_your_hobbies where_are_you_from who_made_you "
        "who_do_you_work_for meaning_of_life fun_fact thank_you what_can_i_ask_you yes no maybe"
    ),
    "sensitive": (
        "credit_score improve_credit_score taxes insurance insurance_change rollover_401k apr "
        "report_fraud vaccines w2 income credit_limit"
    ),
    "math": "calculator measurement_conversion",
}
ARENA = {"coding": "code", "math": "math", "creative_writing": "creative"}


def labelled_prompts(data: Path) -> list[tuple[str, str, str]]:
    """(source, prompt, expected category)."""
    rows: list[tuple[str, str, str]] = []
    for line in (data / "categories" / "arena_hard_v2.jsonl").read_text().split("\n"):
        if not line.strip():
            continue
        item = json.loads(line)
        rows.append(("arena_hard_v2", item["prompt"], ARENA[item["subcategory"]]))
    for line in (data / "categories" / "situatedqa_temporal_dev.jsonl").read_text().split("\n"):
        if not line.strip():
            continue
        item = json.loads(line)
        expected = "time_sensitive" if item["is_dependent"] == "yes" else "factual"
        rows.append(("situatedqa", item["question"], expected))
    intents = {i: c for c, names in CLINC.items() for i in names.split()}
    clinc = json.loads((data / "categories" / "clinc150.json").read_text())
    for text, intent in clinc["test"]:
        rows.append(("clinc150", text, intents.get(intent, "default")))
    return rows


def classification(embedder: Embedder, classifier: Classifier, data: Path) -> dict[str, object]:
    rows = labelled_prompts(data)
    vectors = embed_cached(embedder, [r[1] for r in rows], "category-prompts")
    found = [
        classifier.classify(text, vector)
        for (_, text, _), vector in zip(rows, vectors, strict=True)
    ]
    names = [p.name for p in classifier.policies.policies]
    confusion = {e: Counter[str]() for e in names}
    steps: Counter[str] = Counter()
    by_source: dict[str, list[bool]] = {}
    for (source, _, expected), got in zip(rows, found, strict=True):
        confusion[expected][got.category] += 1
        steps[got.step] += 1
        by_source.setdefault(source, []).append(got.category == expected)
    print(f"\nclassification of {len(rows)} labelled prompts (rows: expected, columns: found)\n")
    table = []
    for expected in names:
        total = sum(confusion[expected].values())
        if not total:
            continue
        right = confusion[expected][expected]
        table.append([expected, total, right / total, *(confusion[expected][n] for n in names)])
    print_table(["expected", "prompts", "accuracy", *names], table)
    correct = sum(confusion[e][e] for e in names)
    print(f"\noverall accuracy {correct / len(rows):.3f}; decided by {dict(steps)}")
    for source, hits in by_source.items():
        print(f"  {source}: {sum(hits) / len(hits):.3f} of {len(hits)}")
    found_totals = Counter(g.category for g in found)
    precision = {n: confusion[n][n] / found_totals[n] if found_totals[n] else None for n in names}
    return {
        "prompts": len(rows),
        "accuracy": correct / len(rows),
        "steps": dict(steps),
        "by_source": {s: sum(h) / len(h) for s, h in by_source.items()},
        "per_category": {
            str(row[0]): {"prompts": row[1], "recall": row[2], "precision": precision[str(row[0])]}
            for row in table
        },
        "confusion": {e: dict(c) for e, c in confusion.items() if c},
    }


def cache_view(
    pairs: list[dict[str, Any]],
    vectors: dict[str, npt.NDArray[np.float32]],
    categories: dict[str, str],
    policies: PolicySet | None,
    global_threshold: float = 0.93,
) -> dict[str, Any]:
    """Store side a, ask with side b, with the guard, as the gateway serves: with `policies`,
    one index per category, each query searching every enabled category at the stricter of
    its own and the entry's threshold (`categories.load.acceptance`, as the gateway);
    without, one index and one threshold."""
    duplicates = duplicate_pairs(pairs)
    entries = list(dict.fromkeys(str(p["a"]) for p in pairs))
    groups: dict[str, list[str]] = {}
    for text in entries:
        groups.setdefault(categories[text] if policies else "all", []).append(text)
    indexes = {}
    for name, texts in groups.items():
        if policies is not None and not policies[name].enabled:
            continue  # never stored
        index = HnswIndex(384, model_id="bench", params=IndexParams(initial_capacity=len(texts)))
        index.add(list(range(len(texts))), np.stack([vectors[t] for t in texts]))
        indexes[name] = (index, texts)
    hits = false = 0
    positives = sum(p["label"] == 1 for p in pairs)
    per: dict[str, list[int]] = {}
    for pair in pairs:
        query = str(pair["b"])
        own = categories[query]
        if policies is None:
            accept = {"all": Acceptance(global_threshold, guard=True)}
        elif not policies[own].enabled:
            continue
        else:
            accept = acceptance(policies, policies[own], 0.0, None)
        found = sorted(
            (
                (n.similarity, texts[n.entry_id], accept[c].guard)
                for c, (index, texts) in indexes.items()
                for n in index.search(vectors[query], k=1)
                if c in accept and n.similarity >= accept[c].threshold
            ),
            reverse=True,
        )
        served = next((t for _, t, guard in found if not guard or check(query, t).ok), None)
        if served is None:
            continue
        right = served == query or (served, query) in duplicates
        hits += 1
        false += not right
        tally = per.setdefault(own, [0, 0])
        tally[0] += 1
        tally[1] += not right
    return {
        "queries": len(pairs),
        "hits": hits,
        "false_hits": false,
        "precision": (hits - false) / hits if hits else 1.0,
        "recall": (hits - false) / positives if positives else 0.0,
        "hit_rate": hits / len(pairs),
        "per_category": {c: {"hits": t[0], "false_hits": t[1]} for c, t in sorted(per.items())},
    }


def allocate(
    pairs: list[dict[str, Any]],
    vectors: dict[str, npt.NDArray[np.float32]],
    categories: dict[str, str],
    policies: PolicySet,
    *,
    global_threshold: float,
    floors: dict[str, float],
) -> dict[str, float]:
    """Per-category thresholds that serve as many hits as one global threshold, lowering
    (from 0.99, by 0.01) the category whose next step adds hits at the best precision:
    equal marginal precision, the most precise allocation for a number of hits. `floors`
    keeps strict categories strict."""
    duplicates = duplicate_pairs(pairs)
    entries = list(dict.fromkeys(p["a"] for p in pairs))
    index = HnswIndex(384, model_id="bench", params=IndexParams(initial_capacity=len(entries)))
    index.add(list(range(len(entries))), np.stack([vectors[t] for t in entries]))
    best: dict[str, list[tuple[float, bool]]] = {}
    for pair in pairs:
        query = pair["b"]
        for neighbor in index.search(vectors[query], k=4):
            answer = entries[neighbor.entry_id]
            if check(query, answer).ok:
                correct = answer == query or (answer, query) in duplicates
                best.setdefault(categories[query], []).append((neighbor.similarity, correct))
                break
    names = [p.name for p in policies.policies if p.enabled and p.name in best]
    sims = {n: np.asarray([s for s, _ in best[n]]) for n in names}
    right = {n: np.asarray([r for _, r in best[n]]) for n in names}

    def served(name: str, threshold: float) -> tuple[int, int]:
        accepted = sims[name] >= threshold - 1e-9
        return int(accepted.sum()), int((accepted & right[name]).sum())

    target = sum(served(n, global_threshold)[0] for n in names)
    chosen = dict.fromkeys(names, 0.99)
    while sum(served(n, chosen[n])[0] for n in names) < target:
        steps = []
        for name in names:
            lower = round(chosen[name] - 0.01, 2)
            if lower < floors.get(name, 0.80):
                continue
            (h1, t1), (h2, t2) = served(name, chosen[name]), served(name, lower)
            if h2 > h1:
                steps.append(((t2 - t1) / (h2 - h1), name))
        if not steps:
            break
        chosen[max(steps)[1]] = round(chosen[max(steps)[1]] - 0.01, 2)
    return chosen


def thresholds_vs_global(
    embedder: Embedder, classifier: Classifier, policies: PolicySet, data: Path, target: float
) -> dict[str, object]:
    pairs = read_pairs(data / "qqp_pairs.jsonl")
    texts = sorted({t for p in pairs for t in (p["a"], p["b"])})
    matrix = embed_cached(embedder, texts, "qqp")
    vectors = dict(zip(texts, matrix, strict=True))
    categories = {t: classifier.classify(t, vectors[t]).category for t in texts}
    rng = np.random.default_rng(7)
    order = rng.permutation(len(pairs))
    train = [pairs[i] for i in order[: len(pairs) // 2]]
    test = [pairs[i] for i in order[len(pairs) // 2 :]]

    def calibrated(name: str | None) -> tuple[float | None, int]:
        chosen = [p for p in train if name is None or categories[p["a"]] == name]
        sim = np.asarray([float(vectors[p["a"]] @ vectors[p["b"]]) for p in chosen])
        labels = np.asarray([p["label"] == 1 for p in chosen])
        point = choose(curve(sim, labels), target) if len(chosen) else None
        return (point.threshold if point else None), len(chosen)

    names = [p.name for p in policies.policies]
    calibrated_rows = []
    for name in names:
        value, count = calibrated(name)
        calibrated_rows.append(
            [
                name,
                count,
                "-" if value is None else f"{value:.2f}",
                f"{policies[name].threshold:.2f}" if policies[name].enabled else "off",
            ]
        )
    overall, _ = calibrated(None)
    floors = {"sensitive": 0.95}  # strict by design: a wrong medical or legal answer harms
    allocated = allocate(train, vectors, categories, policies, global_threshold=0.93, floors=floors)
    for row in calibrated_rows:
        row.insert(3, f"{allocated[row[0]]:.2f}" if row[0] in allocated else "-")
    print(
        f"\nthresholds from half the QQP pairs: pair view (`gateway calibrate`, precision >= "
        f"{target}) and cache view (equal marginal precision at the hits of 0.93, {floors})\n"
    )
    print_table(["category", "train pairs", "pair view", "cache view", "shipped"], calibrated_rows)
    shipped = policies["default"].threshold
    runs = {
        f"one global threshold {shipped:.2f}": cache_view(test, vectors, categories, None, shipped),
        "shipped category policies": cache_view(test, vectors, categories, policies),
    }
    print(f"\ncache view on the other half ({len(test)} queries), guard on\n")
    print_table(
        ["policy", "hits", "false", "precision", "recall", "hit rate"],
        [
            [k, r["hits"], r["false_hits"], r["precision"], r["recall"], r["hit_rate"]]
            for k, r in runs.items()
        ],
    )
    print("\nper category (the query's): hits / false hits / precision\n")
    rows = []
    for name in names:
        cells: list[object] = [name]
        for run in runs.values():
            tally = run["per_category"].get(name, {"hits": 0, "false_hits": 0})
            hits, false = tally["hits"], tally["false_hits"]
            cells += [hits, false, (hits - false) / hits if hits else "-"]
        rows.append(cells)
    headers = ["category"]
    for label in ("global", "policies"):
        headers += [f"{label} hits", f"{label} false", f"{label} precision"]
    print_table(headers, rows)
    share = Counter(categories[p["b"]] for p in test)
    print(f"\nquery categories: {dict(share.most_common())}")
    return {
        "target_precision": target,
        "calibrated": {
            r[0]: {"train_pairs": r[1], "threshold": r[2], "shipped": r[3]} for r in calibrated_rows
        },
        "calibrated_all": overall,
        "runs": runs,
        "query_categories": dict(share),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target-precision", type=float, default=0.8)
    parser.add_argument("--skip-classification", action="store_true")
    add_cache_dir(parser)
    args = parser.parse_args()
    data = shared_data()
    embedder = load_embedder(EmbedderOptions(cache_dir=args.cache_dir))
    policies = load_policies()
    classifier = Classifier.build(policies, embedder)
    result: dict[str, object] = {"model": embedder.model_id}
    if not args.skip_classification:
        result["classification"] = classification(embedder, classifier, data)
    result["thresholds"] = thresholds_vs_global(
        embedder, classifier, policies, data, args.target_precision
    )
    write_json("categories", result)


if __name__ == "__main__":
    main()
