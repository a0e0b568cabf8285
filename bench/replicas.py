"""Two gateways on one store, as two machines would run them: how soon what one does is
in force on the other. Real `gateway serve` processes on loopback, each with its own
indexes and index folder, a fake upstream that answers at once.

For `--trials` rounds each:
1. an entry written through A (a miss), then asked on B in other words until B serves it
   from its semantic tier (the exact tier reads the store, so only the index follows);
2. that entry deleted through A, until B no longer serves it;
3. a threshold PATCHed through A, until B's `x-cache-threshold` shows it.

Then the write path of a stored miss alone (an entry, its change row, the quota trim),
from 4 threads on the same store: how many entries a second one database takes here.

Times run from A's answer to B's first request that shows the change (B is asked every
`--poll-ms`). On PostgreSQL the change log's NOTIFY wakes B; on SQLite B polls the log
every `cache.follow_interval_s` (here `--follow-s`).

    python -m bench.replicas [--store postgresql+psycopg://USER@HOST:PORT/DB] [--trials 30]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.common import print_table, write_json
from bench.gateway import _process
from bench.overload import TOKEN, free_port
from tests.support.fake_upstream import serve_fake_upstream

ADMIN = {"authorization": f"Bearer {TOKEN}"}


def _config(folder: Path, store: str, upstream: str, follow_s: float) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "gateway.toml"
    config.write_text(
        f'[store]\nurl = "{store}"\nindex_dir = "{folder / "indexes"}"\n\n'
        f"[cache]\nfollow_interval_s = {follow_s}\n\n"
        f'[[models]]\nname = "gpt-4o-mini"\nlitellm_model = "openai/gpt-4o-mini"\n'
        f'api_base = "{upstream}"\napi_key_env = "BENCH_KEY"\n'
    )
    return config


def _ask(client: httpx.Client, text: str, *, store: bool = False) -> httpx.Response:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}
    headers = {"x-cache-category": "default"}
    if not store:
        headers["cache-control"] = "no-store"
    return client.post("/v1/chat/completions", json=body, headers=headers)


def _semantic(client: httpx.Client, text: str) -> bool:
    return bool(_ask(client, text).headers.get("x-cache-tier") == "semantic")


def _gone(client: httpx.Client, text: str) -> bool:
    return bool(_ask(client, text).headers.get("x-cache") != "hit")


def _threshold(client: httpx.Client, text: str, threshold: str) -> bool:
    return bool(_ask(client, text).headers["x-cache-threshold"] == threshold)


def _until(condition: Callable[[], bool], poll_s: float, limit_s: float = 30.0) -> float:
    """Seconds until `condition` holds (polled every `poll_s`); inf past `limit_s`."""
    began = time.perf_counter()
    while time.perf_counter() - began < limit_s:
        if condition():
            return time.perf_counter() - began
        time.sleep(poll_s)
    return float("inf")


def run(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    store = args.store or f"sqlite:///{folder / 'shared.db'}"
    env = {
        **os.environ, "GATEWAY_ADMIN_TOKEN": TOKEN, "GATEWAY_SERVER_ACCESS_LOG": "false",
        "GATEWAY_TENANT_SALT": "bench-salt", "BENCH_KEY": "sk-bench",
    }  # fmt: skip
    poll = args.poll_ms / 1000
    times: dict[str, list[float]] = {"entry": [], "delete": [], "policy": []}
    with serve_fake_upstream() as upstream:
        ports = free_port(), free_port()
        commands = [
            ["-m", "gateway.cli", "serve", "--port", str(port), "--config",
             str(_config(folder / name, store, upstream.base_url, args.follow_s))]
            for name, port in zip("ab", ports, strict=True)
        ]  # fmt: skip
        with (
            _process(commands[0], ports[0], env) as base_a,
            _process(commands[1], ports[1], env) as base_b,
            httpx.Client(base_url=base_a, timeout=30) as a,
            httpx.Client(base_url=base_b, timeout=30) as b,
        ):
            _ask(a, "What is a good name for a goldfish?", store=True)
            _ask(b, "What is a good name for a goldfish!")  # B's index is loaded
            for trial in range(args.trials):
                text = f"How many legs does a spider of species number {trial} have?"
                asked = text.rstrip("?") + "!"
                _ask(a, text, store=True)
                times["entry"].append(_until(partial(_semantic, b, asked), poll))
                entry = _ask(b, asked).headers.get("x-cache-entry")
                a.delete(f"/admin/entries/{entry}", headers=ADMIN)
                times["delete"].append(_until(partial(_gone, b, asked), poll))
                threshold = f"{0.90 + 0.002 * (trial % 10):.4f}"
                a.patch("/admin/policies/default", json={"threshold": float(threshold)},
                        headers=ADMIN)  # fmt: skip
                times["policy"].append(_until(partial(_threshold, b, asked, threshold), poll))
    figures = {
        name: {
            "p50_ms": float(np.percentile(values, 50) * 1000),
            "p95_ms": float(np.percentile(values, 95) * 1000),
            "max_ms": float(max(values) * 1000),
            "never": sum(v == float("inf") for v in values),
        }
        for name, values in times.items()
    }
    return {"store": store.split("://")[0], "trials": args.trials, "poll_ms": args.poll_ms,
            "follow_interval_s": args.follow_s, "after_a": figures}  # fmt: skip


def writes(store: str, count: int, threads: int) -> dict[str, float]:
    """The write path of a stored miss, from `threads` threads (as replicas would): the
    entry with its change row (and NOTIFY), then the quota trim. Entries a second."""
    from concurrent.futures import ThreadPoolExecutor

    from gateway.store import NewEntry, Partition, open_store

    opened = open_store(store)
    vector = np.ones(384, np.float32) / np.sqrt(384)

    def one(i: int) -> None:
        opened.add_entry(
            NewEntry(
                partition=Partition("writes", "", "default"), model_family="gpt-4o-mini",
                text=f"write {i}", context_hash="", request_hash=f"{i:064d}",
                request_json="{}", response_json="{}", embedding=vector, embedding_model="m",
                created_at=time.time(), expires_at=None,
            )
        )  # fmt: skip
        opened.trim("writes", "default", 10**9, "lru")

    began = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(count)))
    elapsed = time.perf_counter() - began
    opened.engine.dispose()
    return {"entries": count, "threads": threads, "per_s": count / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store", help="a shared store URL (default: a SQLite file)")
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--poll-ms", type=float, default=5.0)
    parser.add_argument("--follow-s", type=float, default=0.25)
    parser.add_argument("--writes", type=int, default=2000, help="entries for the write rate")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-replicas-") as folder:
        result = run(args, Path(folder))
    labels = {"entry": "entry through A served by B", "delete": "delete through A obeyed by B",
              "policy": "policy PATCH through A in force on B"}  # fmt: skip
    print(f"\n{result['store']}: {args.trials} trials, B asked every {args.poll_ms} ms\n")
    print_table(
        ["change", "p50 ms", "p95 ms", "max ms", "never (30 s)"],
        [[labels[k], v["p50_ms"], v["p95_ms"], v["max_ms"], v["never"]]
         for k, v in result["after_a"].items()],
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-writes-") as folder:
        store = args.store or f"sqlite:///{Path(folder) / 'writes.db'}"
        result["writes"] = writes(store, args.writes, threads=4)
    print(f"\nwrite path of a stored miss, 4 threads: {result['writes']['per_s']:.0f} entries/s")
    write_json(f"replicas-{result['store'].split('+')[0]}", result)


if __name__ == "__main__":
    main()
