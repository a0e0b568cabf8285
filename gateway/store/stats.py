"""What the cache did in a time window, aggregated in SQL: totals and breakdowns by
category, tenant and model, from the event log and the feedback table.

Counts and sums are GROUP BY queries over the window (the `ts` index finds it); the
gateway-added latency percentiles are nearest-rank, picked by a window function, so no
query returns more than a few rows per group whatever the traffic.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    and_,
    case,
    cast,
    func,
    literal,
    or_,
    select,
)
from sqlalchemy.orm import InstrumentedAttribute

from gateway.store.models import Feedback, RequestEvent
from gateway.store.queries import Store

QUANTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99}
GROUPS = {
    "by_category": RequestEvent.category,
    "by_tenant": RequestEvent.tenant,
    "by_model": RequestEvent.requested_model,
}


def _added() -> ColumnElement[float]:
    """The gateway's own share of a request's latency (never negative)."""
    added = RequestEvent.latency_ms - func.coalesce(RequestEvent.upstream_ms, 0.0)
    return case((added > 0, added), else_=0.0)


Key = ColumnElement[Any] | InstrumentedAttribute[Any] | None  # None: one group of all
TOTAL = "all"


def _counts(store: Store, key: Key, window: list[ColumnElement[bool]]) -> list[Any]:
    hit = RequestEvent.outcome.like("hit%")
    tokens = RequestEvent.prompt_tokens + RequestEvent.completion_tokens
    sums = (
        func.count(),
        func.sum(case((hit, tokens), else_=0)),
        func.sum(case((hit, RequestEvent.cost_usd), else_=0.0)),
    )
    keys = [] if key is None else [key]
    query = select(*keys, RequestEvent.outcome, *sums).where(*window)
    with store.session() as session:
        rows = session.execute(query.group_by(*keys, RequestEvent.outcome)).all()
    return [tuple(row) if key is not None else (TOTAL, *row) for row in rows]


def _percentiles(
    store: Store, key: Key, window: list[ColumnElement[bool]]
) -> dict[Any, dict[str, float]]:
    added = _added()
    group = literal(TOTAL) if key is None else key
    partition = None if key is None else key
    ranked = (
        select(
            group.label("key"),
            added.label("added"),
            func.row_number().over(partition_by=partition, order_by=added).label("rank"),
            func.count().over(partition_by=partition).label("n"),
        )
        .where(*window)
        .subquery()
    )
    # nearest rank: the smallest rank r with r >= q * n
    wanted = or_(
        *(and_(ranked.c.rank >= q * ranked.c.n, ranked.c.rank - 1 < q * ranked.c.n)
          for q in QUANTILES.values())
    )  # fmt: skip
    query = select(ranked.c.key, ranked.c.rank, ranked.c.n, ranked.c.added).where(wanted)
    found: dict[Any, dict[str, float]] = defaultdict(dict)
    with store.session() as session:
        for group, rank, n, value in session.execute(query):
            for name, q in QUANTILES.items():
                if rank >= q * n > rank - 1:
                    found[group][name] = float(value)
    return found


def _false_hits(store: Store, key: Key, since: float, until: float) -> dict[Any, int]:
    wrong = (Feedback.ts >= since, Feedback.ts < until, Feedback.correct.is_(False))
    with store.session() as session:
        if key is None:
            return {TOTAL: int(session.scalar(select(func.count()).where(*wrong)) or 0)}
        query = select(key, func.count()).where(*wrong).group_by(key)
        return {group: int(count) for group, count in session.execute(query)}


def _routing(store: Store, key: Key, window: list[ColumnElement[bool]]) -> dict[Any, Routing]:
    """Per group: a route's misses by the member that answered, and what the small saved."""
    keys = [] if key is None else [key]
    sums = (func.count(), func.sum(func.coalesce(RequestEvent.routing_saved_usd, 0.0)))
    query = (
        select(*keys, RequestEvent.route, *sums)
        .where(*window, RequestEvent.route.is_not(None))
        .group_by(*keys, RequestEvent.route)
    )
    found: dict[Any, Routing] = defaultdict(Routing)
    with store.session() as session:
        for row in session.execute(query):
            group, route, count, saved = (TOTAL, *row) if key is None else tuple(row)
            found[group].members[str(route)] = int(count)
            found[group].saved += float(saved or 0.0)
    return found


@dataclass
class Routing:
    members: dict[str, int] = field(default_factory=dict)
    saved: float = 0.0

    def summary(self) -> dict[str, Any]:
        small, large = self.members.get("small", 0), self.members.get("large", 0)
        return {
            "routed_small": small,
            "routed_large": large,
            "offloaded_share": small / (small + large) if small + large else 0.0,
            "routing_saved_usd": round(self.saved, 6),
        }


def _summary(
    outcomes: dict[str, int],
    tokens: int,
    cost: float,
    added: dict[str, float],
    false: int,
    routing: Routing | None = None,
) -> dict[str, Any]:
    requests = sum(outcomes.values())
    hits = sum(n for kind, n in outcomes.items() if kind.startswith("hit"))
    return {
        "requests": requests,
        "hits": hits,
        "hits_exact": outcomes.get("hit_exact", 0),
        "hits_semantic": outcomes.get("hit_semantic", 0),
        "hits_coalesced": outcomes.get("hit_coalesced", 0),
        "misses": outcomes.get("miss", 0),
        "bypasses": outcomes.get("bypass", 0),
        "errors": outcomes.get("error", 0),
        "hit_rate": hits / requests if requests else 0.0,
        "tokens_saved": tokens,
        "cost_saved_usd": round(cost, 6),
        "added_latency_ms": {name: added.get(name) for name in QUANTILES},
        "false_hits": false,
        "routing": (routing or Routing()).summary(),
    }


def _grouped(
    store: Store,
    key: Key,
    window: list[ColumnElement[bool]],
    false_key: Key,
    since: float,
    until: float,
    *,
    with_false: bool = True,
) -> dict[Any, dict[str, Any]]:
    outcomes: dict[Any, dict[str, int]] = defaultdict(dict)
    tokens: dict[Any, int] = defaultdict(int)
    cost: dict[Any, float] = defaultdict(float)
    for group, outcome, count, saved_tokens, saved_cost in _counts(store, key, window):
        outcomes[group][outcome] = int(count)
        tokens[group] += int(saved_tokens or 0)
        cost[group] += float(saved_cost or 0.0)
    added = _percentiles(store, key, window)
    false = _false_hits(store, false_key, since, until) if with_false else {}
    routing = _routing(store, key, window)
    groups = set(outcomes) | {group for group, count in false.items() if count}
    return {
        group: _summary(
            outcomes.get(group, {}), tokens[group], cost[group], added.get(group, {}),
            false.get(group, 0), routing.get(group),
        )
        for group in groups
    }  # fmt: skip


def compute(store: Store, since: float, until: float) -> dict[str, Any]:
    """Totals and breakdowns for `since` <= time < `until`."""
    window = [RequestEvent.ts >= since, RequestEvent.ts < until]
    totals = _grouped(store, None, window, None, since, until)
    false_keys = {"by_category": Feedback.category, "by_tenant": Feedback.tenant}
    breakdowns = {
        name: _grouped(
            store, key, window, false_keys.get(name), since, until, with_false=name in false_keys
        )
        for name, key in GROUPS.items()
    }
    return {
        "object": "stats",
        "since": since,
        "until": until,
        "totals": totals.get(TOTAL) or _summary({}, 0, 0.0, {}, 0),
        **{name: dict(sorted(groups.items())) for name, groups in breakdowns.items()},
    }


def series(store: Store, since: float, until: float, bucket: int) -> list[dict[str, Any]]:
    """The same figures per time bucket of `bucket` seconds (aligned to multiples of it),
    oldest first; buckets without requests or verdicts are left out. One GROUP BY per
    figure over the window, the bucket computed in SQL."""
    window = [RequestEvent.ts >= since, RequestEvent.ts < until]
    sqlite = store.engine.dialect.name == "sqlite"

    def floor(quotient: ColumnElement[float]) -> ColumnElement[int]:
        # CAST truncates on SQLite (times are positive: the floor); PostgreSQL rounds
        return cast(quotient, Integer) if sqlite else cast(func.floor(quotient), BigInteger)

    key = floor(RequestEvent.ts / bucket)
    false_key = floor(Feedback.ts / bucket)
    grouped = _grouped(store, key, window, false_key, since, until)
    return [{"start": int(k) * bucket, **grouped[k]} for k in sorted(grouped)]
