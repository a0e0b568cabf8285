"""Embedding latency and throughput: batch 1/8/32/128, short and long prompts, fp32/int8;
and the models the gateway can serve (base, trained, trained compressed) side by side,
interleaved call by call so that the machine's noise falls on all of them alike.

python -m bench.embeddings [--repeat N] [--models-only]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench.common import add_cache_dir, percentiles, print_table, shared_data, write_json
from embeddings.options import EmbedderOptions
from embeddings.protocol import Embedder
from embeddings.runtime import OnnxEmbedder, load_embedder, load_serving
from embeddings.trained import shipped_dir
from gateway.demo import bundled_pairs

BATCHES = (1, 8, 32, 128)


def prompt_sets(embedder: OnnxEmbedder) -> dict[str, list[str]]:
    short = [p.b for p in bundled_pairs()][:512]
    arena = shared_data() / "categories" / "arena_hard_v2.jsonl"
    long_ = [json.loads(line)["prompt"] for line in arena.read_text().split("\n") if line.strip()]
    long_ = [t for t in long_ if embedder.token_counts([t])[0] >= 200][:512]
    return {"short": short, "long": long_}


def measure(embedder: OnnxEmbedder, texts: list[str], batch: int, repeat: int) -> dict[str, float]:
    embedder.embed(texts[:batch])  # warm-up
    samples: list[float] = []
    for i in range(repeat):
        start = (i * batch) % max(1, len(texts) - batch)
        chunk = texts[start : start + batch]
        t0 = time.perf_counter()
        embedder.embed(chunk)
        samples.append((time.perf_counter() - t0) * 1000)
    stats = percentiles(samples)
    stats["texts_per_s"] = batch / (stats["mean"] / 1000)
    return stats


def compare_models(cache_dir: Path, texts: list[str], calls: int) -> list[dict[str, object]]:
    """Batch-1 latency of each servable model, one call of each in turn."""
    models: dict[str, Embedder] = {
        "base": load_embedder(EmbedderOptions(cache_dir=cache_dir)),
        "trained": load_embedder(EmbedderOptions(cache_dir=cache_dir, model=shipped_dir())),
        "trained, compressed": load_serving(
            EmbedderOptions(cache_dir=cache_dir, model=shipped_dir(), compress=True)
        ),
    }
    samples: dict[str, list[float]] = {name: [] for name in models}
    for i in range(calls + 10):
        for name, embedder in models.items():
            t0 = time.perf_counter()
            embedder.embed([texts[i % len(texts)]])
            if i >= 10:  # after a warm-up
                samples[name].append((time.perf_counter() - t0) * 1000)
    rows = [
        {"model": name, "dim": models[name].dim, **percentiles(samples[name])} for name in models
    ]
    print_table(
        ["model", "dim", "p50 ms", "p95 ms"],
        [[r["model"], r["dim"], r["p50"], r["p95"]] for r in rows],
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--models-only", action="store_true", help="only the model comparison")
    add_cache_dir(parser)
    args = parser.parse_args()
    short = [p.b for p in bundled_pairs()][:512]
    print("served models, batch 1, short prompts, interleaved\n")
    models = compare_models(args.cache_dir, short, max(100, args.repeat * 10))
    if args.models_only:
        write_json("embeddings_models", {"models": models})
        return

    results = []
    for int8 in (False, True):
        embedder = load_embedder(EmbedderOptions(cache_dir=args.cache_dir, int8=int8))
        sets = prompt_sets(embedder)
        for kind, texts in sets.items():
            tokens = sum(embedder.token_counts(texts)) / len(texts)
            for batch in BATCHES:
                repeat = max(3, args.repeat if batch <= 32 else args.repeat // 4)
                stats = measure(embedder, texts, batch, repeat)
                results.append(
                    {
                        "variant": "int8" if int8 else "fp32",
                        "provider": embedder.provider,
                        "prompts": kind,
                        "mean_tokens": round(tokens, 1),
                        "batch": batch,
                        **stats,
                    }
                )
    print_table(
        ["variant", "prompts", "tokens", "batch", "p50 ms", "p95 ms", "texts/s"],
        [
            [
                r["variant"],
                r["prompts"],
                r["mean_tokens"],
                r["batch"],
                r["p50"],
                r["p95"],
                round(r["texts_per_s"], 1),
            ]
            for r in results
        ],
    )
    write_json("embeddings", {"results": results, "models": models})


if __name__ == "__main__":
    main()
