"""A gateway joining a large store: with `--entries` (1M) entries in one partition and
their index saved, how long `gateway serve` takes to serve a semantic hit from it, when
`--recent` more entries were stored after the index was saved (they are caught up from
the store, not rebuilt).

Setup (not timed for the goal, reported): the entries are written in bulk with random unit
vectors (the same dimension and model id as the served model), the index is built and
saved where the gateway looks; then `--recent` real questions are stored with their real
embeddings through the store's own API. Timed: from the process's start to its first
semantic hit on one of those questions, asked in other words (so that the 1M-entry index
must be loaded and caught up first), and to /readyz.

    python -m bench.startup [--entries 1000000] [--store URL]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from sqlalchemy import insert

from bench.common import print_table, read_pairs, shared_data, write_json
from bench.overload import free_port
from embeddings.runtime import load_serving
from embeddings.trained import model_dir
from gateway.auth import ANONYMOUS
from gateway.cache.keys import parse_chat
from gateway.index.hnsw import HnswIndex
from gateway.index.sync import index_file
from gateway.settings import IndexParams, Settings
from gateway.store import NewEntry, Partition, open_store
from gateway.store.models import CacheEntry
from gateway.store.queries import encode_vector
from tests.support.fake_upstream import serve_fake_upstream

PARTITION = Partition(ANONYMOUS, "", "default")
CHUNK = 20_000


def seed(url: str, index_dir: Path, entries: int, model_id: str, dim: int) -> dict[str, float]:
    """`entries` rows in bulk and their saved index; seconds each step took."""
    store = open_store(url)
    rng = np.random.default_rng(0)
    # ef_construction 40 (the gateway builds with 200): the setup is 4x faster, and loading
    # a saved index does not depend on it (M, and so the file, is the gateway's).
    index = HnswIndex(dim, model_id=model_id, params=IndexParams(ef_construction=40))
    timings = {"insert_s": 0.0, "index_s": 0.0}
    now = time.time()
    for start in range(0, entries, CHUNK):
        vectors = rng.standard_normal((min(CHUNK, entries - start), dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        rows = [
            {
                "tenant": PARTITION.tenant,
                "namespace": "",
                "category": PARTITION.category,
                "model_family": "gpt-4o-mini",
                "text": f"seeded prompt {start + i}",
                "context_hash": "",
                "request_hash": f"seed-{start + i}",
                "request_json": "{}",
                "response_json": "{}",
                "embedding": encode_vector(vector),
                "embedding_model": model_id,
                "embedding_dim": dim,
                "created_at": now,
                "expires_at": now + 86_400 * 30,
                "hit_count": 0,
            }
            for i, vector in enumerate(vectors)
        ]
        began = time.perf_counter()
        with store.engine.begin() as connection:
            result = connection.execute(
                insert(CacheEntry).returning(CacheEntry.id, sort_by_parameter_order=True), rows
            )
            ids = [row[0] for row in result]
        timings["insert_s"] += time.perf_counter() - began
        began = time.perf_counter()
        index.add(ids, vectors)
        timings["index_s"] += time.perf_counter() - began
        print(f"  seeded {start + len(rows):,} entries", file=sys.stderr)
    began = time.perf_counter()
    index.save(index_file(index_dir, PARTITION))
    timings["save_s"] = time.perf_counter() - began
    store.engine.dispose()
    return timings


def run(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    url = args.store or f"sqlite:///{folder / 'big.db'}"
    index_dir = folder / "indexes"
    settings = Settings.from_dict({}, {})
    embedder = load_serving(replace(settings.embedding.options(), model=model_dir("trained")))
    result: dict[str, Any] = {"store": url.split("://")[0], "entries": args.entries}
    result["setup"] = seed(url, index_dir, args.entries, embedder.model_id, embedder.dim)
    questions = list(dict.fromkeys(p["a"] for p in read_pairs(shared_data() / "qqp_pairs.jsonl")))
    recent = questions[: args.recent]
    store = open_store(url)
    vectors = embedder.embed(recent)
    # the context every single-turn request of the benchmark has (no system prompt, no params)
    context = parse_chat({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]})
    context_hash = context.context_hash
    for text, vector in zip(recent, vectors, strict=True):  # after the save: to catch up
        store.add_entry(
            NewEntry(
                partition=PARTITION,
                model_family="gpt-4o-mini",
                text=text,
                context_hash=context_hash,
                request_hash=hashlib.sha256(text.encode()).hexdigest(),
                request_json="{}",
                response_json='{"choices": [{"message": {"role": "assistant", "content": "x"}}]}',
                embedding=vector,
                embedding_model=embedder.model_id,
                created_at=time.time(),
                expires_at=time.time() + 86_400,
            )
        )
    store.engine.dispose()
    asked = recent[-1].rstrip("?") + "!"
    with serve_fake_upstream() as upstream:
        config = folder / "gateway.toml"
        config.write_text(
            f'[store]\nurl = "{url}"\nindex_dir = "{index_dir}"\n\n'
            f'[[models]]\nname = "gpt-4o-mini"\nlitellm_model = "openai/gpt-4o-mini"\n'
            f'api_base = "{upstream.base_url}"\napi_key_env = "BENCH_KEY"\n'
        )
        port = free_port()
        env = {**os.environ, "BENCH_KEY": "sk-bench", "GATEWAY_TENANT_SALT": "bench-salt",
               "GATEWAY_SERVER_ACCESS_LOG": "false"}  # fmt: skip
        began = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config),
             "--port", str(port)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            base = f"http://127.0.0.1:{port}"
            body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": asked}]}
            headers = {"x-cache-category": "default", "cache-control": "no-store"}
            with httpx.Client(base_url=base, timeout=120) as client:
                while True:
                    try:
                        if client.get("/readyz").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    if process.poll() is not None:
                        raise RuntimeError("the gateway exited")
                    time.sleep(0.05)
                result["ready_s"] = time.perf_counter() - began
                # Until the index is loaded a lookup fails open at its deadline (the load
                # goes on): ask until the semantic tier answers.
                asked_times = 0
                while True:
                    response = client.post("/v1/chat/completions", json=body, headers=headers)
                    asked_times += 1
                    if response.headers.get("x-cache-tier") == "semantic":
                        break
                    if time.perf_counter() - began > 600:
                        raise RuntimeError(f"no semantic hit: {dict(response.headers)}")
                result["first_hit_s"] = time.perf_counter() - began
                result["asked_until_hit"] = asked_times
                again = time.perf_counter()
                client.post("/v1/chat/completions", json=body, headers=headers)
                result["next_hit_ms"] = (time.perf_counter() - again) * 1000
        finally:
            process.terminate()
            process.wait(60)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--recent", type=int, default=1000)
    parser.add_argument("--store", help="a store URL (default: a SQLite file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as folder:
        result = run(args, Path(folder))
    setup = result["setup"]
    print_table(
        ["store", "entries", "bulk insert s", "index build s", "index save s", "ready s",
         "first semantic hit s", "requests until then", "next hit ms"],
        [[result["store"], result["entries"], setup["insert_s"], setup["index_s"],
          setup["save_s"], result["ready_s"], result["first_hit_s"], result["asked_until_hit"],
          result["next_hit_ms"]]],
    )  # fmt: skip
    write_json(f"startup-{result['store'].split('+')[0]}", result)


if __name__ == "__main__":
    main()
