"""Index search latency (and build time, recall@1) at 10k / 100k / 1M entries.

Vectors are real prompt embeddings; beyond the bundled prompts, more are made by
perturbing real ones (paraphrase-like clusters), so the index sees a realistic layout.

    python -m bench.index [--sizes 10000,100000,1000000] [--queries 1000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bench.common import add_cache_dir, percentiles, print_table, write_json
from embeddings.options import EmbedderOptions
from embeddings.protocol import Vectors, embed_all
from embeddings.runtime import load_embedder
from gateway.demo import bundled_pairs
from gateway.index.hnsw import HnswIndex
from gateway.settings import IndexParams


def corpus(size: int, base: Vectors, rng: np.random.Generator) -> Vectors:
    if size <= len(base):
        return base[:size]
    parents = rng.integers(0, len(base), size - len(base))
    noise = rng.standard_normal((len(parents), base.shape[1]), dtype=np.float32) * 0.03
    extra = base[parents] + noise
    extra /= np.linalg.norm(extra, axis=1, keepdims=True)
    return np.concatenate([base, extra.astype(np.float32)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--recall-queries", type=int, default=200)
    add_cache_dir(parser)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    embedder = load_embedder(EmbedderOptions(cache_dir=args.cache_dir))
    texts = list(dict.fromkeys(t for p in bundled_pairs() for t in (p.a, p.b)))
    base = embed_all(embedder, texts[:10_000])
    held_out = embed_all(embedder, texts[10_000:])
    rng = np.random.default_rng(0)
    params = IndexParams()
    results = []
    for size in sizes:
        data = corpus(size, base, rng)
        index = HnswIndex(
            embedder.dim, model_id=embedder.model_id, params=IndexParams(initial_capacity=size)
        )
        t0 = time.perf_counter()
        for start in range(0, size, 50_000):
            index.add(
                list(range(start + 1, min(size, start + 50_000) + 1)), data[start : start + 50_000]
            )
        build_s = time.perf_counter() - t0
        queries = held_out[rng.integers(0, len(held_out), args.queries)]
        row: dict[str, float | int] = {"entries": size, "build_s": build_s}
        for k in (1, 4):
            samples = []
            for q in queries:
                t1 = time.perf_counter()
                index.search(q, k=k)
                samples.append((time.perf_counter() - t1) * 1000)
            stats = percentiles(samples)
            row[f"k{k}_p50_ms"] = stats["p50"]
            row[f"k{k}_p95_ms"] = stats["p95"]
        sample = queries[: args.recall_queries]
        truth = np.argmax(sample @ data.T, axis=1) + 1
        found = np.asarray([index.search(q, k=1)[0].entry_id for q in sample])
        row["recall_at_1"] = float(np.mean(found == truth))
        results.append(row)
        print(f"{size} entries: built in {build_s:.1f} s", flush=True)
        del index, data
    print_table(
        ["entries", "build s", "k=1 p50 ms", "k=1 p95 ms", "k=4 p50 ms", "k=4 p95 ms", "recall@1"],
        [
            [
                r["entries"],
                r["build_s"],
                r["k1_p50_ms"],
                r["k1_p95_ms"],
                r["k4_p50_ms"],
                r["k4_p95_ms"],
                r["recall_at_1"],
            ]
            for r in results
        ],
    )
    write_json("index", {"params": params.__dict__, "results": results})


if __name__ == "__main__":
    main()
