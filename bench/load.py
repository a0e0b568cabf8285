"""Load adaptation, simulated: the Azure LLM arrival trace replayed against a
capacity-limited upstream, with and without adapting thresholds and TTLs to load.

Arrival times and output lengths come from `workload/azure_conv.csv` (one real hour);
the prompts from the QQP pairs (each pair's first question early, its second later), so
every served answer can be judged against the labels. Time is simulated (an event loop
over arrival and completion times), everything else is the gateway's own: the classifier,
the category policies, `LoadMonitor`, `adapt`, the stricter-of-two acceptance across
category indexes, HNSW indexes, the guard and per-category TTLs.

The upstream serves `--capacity` requests at once, each taking 0.3 s plus 20 ms per output
token; the rest queue. A request "reaches the overloaded model" when it is sent while the
upstream is full (it queues).

    python -m bench.load [--capacity N] [--limit N]
"""

from __future__ import annotations

import argparse
import csv
import heapq
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import (
    add_cache_dir,
    duplicate_pairs,
    embed_cached,
    percentiles,
    print_table,
    read_pairs,
    shared_data,
    write_json,
)
from categories.classifier import Classifier
from categories.load import LoadMonitor, LoadSettings, acceptance, adapt
from categories.policy import PolicySet, load_policies
from embeddings.options import EmbedderOptions
from embeddings.runtime import load_embedder
from gateway.cache.guard import check
from gateway.index.hnsw import HnswIndex
from gateway.settings import IndexParams

FIRST_TOKEN_S = 0.3
PER_TOKEN_S = 0.02
MODEL = "upstream"


@dataclass
class Run:
    requests: int = 0
    hits: int = 0
    false_hits: int = 0
    upstream: int = 0
    overloaded: int = 0  # sent while the upstream was full
    latencies: list[float] = field(default_factory=list)
    thresholds: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "hits": self.hits,
            "false_hits": self.false_hits,
            "false_hit_rate": self.false_hits / self.hits if self.hits else 0.0,
            "reached_model": self.upstream / self.requests,
            "reached_overloaded_model": self.overloaded / self.requests,
            "miss_latency_s": percentiles(self.latencies) if self.latencies else {},
            "mean_threshold_default": float(np.mean(self.thresholds)) if self.thresholds else 0,
        }


def arrivals(path: Path, limit: int) -> list[tuple[float, int]]:
    """(seconds since the first arrival, output tokens)."""
    rows = []
    with path.open() as handle:
        for row in csv.DictReader(handle):
            stamp = datetime.fromisoformat(row["TIMESTAMP"][:26])
            rows.append((stamp.timestamp(), int(row["GeneratedTokens"])))
            if limit and len(rows) >= limit:
                break
    start = rows[0][0]
    return [(t - start, tokens) for t, tokens in rows]


def prompt_stream(pairs: list[dict[str, Any]], count: int, seed: int = 3) -> list[str]:
    """`count` prompts: each pair's `a`, and later its `b`."""
    rng = np.random.default_rng(seed)
    chosen = [pairs[i] for i in rng.permutation(len(pairs))[: count // 2]]
    keyed = []
    for pair in chosen:
        first = float(rng.random())
        keyed.append((first, pair["a"]))
        keyed.append((first + float(rng.random()) * (1 - first), pair["b"]))
    return [text for _, text in sorted(keyed)][:count]


def simulate(
    trace: list[tuple[float, int]],
    prompts: list[str],
    vectors: dict[str, np.ndarray],
    categories: dict[str, str],
    duplicates: set[tuple[str, str]],
    policies: PolicySet,
    *,
    capacity: int,
    adaptive: bool,
) -> Run:
    monitor = LoadMonitor(LoadSettings(max_inflight=capacity, enabled=adaptive))
    indexes: dict[str, HnswIndex] = {}
    stored: dict[str, list[tuple[str, float]]] = {}  # category -> [(text, expires)]
    slots: list[float] = [0.0] * capacity  # when each upstream slot is free
    completions: list[tuple[float, float, str, str]] = []  # (done, latency, text, category)
    run = Run()
    for (now, tokens), text in zip(trace, prompts, strict=False):
        while completions and completions[0][0] <= now:
            done, latency, answered, category = heapq.heappop(completions)
            monitor.finished(MODEL, latency, now=done)
            ttl = adapt(policies[category], monitor.load(MODEL, done)).ttl_seconds
            index = indexes.setdefault(
                category, HnswIndex(384, model_id="sim", params=IndexParams(initial_capacity=1024))
            )
            entries = stored.setdefault(category, [])
            index.add([len(entries)], vectors[answered].reshape(1, -1))
            entries.append((answered, done + ttl))
        run.requests += 1
        own = policies[categories[text]]
        if not own.enabled:
            served = None
        else:
            accept = acceptance(policies, own, monitor.load(MODEL, now), None)
            if own.name == "default":
                run.thresholds.append(accept[own.name].threshold)
            found = []
            for category, index in indexes.items():
                if category not in accept:
                    continue
                for n in index.search(vectors[text], k=4):
                    answer, expires = stored[category][n.entry_id]
                    if n.similarity >= accept[category].threshold and expires > now:
                        found.append((n.similarity, answer, accept[category].guard))
            ok = (
                a for _, a, guard in sorted(found, reverse=True) if not guard or check(text, a).ok
            )
            served = next(ok, None)
        if served is not None:
            run.hits += 1
            run.false_hits += not (served == text or (served, text) in duplicates)
            continue
        run.upstream += 1
        free = heapq.heappop(slots)
        if free > now:
            run.overloaded += 1
        start = max(now, free)
        done = start + FIRST_TOKEN_S + PER_TOKEN_S * tokens
        heapq.heappush(slots, done)
        monitor.started(MODEL)
        run.latencies.append(done - now)
        if own.enabled:
            heapq.heappush(completions, (done, done - now, text, own.name))
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--capacity", type=int, default=0, help="0: 110%% of the mean demand")
    parser.add_argument("--limit", type=int, default=0)
    add_cache_dir(parser)
    args = parser.parse_args()
    data = shared_data()
    trace = arrivals(data / "workload" / "azure_conv.csv", args.limit)
    pairs = read_pairs(data / "qqp_pairs.jsonl")
    duplicates = duplicate_pairs(pairs)
    prompts = prompt_stream(pairs, len(trace))
    embedder = load_embedder(EmbedderOptions(cache_dir=args.cache_dir))
    texts = sorted({t for p in pairs for t in (p["a"], p["b"])})
    vectors = dict(zip(texts, embed_cached(embedder, texts, "qqp"), strict=True))
    policies = load_policies()
    classifier = Classifier.build(policies, embedder)
    categories = {t: classifier.classify(t, vectors[t]).category for t in set(prompts)}
    duration = trace[-1][0] - trace[0][0]
    demand = sum(FIRST_TOKEN_S + PER_TOKEN_S * tokens for _, tokens in trace) / duration
    capacity = args.capacity or max(1, round(1.1 * demand))
    print(
        f"{len(trace)} arrivals over {duration / 60:.1f} min; mean demand {demand:.1f} "
        f"concurrent requests; upstream capacity {capacity}"
    )
    runs = {}
    for adaptive in (False, True):
        run = simulate(
            trace,
            prompts,
            vectors,
            categories,
            duplicates,
            policies,
            capacity=capacity,
            adaptive=adaptive,
        )
        runs["adaptive" if adaptive else "fixed"] = run.summary()
    print()
    print_table(
        [
            "run",
            "hits",
            "false hits",
            "false-hit rate",
            "reached model",
            "reached overloaded",
            "miss p50 s",
            "miss p95 s",
            "mean default threshold",
        ],
        [
            [
                name,
                r["hits"],
                r["false_hits"],
                r["false_hit_rate"],
                r["reached_model"],
                r["reached_overloaded_model"],
                r["miss_latency_s"]["p50"],
                r["miss_latency_s"]["p95"],
                r["mean_threshold_default"],
            ]
            for name, r in runs.items()
        ],
    )
    write_json(
        "load",
        {
            "arrivals": len(trace),
            "duration_s": duration,
            "demand": demand,
            "capacity": capacity,
            "runs": runs,
        },
    )


if __name__ == "__main__":
    main()
