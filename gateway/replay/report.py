"""The figures of a replay, in one stable schema (`--json`, the terminal report, the HTML
page all read it). Labels: requests joined by `duplicate_of` (and identical prompts) ask
the same question; a hit is right when the entry it served was stored by a request asking
the same question."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import numpy as np

from gateway.cache.keys import normalise
from gateway.replay.run import Result
from gateway.replay.workload import UNLABELLED, Workload

SCHEMA = "gateway.replay/1"
BETA = 0.5


class Groups:
    """Union-find over request ids: which requests ask the same question."""

    def __init__(self, workload: Workload) -> None:
        self.parent: dict[str, str] = {}
        by_text: dict[tuple[str, str], str] = {}
        for request in workload.requests:
            self.parent.setdefault(request.id, request.id)
            if isinstance(request.duplicate_of, str):
                self.union(request.id, request.duplicate_of)
            context = repr(request.body.get("messages", [])[:-1])
            same = by_text.setdefault((context, normalise(request.text)), request.id)
            self.union(request.id, same)

    def find(self, ident: str) -> str:
        while self.parent[ident] != ident:
            self.parent[ident] = self.parent[self.parent[ident]]
            ident = self.parent[ident]
        return ident

    def union(self, a: str, b: str) -> None:
        self.parent[self.find(a)] = self.find(b)


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None}
    data = np.asarray(values)
    return {
        "p50": round(float(np.percentile(data, 50)), 3),
        "p95": round(float(np.percentile(data, 95)), 3),
    }


def verdicts(workload: Workload, results: list[Result]) -> list[bool | None]:
    """Per result: True right hit, False false hit, None not a hit or not judgeable."""
    groups = Groups(workload)
    stored_by = {r.entry_id: r.request for r in results if r.outcome == "miss" and r.entry_id}
    out: list[bool | None] = []
    for result in results:
        hit = result.outcome.startswith("hit") and result.entry_id is not None
        source = stored_by.get(result.entry_id) if hit and result.entry_id else None
        if (
            result.outcome == "hit_coalesced"
            or source is None
            or result.request.duplicate_of is UNLABELLED
            or source.duplicate_of is UNLABELLED
        ):
            out.append(None)
        else:
            out.append(groups.find(result.request.id) == groups.find(source.id))
    return out


def _tally(results: list[Result], judged: list[bool | None]) -> dict[str, Any]:
    kinds: dict[str, int] = defaultdict(int)
    for r in results:
        kinds[r.outcome] += 1
    hits = [r for r in results if r.outcome.startswith("hit")]
    right = sum(1 for v in judged if v is True)
    false = sum(1 for v in judged if v is False)
    return {
        "requests": len(results),
        "hits": len(hits),
        "hits_exact": kinds["hit_exact"],
        "hits_semantic": kinds["hit_semantic"],
        "hits_coalesced": kinds["hit_coalesced"],
        "misses": kinds["miss"],
        "bypasses": kinds["bypass"],
        "errors": kinds["error"],
        "hit_rate": round(len(hits) / len(results), 4) if results else 0.0,
        "tokens_saved": sum(r.prompt_tokens + r.completion_tokens for r in hits),
        "cost_saved_usd": round(sum(r.cost_usd for r in hits), 6),
        "false_hits": false,
        "precision": round(right / (right + false), 4) if right + false else None,
        "bypass_reasons": dict(
            Counter(
                r.bypass_reason or "unknown" for r in results if r.outcome == "bypass"
            ).most_common()
        ),
    }


def figures(
    workload: Workload,
    results: list[Result],
    *,
    cache_size: int,
    duration_s: float,
    upstream: str,
    model: str,
    sweep: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    judged = verdicts(workload, results)
    labelled = workload.labelled
    totals = _tally(results, judged)
    asked_before = [i for i, r in enumerate(results) if isinstance(r.request.duplicate_of, str)]
    right = sum(1 for i in asked_before if judged[i] is True)
    recall = round(right / len(asked_before), 4) if labelled and asked_before else None
    precision = totals["precision"] if labelled else None
    f_beta = None
    if precision is not None and recall is not None and (precision or recall):
        f_beta = round((1 + BETA**2) * precision * recall / (BETA**2 * precision + recall), 4)
    upstream_cost = sum(r.cost_usd for r in results if not r.outcome.startswith("hit"))
    misses = [r for r in results if r.outcome == "miss"]
    hits = [r for r in results if r.outcome.startswith("hit")]
    added = [max(0.0, r.latency_ms - r.waited_ms) for r in results if r.status < 400]
    by_category = {}
    for category in sorted({r.category for r in results if r.category}):
        members = [i for i, r in enumerate(results) if r.category == category]
        tally = _tally([results[i] for i in members], [judged[i] for i in members])
        tally["break_even_hit_rate"] = _break_even([results[i] for i in members], misses, hits)
        by_category[category] = tally
    savings = np.cumsum([r.cost_usd if r.outcome.startswith("hit") else 0.0 for r in results])
    return {
        "schema": SCHEMA,
        "workload": {
            "name": workload.name,
            "format": workload.format,
            "requests": len(workload.requests),
            "labelled": labelled,
            "malformed": [{"line": n, "reason": why} for n, why in workload.malformed],
        },
        "upstream": upstream,
        "model": model,
        **{k: v for k, v in totals.items() if k not in ("false_hits", "precision")},
        "cost_upstream_usd": round(upstream_cost, 6),
        "cost_without_cache_usd": round(upstream_cost + totals["cost_saved_usd"], 6),
        "false_hits": totals["false_hits"] if labelled else None,
        "precision": precision,
        "recall": recall,
        "f_beta": f_beta,
        "beta": BETA,
        "by_category": by_category,
        "latency_ms": {
            "gateway_added": _percentiles(added),
            "hit": _percentiles([r.latency_ms for r in hits]),
            "miss_added": _percentiles([max(0.0, r.latency_ms - r.waited_ms) for r in misses]),
            "upstream": _percentiles([r.upstream_ms for r in misses if r.upstream_ms is not None]),
        },
        "cache_size": cache_size,
        "duration_s": round(duration_s, 3),
        "near_misses": _near_misses(results),
        "series": {
            "cumulative_saved_usd": [round(float(v), 8) for v in savings],
            "hit_similarity": [r.similarity for r in hits if r.similarity is not None],
            "miss_nearest": [r.similarity for r in misses if r.similarity is not None],
            "threshold": _median([r.threshold for r in results if r.threshold is not None]),
        },
        "threshold_sweep": sweep,
        "routing": _routing(misses),
    }


def _routing(misses: list[Result]) -> dict[str, Any] | None:
    """What routing the misses did and saved: None when no request named a route."""
    routed = [r for r in misses if r.route is not None]
    if not routed:
        return None
    small = [r for r in routed if r.route == "small"]
    saved = sum(r.routing_saved_usd or 0.0 for r in small)
    spent = sum(r.cost_usd for r in routed)
    return {
        "misses": len(routed),
        "routed_small": len(small),
        "routed_large": len(routed) - len(small),
        "offloaded_share": round(len(small) / len(routed), 4),
        "with_examples": sum(1 for r in small if r.examples),
        "cost_usd": round(spent, 6),
        "cost_all_large_usd": round(spent + saved, 6),
        "routing_saved_usd": round(saved, 6),
    }


def _median(values: list[float]) -> float | None:
    return round(float(np.median(values)), 4) if values else None


def _break_even(members: list[Result], misses: list[Result], hits: list[Result]) -> float | None:
    """The hit rate from which the cache saves time in this category: a miss pays the
    lookup (the latency the gateway adds to it), a hit saves the upstream's latency less
    its own. Measured in this category, or over the replay where it has too few."""
    own_misses = [r for r in members if r.outcome == "miss"] or misses
    own_hits = [r for r in members if r.outcome.startswith("hit")] or hits
    lookup = [max(0.0, r.latency_ms - r.waited_ms) for r in own_misses]
    upstream = [r.upstream_ms for r in own_misses if r.upstream_ms is not None]
    if not lookup or not upstream or not own_hits:
        return None
    cost = float(np.median(lookup))
    saving = float(np.median(upstream)) - float(np.median([r.latency_ms for r in own_hits]))
    if saving <= 0:
        return None
    return round(cost / (cost + saving), 4)


def _near_misses(results: list[Result], count: int = 10) -> list[dict[str, Any]]:
    near = [
        r
        for r in results
        if r.outcome == "miss"
        and r.similarity is not None
        and r.threshold is not None
        and r.similarity < r.threshold
    ]
    near.sort(key=lambda r: (r.threshold or 0) - (r.similarity or 0))
    return [
        {
            "line": r.request.line,
            "id": r.request.id,
            "text": r.request.text[:200],
            "category": r.category,
            "nearest": r.similarity,
            "threshold": r.threshold,
        }
        for r in near[:count]
    ]
