"""Routing misses between a small and a large model, simulated on the Azure arrival trace.

Arrival times and token counts come from `workload/azure_conv.csv` (one real hour); the
prompts, in arrival order, from the GPTeacher instructions with GPT-4 answers
(`incontext/`, code and role-play), so that near neighbours are real ones. Every request is
a miss (the hit tier is measured by bench/quality.py and bench/load.py); what is compared is
where misses go:

- always-large, always-small;
- load-only: the gateway's router with no examples (the small model's prior alone);
- routing with examples: the router with the in-context examples the gateway would select
  from the large answers stored so far (real embeddings, a real HNSW index, the selection
  and the guard of `gateway.cache.examples`, utility 0.5: nothing learned yet).

Time is simulated (an event loop over arrival and completion times); the decisions are the
gateway's own (`gateway.routing.decide`, `LoadMonitor` with each model's capacity). Each
upstream serves its capacity at once and queues the rest; a request is "sent into a full
upstream" when it arrives while that upstream is full. Costs are LiteLLM's prices of
gpt-4o-mini and gpt-4o for the trace's tokens (examples add prompt tokens). The quality
column is the router's own estimate of acceptable small answers, not a measurement: with the
route's default qualities (assumed for a capable small model such as gpt-4o-mini), and, when
`bench/results/incontext.json` exists, again with the qualities bench/incontext.py measured
for a real small model (SmolLM2-135M, on the policy's dataset): what the same router does
with a weak small model.

A second part times what examples add to a miss in the gateway itself: the semantic lookup
of `SemanticCache` on a SQLite store with and without fetching example candidates, plus the
selection and formatting, interleaved (no second embedding: the lookup's vector is reused).

    python -m bench.routing [--limit N] [--large-capacity N]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import dataclasses
import heapq
import json
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import (
    RESULTS,
    add_cache_dir,
    embed_cached,
    percentiles,
    print_table,
    shared_data,
    write_json,
)
from categories.load import LoadMonitor, LoadSettings, acceptance
from categories.policy import Policy, load_policies
from embeddings.options import EmbedderOptions
from embeddings.runtime import load_embedder
from gateway.cache.examples import Example, ExampleLimits, choose, with_examples
from gateway.cache.keys import parse_chat
from gateway.cache.semantic import SemanticCache
from gateway.index.hnsw import HnswIndex
from gateway.routing import Route, decide, estimate
from gateway.settings import IndexParams, ModelSettings, RouteSettings
from gateway.store import open_store
from gateway.store.queries import NewEntry, Partition
from gateway.upstream import price

SMALL = ModelSettings(name="small", litellm_model="gpt-4o-mini")
LARGE = ModelSettings(name="large", litellm_model="gpt-4o", tier="large")
# Service time: first token plus per output token; the small model is ~3x faster.
SERVICE = {"small": (0.15, 0.006), "large": (0.4, 0.02)}
STRATEGIES = ("always-large", "always-small", "load-only", "with-examples")
DATASETS = {"code": "code"}  # the incontext.json set whose qualities a category's run uses


def measured(route: Route, category: str) -> Route | None:
    """The route with the small-model qualities bench/incontext.py measured, if it ran."""
    path = RESULTS / "incontext.json"
    if not path.exists():
        return None
    results = json.loads(path.read_text())["results"]
    acceptable = results[DATASETS.get(category, "all")]["acceptable"]
    settings = dataclasses.replace(
        route.settings,
        small_quality=acceptable["none"],
        small_quality_examples=acceptable["examples"],
    )
    return dataclasses.replace(route, settings=settings)


def arrivals(path: Path, limit: int) -> list[tuple[float, int, int]]:
    """(seconds since the first arrival, prompt tokens, output tokens)."""
    rows = []
    with path.open() as handle:
        for row in csv.DictReader(handle):
            stamp = datetime.fromisoformat(row["TIMESTAMP"][:26]).timestamp()
            rows.append((stamp, int(row["ContextTokens"]), int(row["GeneratedTokens"])))
            if limit and len(rows) >= limit:
                break
    start = rows[0][0]
    return [(t - start, prompt, out) for t, prompt, out in rows]


def instructions(data: Path, seed: int) -> list[tuple[str, str]]:
    """(prompt, GPT-4 answer) of both GPTeacher sets, shuffled, distinct prompts."""
    items: dict[str, str] = {}
    for name in ("gpteacher_codegen-instruct.json",
                 "gpteacher_roleplay-simple-deduped-roleplay-instruct.json"):  # fmt: skip
        for item in json.loads((data / "incontext" / name).read_text()):
            prompt = item["instruction"] + (f"\n\n{item['input']}" if item.get("input") else "")
            if item.get("response"):
                items.setdefault(prompt, item["response"])
    pairs = sorted(items.items())
    order = np.random.default_rng(seed).permutation(len(pairs))
    return [pairs[i] for i in order]


@dataclass
class Run:
    latencies: list[float] = field(default_factory=list)
    cost: float = 0.0
    small: int = 0
    large: int = 0
    into_full: int = 0
    loaded: int = 0  # misses decided while the large model was past its knee (load > 0)
    loaded_small: int = 0
    with_examples: int = 0
    quality: list[float] = field(default_factory=list)  # router's estimate per small answer

    def summary(self, baseline_cost: float | None = None) -> dict[str, Any]:
        total = self.small + self.large
        return {
            "requests": total,
            "cost_usd": round(self.cost, 4),
            "cost_vs_always_large": self.cost / baseline_cost if baseline_cost else None,
            "latency_s": percentiles(self.latencies),
            "offloaded_share": self.small / total,
            "offloaded_share_when_large_loaded": (
                self.loaded_small / self.loaded if self.loaded else None
            ),
            "decided_while_large_loaded": self.loaded,
            "sent_into_full_upstream": self.into_full,
            "small_with_examples": self.with_examples,
            "estimated_acceptable_small": float(np.mean(self.quality)) if self.quality else None,
        }


class Upstream:
    """`capacity` slots; the rest queue in arrival order."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.slots = [0.0] * capacity
        self.running: list[float] = []  # completion times of requests sent, not yet done

    def inflight(self, now: float) -> int:
        while self.running and self.running[0] <= now:
            heapq.heappop(self.running)
        return len(self.running)

    def send(self, now: float, service: float) -> tuple[float, bool]:
        full = self.inflight(now) >= self.capacity
        free = heapq.heappop(self.slots)
        done = max(now, free) + service
        heapq.heappush(self.slots, done)
        heapq.heappush(self.running, done)
        return done, full


def simulate(
    strategy: str,
    trace: list[tuple[float, int, int]],
    prompts: list[tuple[str, str]],
    vectors: np.ndarray,
    policy: Policy,
    route: Route,
    capacities: dict[str, int],
) -> Run:
    base = LoadSettings(latency_slo_ms=1e9)  # load from in-flight requests (SLOs: see README)
    own = {name: LoadSettings(max_inflight=c, latency_slo_ms=1e9) for name, c in capacities.items()}
    monitor = LoadMonitor(base, own)
    upstreams = {name: Upstream(c) for name, c in capacities.items()}
    index = HnswIndex(vectors.shape[1], model_id="bench", params=IndexParams(initial_capacity=8192))
    pending: list[tuple[float, str, float, int]] = []  # (done, member, latency, prompt index)
    limits = ExampleLimits(
        policy.examples, policy.example_floor, policy.example_budget_tokens, policy.example_k_max
    )
    threshold = acceptance(load_policies(), policy, 0.0, None)[policy.name].threshold
    run = Run()
    for i, ((now, prompt_tokens, out_tokens), (text, _)) in enumerate(
        zip(trace, prompts, strict=False)
    ):
        while pending and pending[0][0] <= now:
            done, member, latency, answered = heapq.heappop(pending)
            monitor.finished(member, latency, now=done)
            if member == "large":
                index.add([answered], vectors[answered].reshape(1, -1))
        examples: list[Example] = []
        if strategy == "with-examples" and len(index):
            for n in index.search(vectors[i], k=8):
                source, answer = prompts[n.entry_id]
                examples.append(Example(n.entry_id, n.similarity, 0.5, source, answer))
            examples = choose(examples, limits, threshold=threshold, query=text, guard=policy.guard)
        loaded = monitor.pressure("large", now) > 0
        if strategy in ("always-large", "always-small"):
            member = strategy.removeprefix("always-")
        else:
            member = decide(
                route, choice="auto", policy=policy, examples=examples, threshold=threshold,
                load=monitor, now=now,
            ).member  # fmt: skip
        given = examples if member == "small" else []
        extra = sum(e.tokens for e in given)
        first, per_token = SERVICE[member]
        done, full = upstreams[member].send(now, first + per_token * out_tokens)
        monitor.started(member)
        heapq.heappush(pending, (done, member, done - now, i))
        model = route.member(member)
        run.cost += price(model.litellm_model, prompt_tokens + extra, out_tokens)
        run.latencies.append(done - now)
        run.into_full += full
        run.loaded += loaded
        if member == "small":
            run.small += 1
            run.loaded_small += loaded
            run.with_examples += bool(given)
            run.quality.append(estimate(route.settings, given, policy.example_floor, threshold))
        else:
            run.large += 1
    return run


async def example_latency(
    prompts: list[tuple[str, str]], vectors: np.ndarray, policy: Policy, rounds: int
) -> dict[str, Any]:
    """What fetching and choosing examples adds to a miss's semantic lookup, in the gateway's
    own `SemanticCache` on SQLite: with and without `near_floor`, interleaved."""

    class Stored:
        model_id, dim = "bench", vectors.shape[1]

        def embed(self, texts: list[str]) -> np.ndarray:
            raise AssertionError("no embedding: the lookup's vector is reused")

    stored = len(prompts) // 2
    with tempfile.TemporaryDirectory() as folder:
        store = open_store(f"sqlite:///{Path(folder) / 'bench.db'}")
        cache = SemanticCache(store, Stored(), index_dir=None, params=IndexParams())  # type: ignore[arg-type]
        partition = Partition("bench", "", policy.name)
        for i in range(stored):
            text, answer = prompts[i]
            message = {"role": "assistant", "content": answer}
            response = {"choices": [{"index": 0, "finish_reason": "stop", "message": message}]}
            await cache.put(
                NewEntry(
                    partition=partition, model_family="bench", text=text, context_hash="",
                    request_json="{}", response_json=json.dumps(response),
                    embedding=vectors[i], embedding_model="bench", created_at=time.time(),
                    answered_tier="large",
                )
            )  # fmt: skip
        accept = acceptance(load_policies(), policy, 0.0, None)
        threshold = accept[policy.name].threshold
        limits = ExampleLimits(
            policy.examples, policy.example_floor, policy.example_budget_tokens,
            policy.example_k_max,
        )  # fmt: skip
        plain, near, found = [], [], []
        for j in range(rounds):
            i = stored + j % (len(prompts) - stored)
            text = prompts[i][0]
            key = parse_chat({"model": "bench", "messages": [{"role": "user", "content": text}]})
            for with_near in (j % 2 == 0, j % 2 == 1):  # alternate which goes first
                began = time.perf_counter()
                result = await cache.lookup_semantic(
                    "bench", "", key, vectors[i], accept={policy.name: accept[policy.name]},
                    top_k=4, now=time.time(), model_id="bench",
                    near_floor=policy.example_floor if with_near else None,
                )  # fmt: skip
                if with_near:
                    chosen = choose(result.near, limits, threshold=threshold, query=text)
                    with_examples([{"role": "user", "content": text}], chosen)
                    near.append((time.perf_counter() - began) * 1000)
                    found.append(len(chosen))
                else:
                    plain.append((time.perf_counter() - began) * 1000)
        store.engine.dispose()
    added = np.asarray(near) - np.asarray(plain)
    return {
        "stored_entries": stored,
        "lookups": rounds,
        "lookup_ms": percentiles(plain),
        "lookup_with_examples_ms": percentiles(near),
        "added_ms": {"p50": float(np.median(added)), "p95": float(np.percentile(added, 95))},
        "misses_given_examples": float(np.mean([n > 0 for n in found])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=0, help="arrivals (default: one per prompt)")
    parser.add_argument("--large-capacity", type=int, default=0,
                        help="0: 80%% of the mean demand if every miss went large")  # fmt: skip
    parser.add_argument("--category", default="code", help="the category policy applied")
    parser.add_argument("--rounds", type=int, default=400, help="lookups timed (second part)")
    parser.add_argument("--seed", type=int, default=5)
    add_cache_dir(parser)
    args = parser.parse_args()
    data = shared_data()
    prompts = instructions(data, args.seed)
    trace = arrivals(data / "workload" / "azure_conv.csv", args.limit or len(prompts))
    prompts = prompts[: len(trace)]
    embedder = load_embedder(EmbedderOptions(cache_dir=args.cache_dir))
    vectors = embed_cached(embedder, [p for p, _ in prompts], "gpteacher")
    policy = load_policies()[args.category]
    duration = trace[-1][0]
    first, per_token = SERVICE["large"]
    demand = sum(first + per_token * out for _, _, out in trace) / duration
    large = args.large_capacity or max(1, round(0.8 * demand))
    capacities = {"large": large, "small": 4 * large}
    route = Route(RouteSettings("auto", "small", "large"), SMALL, LARGE, small_cheaper=True)
    print(
        f"{len(trace)} arrivals over {duration / 60:.1f} min; demand on the large model "
        f"{demand:.1f} concurrent; capacity large {large}, small {4 * large}; "
        f"policy {policy.name} (example floor {policy.example_floor}, k_max "
        f"{policy.example_k_max}, budget {policy.example_budget_tokens} tokens)"
    )
    runs = {s: simulate(s, trace, prompts, vectors, policy, route, capacities) for s in STRATEGIES}
    weak = measured(route, policy.name)
    if weak is not None:
        for strategy in ("load-only", "with-examples"):
            runs[f"{strategy} (SmolLM2 qualities)"] = simulate(
                strategy, trace, prompts, vectors, policy, weak, capacities
            )
    baseline = runs["always-large"].cost
    results = {name: run.summary(baseline) for name, run in runs.items()}
    rows = []
    for name, result in results.items():
        loaded = result["offloaded_share_when_large_loaded"]
        quality = result["estimated_acceptable_small"]
        rows.append([
            name, result["cost_usd"], result["cost_vs_always_large"],
            result["latency_s"]["p50"], result["latency_s"]["p95"], result["offloaded_share"],
            "-" if loaded is None else loaded, result["sent_into_full_upstream"],
            result["small_with_examples"], "-" if quality is None else quality,
        ])  # fmt: skip
    print()
    print_table(
        ["strategy", "cost $", "vs large", "p50 s", "p95 s", "offloaded", "offl. loaded",
         "into full", "w/ examples", "est. quality"],
        rows,
    )  # fmt: skip
    latency = asyncio.run(example_latency(prompts, vectors, policy, args.rounds))
    print(
        f"\nexamples on a miss ({latency['stored_entries']} stored entries, SQLite): lookup "
        f"p50 {latency['lookup_ms']['p50']:.2f} ms, with examples "
        f"{latency['lookup_with_examples_ms']['p50']:.2f} ms; added p50 "
        f"{latency['added_ms']['p50']:.2f} ms, p95 {latency['added_ms']['p95']:.2f} ms; "
        f"{latency['misses_given_examples']:.0%} of misses got examples"
    )
    write_json(
        "routing",
        {
            "arrivals": len(trace),
            "minutes": duration / 60,
            "capacities": capacities,
            "service_s": SERVICE,
            "policy": policy.to_dict() | {"rules": len(policy.rules),
                                          "prototypes": len(policy.prototypes)},
            "route": vars(route.settings),
            "route_measured_qualities": vars(weak.settings) if weak is not None else None,
            "strategies": results,
            "example_latency": latency,
        },
    )  # fmt: skip


if __name__ == "__main__":
    main()
