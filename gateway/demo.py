"""`gateway demo`: the engine end to end on bundled public data.

Stores one side of each bundled QQP question pair as a cache entry (committed to the store,
then indexed), asks the other side, and reports which would have been answered from the
cache at the given threshold, against the human labels. A second run reuses the saved
index and the stored entries.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from typing import TextIO

import numpy as np

from embeddings.protocol import embed_all
from embeddings.runtime import load_serving
from gateway.index.sync import index_file, load_or_rebuild
from gateway.settings import Settings
from gateway.store import NewEntry, Partition, open_store

DEMO_PARTITION = Partition(tenant="demo", namespace="", category="default")


@dataclass(frozen=True)
class Pair:
    a: str
    b: str
    label: int


def bundled_pairs(limit: int | None = None) -> list[Pair]:
    text = resources.files("gateway").joinpath("data/qqp_sample.jsonl").read_text("utf-8")
    pairs = [Pair(**json.loads(line)) for line in text.split("\n") if line.strip()]
    return pairs[:limit] if limit else pairs


def run_demo(settings: Settings, *, pairs: int, threshold: float, out: TextIO) -> dict[str, float]:
    started = time.perf_counter()
    store = open_store(settings.store.url)
    embedder = load_serving(settings.embedding.options())
    index_dir = settings.store.resolved_index_dir()
    path = index_file(index_dir, DEMO_PARTITION) if index_dir else None
    index, report = load_or_rebuild(
        store, DEMO_PARTITION, embedder, path=path, params=settings.index
    )
    print(f"model {embedder.model_id} on {embedder.provider}", file=out)
    print(f"store {settings.store.url}: index {report.action}, {report.entries} entries", file=out)
    data = bundled_pairs(pairs)

    known = {store_text for store_text in _texts(store)}
    new = [p for p in data if p.a not in known]
    if new:
        vectors = embed_all(embedder, [p.a for p in new])
        now = time.time()
        ids = [
            store.add_entry(
                NewEntry(
                    partition=DEMO_PARTITION,
                    model_family="demo",
                    text=p.a,
                    context_hash="",
                    request_json=json.dumps({"messages": [{"role": "user", "content": p.a}]}),
                    response_json=json.dumps({"answer": f"(cached answer to: {p.a})"}),
                    embedding=vector,
                    embedding_model=embedder.model_id,
                    created_at=now,
                )
            )
            for p, vector in zip(new, vectors, strict=True)
        ]
        index.add(ids, vectors)
        print(f"stored {len(ids)} new entries (committed, then indexed)", file=out)
    if path is not None:
        index.save(path)

    queries = embed_all(embedder, [p.b for p in data])
    search_ms: list[float] = []
    tp = fp = fn = 0
    shown = 0
    print(f"\n{'sim':>6}  {'label':>5}  {'result':<10} query -> nearest cached question", file=out)
    for pair, query in zip(data, queries, strict=True):
        t0 = time.perf_counter()
        neighbors = index.search(query, k=1)
        search_ms.append((time.perf_counter() - t0) * 1000)
        best = neighbors[0] if neighbors else None
        entry = store.get_entry(best.entry_id) if best else None
        hit = best is not None and best.similarity >= threshold
        correct = hit and entry is not None and entry.text == pair.a and pair.label == 1
        if hit and correct:
            tp += 1
        elif hit:
            fp += 1
        elif pair.label == 1:
            fn += 1
        if shown < 12 and best is not None and entry is not None:
            shown += 1
            result = "hit" if correct else ("WRONG HIT" if hit else "miss")
            print(
                f"{best.similarity:6.3f}  {pair.label:>5}  {result:<10} "
                f"{_clip(pair.b)} -> {_clip(entry.text)}",
                file=out,
            )
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    summary = {
        "pairs": float(len(data)),
        "threshold": threshold,
        "hits": float(tp + fp),
        "precision": precision,
        "recall": recall,
        "search_ms_p50": float(np.percentile(search_ms, 50)) if search_ms else 0.0,
        "seconds": time.perf_counter() - started,
    }
    print(
        f"\n{len(data)} queries at threshold {threshold:.2f}: {tp + fp} hits, "
        f"precision {precision:.3f}, recall {recall:.3f}, "
        f"search p50 {summary['search_ms_p50']:.3f} ms, {summary['seconds']:.1f} s in all",
        file=out,
    )
    store.engine.dispose()
    return summary


def _texts(store: object) -> Iterator[str]:
    from gateway.store.queries import Store

    assert isinstance(store, Store)
    for _ids, texts, _blobs, _models in store.embeddings(DEMO_PARTITION):
        yield from texts


def _clip(text: str, width: int = 48) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
