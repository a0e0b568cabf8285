"""The gateway over real HTTP on loopback, against a fake upstream that answers at once.

Reports the latency the gateway adds on misses and on hits (p50/p95), hits per second
under 32 concurrent clients, and cache quality on QQP pairs sent through HTTP.

    python -m bench.gateway [--pairs N] [--clients 32] [--requests 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import percentiles, print_table, shared_data, write_json
from gateway.app import create_app
from gateway.settings import Settings, default_model_cache
from tests.support.fake_upstream import answer_for, serve_fake_upstream
from tests.support.loopback import serve_on_loopback


def _chat(text: str) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}


async def _timed(client: httpx.AsyncClient, text: str) -> tuple[float, httpx.Response]:
    t0 = time.perf_counter()
    response = await client.post("/v1/chat/completions", json=_chat(text))
    return (time.perf_counter() - t0) * 1000, response


async def run(
    base: str, pairs: list[dict[str, Any]], clients: int, requests: int, upstream_calls: list[Any]
) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        # Sequential: misses (stored), then their paraphrases; quality from the labels.
        miss_ms: list[float] = []
        hit_ms: list[float] = []
        served: dict[str, str] = {}
        tp = fp = 0
        for pair in pairs:
            ms, response = await _timed(client, pair["a"])
            if response.headers["x-cache"] == "miss":
                miss_ms.append(ms)
        for pair in pairs:
            ms, response = await _timed(client, pair["b"])
            if response.headers["x-cache"] == "hit":
                hit_ms.append(ms)
                served[pair["b"]] = response.json()["choices"][0]["message"]["content"]
        duplicates = {(p["a"], p["b"]) for p in pairs if p["label"] == 1}
        # The fake upstream's answer identifies the prompt it was given.
        prompt_of = {answer_for(p[side]): p[side] for p in pairs for side in ("a", "b")}
        for pair in pairs:
            if pair["b"] not in served:
                continue
            source = prompt_of.get(served[pair["b"]])
            if (
                source == pair["b"]
                or (source, pair["b"]) in duplicates
                or (pair["b"], source) in duplicates
            ):
                tp += 1
            else:
                fp += 1
        positives = sum(p["label"] == 1 for p in pairs)

        # Concurrent: hits per second under `clients` callers, a bounded number of requests.
        texts = [p["a"] for p in pairs]
        counter = iter(range(requests))
        concurrent_ms: list[float] = []

        async def worker() -> None:
            for i in counter:
                ms, response = await _timed(client, texts[i % len(texts)])
                assert response.status_code == 200
                concurrent_ms.append(ms)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - t0
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / positives if positives else 0.0
    return {
        "miss_ms": percentiles(miss_ms),
        "hit_ms": percentiles(hit_ms),
        "concurrent": {
            "clients": clients,
            "requests": requests,
            "hits_per_s": requests / elapsed,
            "latency_ms": percentiles(concurrent_ms),
        },
        "quality": {
            "pairs": len(pairs),
            "hits": tp + fp,
            "false_hits": fp,
            "precision": precision,
            "recall": recall,
        },
        "upstream_calls": len(upstream_calls),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    lines = (shared_data() / "qqp_pairs.jsonl").read_text().split("\n")
    pairs = [json.loads(line) for line in lines if line.strip()][: args.pairs]
    cache_dir = Path(os.environ.get("GATEWAY_EMBEDDING_CACHE_DIR", default_model_cache()))
    with tempfile.TemporaryDirectory() as tmp, serve_fake_upstream() as upstream:
        settings = Settings.from_dict(
            {
                "store": {"url": f"sqlite:///{tmp}/bench.db"},
                "embedding": {"cache_dir": str(cache_dir)},
                "models": [
                    {
                        "name": "gpt-4o-mini",
                        "litellm_model": "openai/gpt-4o-mini",
                        "api_base": upstream.base_url,
                        "api_key_env": "BENCH_KEY",
                    }
                ],
            },
            {},
        )
        os.environ["BENCH_KEY"] = "sk-bench"
        app = create_app(settings, salt=b"bench")
        with serve_on_loopback(app, settings.server) as base:
            result = asyncio.run(run(base, pairs, args.clients, args.requests, upstream.calls))
    print_table(
        ["measure", "p50 ms", "p95 ms", "mean ms"],
        [
            [name, result[key]["p50"], result[key]["p95"], result[key]["mean"]]
            for name, key in (("miss (gateway + loopback upstream)", "miss_ms"), ("hit", "hit_ms"))
        ],
    )
    c = result["concurrent"]
    print(
        f"\n{c['clients']} clients, {c['requests']} cached requests: "
        f"{c['hits_per_s']:.1f} hits/s, p50 {c['latency_ms']['p50']:.1f} ms, "
        f"p95 {c['latency_ms']['p95']:.1f} ms"
    )
    q = result["quality"]
    print(
        f"quality over HTTP ({q['pairs']} QQP pairs, default threshold): {q['hits']} hits, "
        f"{q['false_hits']} false, precision {q['precision']:.4f}, recall {q['recall']:.4f}"
    )
    write_json("gateway", result)


if __name__ == "__main__":
    main()
