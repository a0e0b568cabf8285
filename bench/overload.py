"""Does the cache keep serving and learning under concurrency? A real `gateway serve`
process on loopback (default config: SQLite, the served model, the simulated upstream), and
an async load generator in this process.

1. Paraphrase lookups: 40 prompts of `paraphrase_pairs.jsonl` are stored first; then
   `clients` callers send their paraphrases (with `no-store`, so that each is a semantic
   lookup, not an exact repeat) for `--seconds` each round (1, 8, 16, 32 clients):
   bypassed (failed open), semantic hits, p50 latency.
2. New prompts: 32 callers send prompts never seen for `--seconds`; how many of the
   completed misses were stored (read through the admin API once the load stops).

`--checkout DIR` runs the server from another checkout of the project (its working directory),
so that a before/after comparison runs the same load on the same machine. `--deadline-ms`
tightens the lookup deadline, as a busier machine (slower embedding) would.

    python -m bench.overload [--seconds 10] [--checkout DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import percentiles, print_table, read_pairs, shared_data, write_json

TOKEN = "bench-admin"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _body(text: str) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}


async def _load(
    client: httpx.AsyncClient, prompts: list[str], clients: int, seconds: float
) -> dict[str, Any]:
    outcomes: dict[str, int] = {}
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    rng = random.Random(clients)

    async def caller() -> None:
        while time.monotonic() < deadline:
            text = rng.choice(prompts)
            began = time.perf_counter()
            # no-store: every request is a semantic lookup (a stored paraphrase would make
            # its repeats exact hits, which need no embedding)
            response = await client.post(
                "/v1/chat/completions", json=_body(text), headers={"cache-control": "no-store"}
            )
            latencies.append((time.perf_counter() - began) * 1000)
            kind = response.headers.get("x-cache", f"status {response.status_code}")
            kind = (
                f"{kind} ({response.headers['x-cache-bypass-reason']})"
                if kind == "bypass"
                else kind
            )
            outcomes[kind] = outcomes.get(kind, 0) + 1

    await asyncio.gather(*(caller() for _ in range(clients)))
    total = sum(outcomes.values())
    bypassed = sum(n for kind, n in outcomes.items() if kind.startswith("bypass"))
    return {
        "clients": clients,
        "requests": total,
        "bypassed_share": bypassed / total if total else 0.0,
        "hits": outcomes.get("hit", 0),
        "outcomes": outcomes,
        "latency_ms": percentiles(latencies) if latencies else {},
    }


async def _fresh(
    client: httpx.AsyncClient, prompts: list[str], clients: int, seconds: float
) -> dict[str, Any]:
    queue = list(prompts)
    answered: list[str] = []
    deadline = time.monotonic() + seconds

    async def caller() -> None:
        while time.monotonic() < deadline and queue:
            text = queue.pop()
            response = await client.post("/v1/chat/completions", json=_body(text))
            if response.status_code == 200 and response.headers.get("x-cache") != "hit":
                answered.append(text)  # a miss (or a bypass) the cache should learn

    await asyncio.gather(*(caller() for _ in range(clients)))
    return {"clients": clients, "misses_answered": len(answered)}


async def _count(client: httpx.AsyncClient) -> int:
    total, after = 0, 0
    while True:
        listed = (
            await client.get(
                "/admin/entries",
                params={"after": after, "limit": 500},
                headers={"authorization": f"Bearer {TOKEN}"},
            )
        ).json()
        total += len(listed["data"])
        if not listed["has_more"]:
            return total
        after = listed["next_after"]


async def run(port: int, pairs: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", timeout=60.0, limits=limits
    ) as client:
        seeded = pairs[:40]
        for pair in seeded:
            await client.post("/v1/chat/completions", json=_body(pair["a"]))
        paraphrases = [p["b"] for p in seeded]
        rounds = [await _load(client, paraphrases, n, seconds) for n in (1, 8, 16, 32)]
        before = await _count(client)
        fresh = await _fresh(client, [p["a"] for p in pairs[40:]], 32, seconds)
        await asyncio.sleep(1.0)  # answers still being stored after they were sent
        deadline = time.monotonic() + 60
        stored = await _count(client) - before
        while stored < fresh["misses_answered"] and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            stored = await _count(client) - before
        fresh["stored"] = stored
        fresh["stored_share"] = stored / fresh["misses_answered"] if fresh["misses_answered"] else 0
        return {"paraphrases": rounds, "new_prompts": fresh}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--checkout", type=Path, help="serve from this checkout")
    parser.add_argument("--name", default="overload", help="the JSON file's name")
    parser.add_argument("--threads", type=int, help="embedding.threads (1: a slower embedder)")
    parser.add_argument(
        "--deadline-ms", type=float, help="cache.lookup_deadline_ms (tight: a busier machine)"
    )
    args = parser.parse_args()
    pairs = read_pairs(shared_data() / "paraphrase_pairs.jsonl")
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "gateway.toml"
        config.write_text(f'[store]\nurl = "sqlite:///{Path(folder) / "g.db"}"\n')
        port = free_port()
        env = {**os.environ, "GATEWAY_ADMIN_TOKEN": TOKEN, "GATEWAY_SERVER_ACCESS_LOG": "false"}
        if args.checkout is not None:
            env["PYTHONPATH"] = str(args.checkout.resolve())
        if args.deadline_ms is not None:
            env["GATEWAY_CACHE_LOOKUP_DEADLINE_MS"] = str(args.deadline_ms)
        if args.threads is not None:
            env["GATEWAY_EMBEDDING_THREADS"] = str(args.threads)
        server = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config),
             "--port", str(port)],
            env=env, cwd=args.checkout or Path.cwd(),  # `python -m` puts the cwd first
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}") as probe:
                for _ in range(240):
                    try:
                        if probe.get("/readyz").status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    time.sleep(0.5)
            result = asyncio.run(run(port, pairs, args.seconds))
        finally:
            server.terminate()
            server.wait(30)
    rows = [
        [r["clients"], r["requests"], r["bypassed_share"], r["hits"],
         r["latency_ms"].get("p50", 0.0)]
        for r in result["paraphrases"]
    ]  # fmt: skip
    print_table(["clients", "requests", "bypassed", "semantic hits", "p50 ms"], rows)
    fresh = result["new_prompts"]
    print(
        f"\nnew prompts, {fresh['clients']} clients: {fresh['misses_answered']} misses answered, "
        f"{fresh['stored']} stored ({fresh['stored_share']:.0%})"
    )
    print(json.dumps({r["clients"]: r["outcomes"] for r in result["paraphrases"]}))
    write_json(
        args.name,
        {"seconds": args.seconds, "checkout": str(args.checkout), "deadline_ms": args.deadline_ms}
        | result,
    )


if __name__ == "__main__":
    main()
