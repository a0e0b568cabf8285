"""`--threshold-sweep`: the same requests at one threshold for every category, from 0.80 to
0.98, simulated on the embeddings (each request embedded once, an HNSW index per tenant,
model and context): hits, false hits and savings per threshold. An estimate beside the
real replay, which used the category policies."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from embeddings.protocol import Embedder, embed_all
from gateway.cache.guard import check
from gateway.index.hnsw import HnswIndex
from gateway.replay.report import Groups
from gateway.replay.run import Result
from gateway.replay.workload import UNLABELLED, Workload
from gateway.settings import IndexParams

THRESHOLDS = tuple(round(0.80 + 0.02 * i, 2) for i in range(10))


def sweep(workload: Workload, results: list[Result], embedder: Embedder) -> list[dict[str, Any]]:
    cacheable = [r for r in results if r.outcome.startswith("hit") or r.outcome == "miss"]
    if not cacheable:
        return []
    vectors = embed_all(embedder, [r.request.text for r in cacheable])
    groups = Groups(workload)
    paid = [r.cost_usd for r in results if r.outcome == "miss"]
    per_answer = float(np.mean(paid)) if paid else 0.0
    rows = []
    for threshold in THRESHOLDS:
        indexes: dict[str, tuple[HnswIndex, list[Result]]] = {}
        hits = false = 0
        for result, vector in zip(cacheable, vectors, strict=True):
            request = result.request
            body = request.body
            key = json.dumps(
                [request.tenant, body.get("model"), body["messages"][:-1]], sort_keys=True
            )
            index, stored = indexes.setdefault(
                key,
                (
                    HnswIndex(
                        embedder.dim, model_id="sweep", params=IndexParams(initial_capacity=256)
                    ),
                    [],
                ),
            )
            nearest = index.search(vector, 1)
            if nearest and nearest[0].similarity >= threshold:
                source = stored[nearest[0].entry_id]
                if check(request.text, source.request.text).ok:
                    hits += 1
                    judged = request.duplicate_of is not UNLABELLED
                    judged = judged and source.request.duplicate_of is not UNLABELLED
                    if judged and groups.find(request.id) != groups.find(source.request.id):
                        false += 1
                    continue
            index.add([len(stored)], vector.reshape(1, -1))
            stored.append(result)
        rows.append(
            {
                "threshold": threshold,
                "hits": hits,
                "hit_rate": round(hits / len(results), 4),
                "false_hits": false if workload.labelled else None,
                "precision": round((hits - false) / hits, 4)
                if hits and workload.labelled
                else None,
                "cost_saved_usd": round(hits * per_answer, 6),
            }
        )
    return rows
