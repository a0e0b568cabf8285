"""Categories, measured on public labelled data.

1. Classification: precision and recall per category on the held-out test split of the
   labelled prompts (`categories.labelled`: arena-hard-v2, SituatedQA dev, CLINC150 test,
   CoNaLa, GPTeacher, QQP questions), rules first and then the category model, against the
   rules and prototypes alone (and an earlier policy file with `--before`); the share of
   QQP questions sent to time_sensitive, the SituatedQA dev time-sensitive questions found,
   and the cost of the step after the rules. Then a replay of ShareGPT prompts asked twice:
   which repeats each category serves, and why the others bypassed.
2. Per-category thresholds against one global threshold, on the QQP pairs: thresholds are
   calibrated (`categories.calibrate`) on one half of the pairs, and both policies are
   scored on the other half in the cache view of bench/quality.py (each query's top-1
   neighbour among the entries of its own category, served at or above the threshold).

    python -m bench.categories [--target-precision P] [--before OLD_POLICIES.toml]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
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
from categories.labelled import public_prompts
from categories.load import Acceptance, acceptance
from categories.model import load_model
from categories.policy import PolicySet, load_policies
from categories.training import scores
from embeddings.options import EmbedderOptions
from embeddings.protocol import Embedder
from embeddings.runtime import load_embedder
from embeddings.trained import shipped_dir
from gateway.cache.guard import check
from gateway.index.hnsw import HnswIndex
from gateway.settings import IndexParams


def classification(
    embedder: Embedder, policies: PolicySet, data: Path, before: PolicySet | None
) -> dict[str, object]:
    """The held-out test split of the labelled prompts (`categories.labelled`), classified
    as the gateway does: rules first, then the model (or, for comparison, the prototypes
    alone, and the rules and prototypes of an earlier policy file)."""
    rows = [r for r in public_prompts(data) if r.split == "test"]
    vectors = embed_cached(embedder, [r.text for r in rows], "category-test-split")
    model = load_model(None)
    classifiers = {"rules + model": Classifier.build(policies, embedder, model)}
    classifiers["rules + prototypes"] = Classifier.build(policies, embedder)
    if before is not None:
        classifiers["before: rules + prototypes"] = Classifier.build(before, embedder)
    names = [p.name for p in policies.policies]
    results: dict[str, object] = {}
    for label, classifier in classifiers.items():
        found = [
            classifier.classify(r.text, v).category for r, v in zip(rows, vectors, strict=True)
        ]
        result = scores([r.category for r in rows], found, names).to_dict()
        qqp = [f for r, f in zip(rows, found, strict=True) if r.source == "qqp"]
        dependent = [
            f
            for r, f in zip(rows, found, strict=True)
            if r.source == "situatedqa" and r.category == "time_sensitive"
        ]
        result["qqp_to_time_sensitive"] = sum(f == "time_sensitive" for f in qqp) / len(qqp)
        result["situatedqa_dev_time_sensitive_found"] = sum(
            f == "time_sensitive" for f in dependent
        ) / len(dependent)
        results[label] = result
    print(f"\nheld-out test split: {len(rows)} labelled prompts; precision / recall\n")
    print_table(
        ["category", "prompts", *classifiers],
        [
            [name, results["rules + model"]["per_category"][name]["prompts"]]  # type: ignore[index]
            + [
                "{precision:.3f} / {recall:.3f}".format(**r["per_category"][name])  # type: ignore[index]
                for r in results.values()
            ]
            for name in names
        ],
    )
    for key in (
        "accuracy",
        "macro_f1",
        "qqp_to_time_sensitive",
        "situatedqa_dev_time_sensitive_found",
    ):
        print(f"{key:>38}: " + "  ".join(f"{r[key]:.3f}" for r in results.values()))  # type: ignore[index]
    results["cost_us_per_request"] = _cost(classifiers["rules + model"], vectors)
    print(f"classification from the embedding: {results['cost_us_per_request']:.1f} us a request")
    return results


def _cost(classifier: Classifier, vectors: npt.NDArray[np.float32]) -> float:
    """Median time of the step after the rules (model and prototypes), per request."""
    times = []
    for vector in vectors[:2000]:
        began = time.perf_counter()
        classifier.nearest(vector)
        times.append(time.perf_counter() - began)
    return float(np.median(times) * 1e6)


def creative_repeats(data: Path, prompts: int) -> dict[str, object]:
    """A replay (`gateway replay`, simulated upstream, the model served by default) of
    real ShareGPT first turns, each asked twice: per category, how many repeats are served
    and why the others bypassed."""
    conversations = json.loads((data / "workload" / "sharegpt_prompts.json").read_text())
    firsts = [
        c["conversations"][0]["value"]
        for c in conversations
        if c["conversations"] and c["conversations"][0]["from"] == "human"
    ]
    chosen = [t for t in dict.fromkeys(firsts) if t.strip() and len(t) <= 4000][:prompts]
    with tempfile.TemporaryDirectory() as folder:
        workload = Path(folder) / "sharegpt-twice.jsonl"
        lines = [
            json.dumps({"messages": [{"role": "user", "content": text}]})
            for text in chosen + chosen
        ]
        workload.write_text("\n".join(lines))
        out = Path(folder) / "replay.json"
        subprocess.run(
            [sys.executable, "-m", "gateway.cli", "replay", str(workload), "--json", str(out)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        figures = json.loads(out.read_text())
    by_category = figures["by_category"]
    rows = [
        [
            name,
            c["requests"],
            c["hits_exact"],
            ", ".join(f"{k} {v}" for k, v in c["bypass_reasons"].items()) or "-",
        ]
        for name, c in by_category.items()
    ]
    print(f"\n{len(chosen)} ShareGPT prompts, each asked twice (`gateway replay`)\n")
    print_table(["category", "requests", "exact hits", "bypassed: why"], rows)
    return {"prompts": len(chosen), "by_category": by_category}


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
    parser.add_argument("--skip-thresholds", action="store_true")
    parser.add_argument(
        "--before", type=Path, help="an earlier policies.toml, classified for comparison"
    )
    parser.add_argument(
        "--repeats", type=int, default=500, help="ShareGPT prompts replayed twice (0: none)"
    )
    add_cache_dir(parser)
    args = parser.parse_args()
    data = shared_data()
    # The model `gateway serve` embeds with by default: the shipped adapter, int8 on a CPU.
    embedder = load_embedder(
        EmbedderOptions(cache_dir=args.cache_dir, model=shipped_dir(), int8=True)
    )
    policies = load_policies()
    before = load_policies(args.before) if args.before else None
    classifier = Classifier.build(policies, embedder, load_model(None))
    result: dict[str, object] = {"model": embedder.model_id}
    if not args.skip_classification:
        result["classification"] = classification(embedder, policies, data, before)
    if args.repeats:
        result["creative_repeats"] = creative_repeats(data, args.repeats)
    if not args.skip_thresholds:
        result["thresholds"] = thresholds_vs_global(
            embedder, classifier, policies, data, args.target_precision
        )
    write_json("categories", result)


if __name__ == "__main__":
    main()
