"""What the cache did in a time window, from the event log and the feedback table: totals
and breakdowns by category, tenant and model."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
from sqlalchemy import select

from gateway.store.models import Feedback, RequestEvent
from gateway.store.queries import Store


def _empty() -> dict[str, Any]:
    return {"outcomes": defaultdict(int), "added_ms": [], "tokens": 0, "cost": 0.0, "false": 0}


def _summary(group: dict[str, Any]) -> dict[str, Any]:
    outcomes = group["outcomes"]
    requests = sum(outcomes.values())
    hits = sum(n for kind, n in outcomes.items() if kind.startswith("hit"))
    added = np.asarray(group["added_ms"]) if group["added_ms"] else None
    return {
        "requests": requests,
        "hits": hits,
        "hits_exact": outcomes["hit_exact"],
        "hits_semantic": outcomes["hit_semantic"],
        "hits_coalesced": outcomes["hit_coalesced"],
        "misses": outcomes["miss"],
        "bypasses": outcomes["bypass"],
        "errors": outcomes["error"],
        "hit_rate": hits / requests if requests else 0.0,
        "tokens_saved": group["tokens"],
        "cost_saved_usd": round(group["cost"], 6),
        "added_latency_ms": {
            q: (float(np.percentile(added, int(q[1:]))) if added is not None else None)
            for q in ("p50", "p95", "p99")
        },
        "false_hits": group["false"],
    }


def compute(store: Store, since: float, until: float) -> dict[str, Any]:
    columns = (
        RequestEvent.category,
        RequestEvent.tenant,
        RequestEvent.requested_model,
        RequestEvent.outcome,
        RequestEvent.latency_ms,
        RequestEvent.upstream_ms,
        RequestEvent.prompt_tokens,
        RequestEvent.completion_tokens,
        RequestEvent.cost_usd,
    )
    window = (RequestEvent.ts >= since, RequestEvent.ts < until)
    groups: dict[str, dict[str, dict[str, Any]]] = {
        "by_category": defaultdict(_empty),
        "by_tenant": defaultdict(_empty),
        "by_model": defaultdict(_empty),
    }
    total = _empty()
    with store.session() as session:
        events = session.execute(select(*columns).where(*window)).all()
        wrong = session.execute(
            select(Feedback.category, Feedback.tenant).where(
                Feedback.ts >= since, Feedback.ts < until, Feedback.correct.is_(False)
            )
        ).all()
    for category, tenant, model, outcome, latency, upstream, prompt, completion, cost in events:
        targets = (
            total,
            groups["by_category"][category],
            groups["by_tenant"][tenant],
            groups["by_model"][model],
        )
        for group in targets:
            group["outcomes"][outcome] += 1
            group["added_ms"].append(max(0.0, latency - (upstream or 0.0)))
            if outcome.startswith("hit"):
                group["tokens"] += prompt + completion
                group["cost"] += cost
    for category, tenant in wrong:
        for group in (total, groups["by_category"][category], groups["by_tenant"][tenant]):
            group["false"] += 1
    return {
        "object": "stats",
        "since": since,
        "until": until,
        "totals": _summary(total),
        **{name: {k: _summary(v) for k, v in sorted(g.items())} for name, g in groups.items()},
    }
