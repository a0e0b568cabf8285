"""Cache quality on labelled question pairs: store one side, ask with the other.

For every pair, side `a` is a cache entry and side `b` a query; the top-1 neighbour of `b`
is served when its cosine similarity clears the threshold. A served answer is right only
when the pair is a labelled duplicate and the neighbour is its own `a`; every other served
answer is a false hit. Recall counts the duplicates that were served right.

    python -m bench.quality [--pairs PATH] [--limit N]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bench.common import (
    add_cache_dir,
    duplicate_pairs,
    print_table,
    read_pairs,
    shared_data,
    write_json,
)
from embeddings.options import EmbedderOptions
from embeddings.protocol import embed_all
from embeddings.runtime import load_embedder
from embeddings.trained import model_dir
from federated.evaluate import BETA, Scores, score
from gateway.cache.guard import check
from gateway.index.hnsw import HnswIndex
from gateway.settings import IndexParams


def sweep(
    title: str,
    similarity: npt.NDArray[np.float64],
    correct: npt.NDArray[np.bool_],
    positives: int,
) -> tuple[list[Scores], Scores]:
    """Scores every 0.01 from 0.70 to 0.95; prints every 0.05 and the best F0.5."""
    fine = [score(similarity, correct, positives, t) for t in np.arange(0.70, 0.9501, 0.01)]
    best = max(fine, key=lambda s: s.f_beta)
    print(f"\n{title}\n")
    print_table(
        ["threshold", "served", "false", "precision", "recall", "F0.5"],
        [
            [f"{s.threshold:.2f}", s.hits, s.false_hits, s.precision, s.recall, s.f_beta]
            for s in fine
            if round(s.threshold * 100) % 5 == 0
        ],
    )
    print(
        f"\nbest F0.5 {best.f_beta:.4f} at threshold {best.threshold:.2f} "
        f"(precision {best.precision:.4f}, recall {best.recall:.4f})"
    )
    return fine, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=Path, default=None)
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--model", default="trained", help="trained, base or a model directory")
    add_cache_dir(parser)
    args = parser.parse_args()
    path = args.pairs or shared_data() / "qqp_pairs.jsonl"
    pairs = read_pairs(path)
    if args.limit:
        pairs = pairs[: args.limit]

    embedder = load_embedder(EmbedderOptions(cache_dir=args.cache_dir, model=model_dir(args.model)))
    entries = list(dict.fromkeys(p["a"] for p in pairs))
    entry_id = {text: i + 1 for i, text in enumerate(entries)}
    index = HnswIndex(
        embedder.dim, model_id=embedder.model_id, params=IndexParams(initial_capacity=len(entries))
    )
    index.add(list(entry_id.values()), embed_all(embedder, entries))
    queries = embed_all(embedder, [p["b"] for p in pairs])

    duplicates = duplicate_pairs(pairs)
    similarity = np.empty(len(pairs))
    correct = np.zeros(len(pairs), dtype=bool)
    guarded = np.ones(len(pairs), dtype=bool)  # the guard lets the top-1 answer through
    for i, (pair, query) in enumerate(zip(pairs, queries, strict=True)):
        nearest = index.search(query, k=1)[0]
        similarity[i] = nearest.similarity
        served = entries[nearest.entry_id - 1]
        correct[i] = served == pair["b"] or (served, pair["b"]) in duplicates
        guarded[i] = check(pair["b"], served).ok
    positives = sum(p["label"] == 1 for p in pairs)
    labels = np.asarray([p["label"] == 1 for p in pairs])
    a_vectors = embed_all(embedder, [p["a"] for p in pairs])
    pair_similarity = np.sum(a_vectors * queries, axis=1).astype(np.float64)

    print(
        f"{len(pairs)} pairs ({positives} duplicates), {len(entries)} cache entries, "
        f"model {embedder.model_id}"
    )
    fine, best = sweep(
        "cache: top-1 neighbour served at or above the threshold", similarity, correct, positives
    )
    guard_fine, guard_best = sweep(
        "with the guard (gateway/guard.py) on the top-1 candidate "
        f"({int(np.sum(~guarded))} candidates turned down)",
        np.where(guarded, similarity, -2.0),
        correct,
        positives,
    )
    pair_fine, pair_best = sweep(
        "pair classification: cosine(a, b) >= threshold against the label",
        pair_similarity,
        labels,
        positives,
    )
    write_json(
        "quality",
        {
            "data": str(path),
            "pairs": len(pairs),
            "duplicates": positives,
            "entries": len(entries),
            "model": embedder.model_id,
            "beta": BETA,
            "thresholds": [s.__dict__ for s in fine],
            "best": best.__dict__,
            "guard_thresholds": [s.__dict__ for s in guard_fine],
            "guard_best": guard_best.__dict__,
            "pair_thresholds": [s.__dict__ for s in pair_fine],
            "pair_best": pair_best.__dict__,
        },
    )


if __name__ == "__main__":
    main()
