"""`/admin/stats` aggregated in SQL agrees with the same figures computed by hand."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.store import open_store
from gateway.store.models import Feedback, RequestEvent
from gateway.store.queries import Store
from gateway.store.stats import compute
from tests.support.stores import store_url

OUTCOMES = ["miss", "hit_exact", "hit_semantic", "hit_coalesced", "bypass", "error"]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(store_url(tmp_path / "gateway.db"))
    yield opened
    opened.engine.dispose()


def _nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def test_sql_aggregates_match_a_direct_count(store: Store) -> None:
    rng = random.Random(7)
    events = [
        RequestEvent(
            ts=float(rng.randrange(0, 200)),
            tenant=rng.choice(["t1", "t2", "t3"]),
            category=rng.choice(["code", "math", "default"]),
            outcome=rng.choice(OUTCOMES),
            latency_ms=rng.uniform(1, 200),
            upstream_ms=rng.choice([None, rng.uniform(0, 150)]),
            prompt_tokens=rng.randrange(0, 50),
            completion_tokens=rng.randrange(0, 50),
            cost_usd=rng.uniform(0, 0.01),
            requested_model=rng.choice(["small", "large"]),
        )
        for _ in range(600)
    ]
    wrong = [
        Feedback(
            ts=50.0,
            tenant="t1",
            entry_id=1,
            correct=False,
            category="code",
            source="admin",
            entry_text="q",
        ),
        Feedback(
            ts=60.0,
            tenant="t2",
            entry_id=2,
            correct=True,
            category="math",
            source="admin",
            entry_text="q",
        ),
        Feedback(
            ts=500.0,
            tenant="t1",
            entry_id=3,
            correct=False,
            category="code",
            source="admin",
            entry_text="q",
        ),
    ]
    with store.session() as session, session.begin():
        session.add_all([*events, *wrong])

    stats = compute(store, since=20.0, until=180.0)
    inside = [e for e in events if 20.0 <= e.ts < 180.0]
    added = [max(0.0, e.latency_ms - (e.upstream_ms or 0.0)) for e in inside]
    hits = [e for e in inside if e.outcome.startswith("hit")]
    totals = stats["totals"]
    outcomes = Counter(e.outcome for e in inside)
    assert totals["requests"] == len(inside) and totals["hits"] == len(hits)
    assert (totals["misses"], totals["bypasses"], totals["errors"]) == (
        outcomes["miss"],
        outcomes["bypass"],
        outcomes["error"],
    )
    assert totals["tokens_saved"] == sum(e.prompt_tokens + e.completion_tokens for e in hits)
    assert totals["cost_saved_usd"] == pytest.approx(sum(e.cost_usd for e in hits), abs=1e-6)
    for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        assert totals["added_latency_ms"][name] == pytest.approx(_nearest_rank(added, q))
    assert totals["false_hits"] == 1  # the other wrong verdict is outside the window
    for tenant in ("t1", "t2", "t3"):
        mine = [e for e in inside if e.tenant == tenant]
        assert stats["by_tenant"][tenant]["requests"] == len(mine)
        mine_added = [max(0.0, e.latency_ms - (e.upstream_ms or 0.0)) for e in mine]
        assert stats["by_tenant"][tenant]["added_latency_ms"]["p95"] == pytest.approx(
            _nearest_rank(mine_added, 0.95)
        )
    assert stats["by_category"]["code"]["false_hits"] == 1
    assert sum(g["requests"] for g in stats["by_model"].values()) == len(inside)


def test_an_empty_window_has_no_percentiles(store: Store) -> None:
    stats = compute(store, since=0.0, until=10.0)
    assert stats["totals"]["requests"] == 0
    assert stats["totals"]["added_latency_ms"] == {"p50": None, "p95": None, "p99": None}
    assert stats["by_category"] == {}


def test_the_series_matches_the_stats_of_each_bucket(store: Store) -> None:
    """Each bucket of the series holds what `/admin/stats` gives for that bucket's window."""
    from gateway.store.stats import series

    rng = random.Random(11)
    with store.session() as session, session.begin():
        session.add_all(
            RequestEvent(
                ts=1000.0 + rng.uniform(0, 300), tenant="t1", category="default",
                outcome=rng.choice(OUTCOMES), latency_ms=rng.uniform(1, 100),
                upstream_ms=rng.choice([None, 5.0]), prompt_tokens=3, completion_tokens=4,
                cost_usd=0.001, requested_model="small",
            )
            for _ in range(300)
        )  # fmt: skip
        session.add(
            Feedback(ts=1130.0, tenant="t1", entry_id=1, correct=False, category="default",
                     source="admin", entry_text="q")
        )  # fmt: skip
    points = series(store, 900.0, 1400.0, 60)
    assert [p["start"] for p in points] == [960, 1020, 1080, 1140, 1200, 1260]
    assert sum(p["requests"] for p in points) == 300
    for point in points:
        alone = compute(store, point["start"], point["start"] + 60)["totals"]
        assert point == {"start": point["start"], **alone}
    assert [p["false_hits"] for p in points] == [0, 0, 1, 0, 0, 0]


def test_the_series_endpoint_validates_its_bucket(seeded_admin_client: Any) -> None:
    from tests.gateway.conftest import ADMIN

    client = seeded_admin_client
    found = client.get("/admin/stats/series", params={"bucket": 60}, headers=ADMIN)
    assert found.status_code == 200, found.text
    body = found.json()
    assert body["object"] == "stats.series" and body["bucket"] == 60
    totals = client.get("/admin/stats", headers=ADMIN).json()["totals"]
    assert sum(p["requests"] for p in body["data"]) == totals["requests"] == 2
    for bad in ({"bucket": 0}, {"bucket": "x"}, {"bucket": 1, "since": 0}):
        refused = client.get("/admin/stats/series", params=bad, headers=ADMIN)
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "bucket"
    assert client.get("/admin/stats/series").status_code == 401
