"""The gateway end to end: a real `gateway serve` process on loopback, a fake upstream that
answers at once, and the load generator (`bench/loadgen.py`) in a process of its own.

Measured side by side in one run, so that the ratios hold on a busy machine:

1. Quality over HTTP: the first `--pairs` QQP pairs, one side stored, the other looked up.
2. One client: a trivial Starlette route under the same server settings, exact hits and
   semantic hits; the added latency of a hit is its p50 less the trivial route's, and the
   semantic hit's is set against the bare embedding of the same texts (batch 1).
3. `--clients` clients: exact hits/s and semantic hits/s, the latter against the bare batched
   embedding throughput of the same texts.
4. `--clients` clients sending prompts never seen: how many failed open (bypassed), and how
   many of the answered misses were stored once the load stopped.

    python -m bench.gateway [--pairs 1000] [--clients 32] [--workers 1] [--checkout DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench.common import print_table, read_pairs, shared_data, write_json
from bench.overload import TOKEN, free_port
from tests.support.fake_upstream import answer_for, serve_fake_upstream

HERE = Path(__file__).resolve().parent.parent


def _chat(text: str) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}


@contextmanager
def _process(args: list[str], port: int, env: dict[str, str], cwd: Path = HERE) -> Iterator[str]:
    """A server process on `port`, run from `cwd` (`python -m` puts it first on the path),
    ready (its /readyz answers) when this yields."""
    process = subprocess.Popen(
        [sys.executable, *args], env=env, cwd=cwd,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base) as probe:
            for _ in range(480):
                try:
                    if probe.get("/readyz").status_code in (200, 404):
                        break
                except httpx.HTTPError:
                    pass
                if process.poll() is not None:
                    raise RuntimeError(f"{args} exited with {process.returncode}")
                time.sleep(0.25)
        yield base
    finally:
        process.terminate()
        process.wait(60)


def load(
    url: str, texts: list[str], clients: int, requests: int, *, headers: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Run the load generator in its own process and return its report."""
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as bodies:
        bodies.writelines(json.dumps(_chat(text)) + "\n" for text in texts)
    try:
        extra = [arg for header in headers for arg in ("--header", header)]
        out = subprocess.run(
            [sys.executable, "-m", "bench.loadgen", "--url", url, "--bodies", bodies.name,
             "--clients", str(clients), "--requests", str(requests), *extra],
            check=True, capture_output=True, text=True, cwd=HERE,
        )  # fmt: skip
    finally:
        os.unlink(bodies.name)
    report: dict[str, Any] = json.loads(out.stdout)
    return report


def quality(base: str, pairs: list[dict[str, Any]]) -> tuple[dict[str, Any], list[str]]:
    """Store one side of each pair, look the other up; precision and recall from the
    labels, and the texts served as semantic hits (for the hit measurements)."""
    served: dict[str, str] = {}
    with httpx.Client(base_url=base, timeout=60) as client:
        for pair in pairs:
            client.post("/v1/chat/completions", json=_chat(pair["a"])).raise_for_status()
        for pair in pairs:
            response = client.post("/v1/chat/completions", json=_chat(pair["b"]))
            if response.headers.get("x-cache-tier") == "semantic":
                served[pair["b"]] = response.json()["choices"][0]["message"]["content"]
    duplicates = {(p["a"], p["b"]) for p in pairs if p["label"] == 1}
    prompt_of = {answer_for(p[side]): p[side] for p in pairs for side in ("a", "b")}
    tp = fp = 0
    for pair in pairs:
        if pair["b"] not in served:
            continue
        source = prompt_of.get(served[pair["b"]])
        if (source, pair["b"]) in duplicates or (pair["b"], source) in duplicates:
            tp += 1
        else:
            fp += 1
    positives = sum(p["label"] == 1 for p in pairs)
    return {
        "pairs": len(pairs),
        "hits": tp + fp,
        "false_hits": fp,
        "precision": tp / (tp + fp) if tp + fp else 1.0,
        "recall": tp / positives if positives else 0.0,
    }, list(served)


def entries(base: str) -> int:
    total, after = 0, 0
    with httpx.Client(base_url=base, headers={"authorization": f"Bearer {TOKEN}"}) as client:
        while True:
            listed = client.get("/admin/entries", params={"after": after, "limit": 500}).json()
            total += len(listed["data"])
            if not listed["has_more"]:
                return total
            after = listed["next_after"]


def embedding(texts: list[str], batch: int, env: dict[str, str]) -> dict[str, Any]:
    """The served model alone, in its own process (so that it has the cores the gateway
    would): batch-1 latency and batched throughput on `texts`."""
    code = (
        "import json, sys, time\n"
        "from bench.common import percentiles\n"
        "from embeddings.runtime import load_serving\n"
        "from gateway.settings import Settings\n"
        "texts = json.loads(sys.stdin.read())\n"
        "embedder = load_serving(Settings.load(None).embedding.options())\n"
        "embedder.embed(texts[:8])\n"
        "ms = []\n"
        "for text in texts:\n"
        "    t0 = time.perf_counter(); embedder.embed([text]); "
        "ms.append((time.perf_counter() - t0) * 1000)\n"
        f"t0 = time.perf_counter()\n"
        f"for i in range(0, len(texts), {batch}): embedder.embed(texts[i:i + {batch}])\n"
        "per_s = len(texts) / (time.perf_counter() - t0)\n"
        "print(json.dumps({'batch1_ms': percentiles(ms), 'batched_per_s': per_s}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], input=json.dumps(texts), env=env, check=True,
        capture_output=True, text=True, cwd=HERE,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def run(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    pairs = read_pairs(shared_data() / "qqp_pairs.jsonl")
    seeded, fresh = pairs[: args.pairs], pairs[args.pairs :]
    env = {**os.environ, "GATEWAY_ADMIN_TOKEN": TOKEN, "GATEWAY_SERVER_ACCESS_LOG": "false"}
    env["BENCH_KEY"] = "sk-bench"
    checkout = args.checkout.resolve() if args.checkout is not None else HERE
    result: dict[str, Any] = {"workers": args.workers, "checkout": str(args.checkout)}
    no_store = ("cache-control: no-store",)  # lookups only: a bypass is not stored either
    with serve_fake_upstream() as upstream:
        config = folder / "gateway.toml"
        config.write_text(
            f'[store]\nurl = "sqlite:///{folder / "g.db"}"\n\n'
            f'[[models]]\nname = "gpt-4o-mini"\nlitellm_model = "openai/gpt-4o-mini"\n'
            f'api_base = "{upstream.base_url}"\napi_key_env = "BENCH_KEY"\n'
        )
        trivial_port, port = free_port(), free_port()
        serve = ["-m", "gateway.cli", "serve", "--config", str(config), "--port", str(port)]
        if args.workers > 1:
            serve += ["--workers", str(args.workers)]
        trivial = ["-m", "bench.trivial", "--port", str(trivial_port)]
        with (
            _process(trivial, trivial_port, env) as trivial_base,
            _process(serve, port, env, checkout) as base,
        ):
            result["quality"], hits = quality(base, seeded)
            exact = [p["a"] for p in seeded]
            url = f"{base}/v1/chat/completions"
            one = args.one_client_requests
            result["one_client"] = {
                "trivial": load(f"{trivial_base}/v1/chat/completions", exact, 1, one),
                "exact": load(url, exact, 1, one),
                "semantic": load(url, hits, 1, one, headers=no_store),
            }
            result["embedding"] = embedding(hits, args.batch, env)
            result["concurrent"] = {
                "trivial": load(
                    f"{trivial_base}/v1/chat/completions", exact, args.clients, args.requests
                ),
                "exact": load(url, exact, args.clients, args.requests),
                "semantic": load(url, hits, args.clients, args.semantic_requests, headers=no_store),
            }
            before = entries(base)
            new = load(url, [p["a"] for p in fresh], args.clients, args.fresh)
            answered = sum(n for k, n in new["cache"].items() if k in ("miss", "bypass"))
            stored, deadline = entries(base) - before, time.monotonic() + 60
            while stored < answered and time.monotonic() < deadline:
                time.sleep(0.5)  # answers embedded and stored after they were sent
                stored = entries(base) - before
            new["answered"], new["stored"] = answered, stored
            result["new_prompts"] = new
    return result


def report(result: dict[str, Any]) -> None:
    one, emb, conc = result["one_client"], result["embedding"], result["concurrent"]
    trivial = one["trivial"]["latency_ms"]["p50"]
    rows = [
        [name, one[key]["latency_ms"]["p50"], one[key]["latency_ms"]["p95"],
         one[key]["latency_ms"]["p50"] - trivial]
        for name, key in (("trivial route", "trivial"), ("exact hit", "exact"),
                          ("semantic hit", "semantic"))
    ]  # fmt: skip
    rows.append(["bare embedding, batch 1", emb["batch1_ms"]["p50"], emb["batch1_ms"]["p95"], ""])
    print("one client")
    print_table(["request", "p50 ms", "p95 ms", "over trivial ms"], rows)
    semantic_added = one["semantic"]["latency_ms"]["p50"] - trivial - emb["batch1_ms"]["p50"]
    print(f"semantic hit over trivial route + embedding: {semantic_added:.2f} ms")
    print(f"\n{conc['exact']['clients']} clients")
    print_table(
        ["request", "per s", "p50 ms", "p95 ms", "outcomes"],
        [
            [name, conc[key]["per_s"], conc[key]["latency_ms"]["p50"],
             conc[key]["latency_ms"]["p95"], json.dumps(conc[key]["cache"])]
            for name, key in (("trivial route", "trivial"), ("exact hit", "exact"),
                              ("semantic hit", "semantic"))
        ]
        + [["bare embedding, batched", emb["batched_per_s"], "", "", ""]],
    )  # fmt: skip
    share = conc["semantic"]["per_s"] / emb["batched_per_s"]
    print(f"semantic hits/s over bare batched embedding: {share:.0%}")
    new = result["new_prompts"]
    print(
        f"\nnew prompts, {new['clients']} clients: {json.dumps(new['cache'])}; "
        f"{new['answered']} answered, {new['stored']} stored"
    )
    q = result["quality"]
    print(
        f"quality over HTTP ({q['pairs']} QQP pairs, default threshold): {q['hits']} hits, "
        f"{q['false_hits']} false, precision {q['precision']:.4f}, recall {q['recall']:.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=20_000, help="exact hits under load")
    parser.add_argument("--semantic-requests", type=int, default=3_000)
    parser.add_argument("--one-client-requests", type=int, default=500)
    parser.add_argument("--fresh", type=int, default=1_000, help="new prompts under load")
    parser.add_argument("--batch", type=int, default=32, help="bare embedding batch size")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--checkout", type=Path, help="serve from this checkout")
    parser.add_argument("--name", default="gateway", help="the JSON file's name")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        result = run(args, Path(folder))
    report(result)
    write_json(args.name, result)


if __name__ == "__main__":
    main()
