from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from starlette.routing import Route
from starlette.testclient import TestClient

from gateway.admin.openapi import DOCUMENT
from gateway.store.models import Feedback, PolicyOverride
from tests.gateway.conftest import ADMIN, ADMIN_TOKEN, AppFactory, chat, count_entries
from tests.support.fake_upstream import FakeUpstream


@pytest.fixture
def admin_client(make_app: AppFactory) -> Iterator[TestClient]:
    with make_app() as client:
        yield client


def ask(client: TestClient, text: str, key: str | None = None, **headers: str) -> Any:
    if key:
        headers["authorization"] = f"Bearer {key}"
    return client.post("/v1/chat/completions", json=chat(text), headers=headers)


ROUTES = [
    ("GET", "/admin/openapi.json", None),
    ("GET", "/admin/stats", None),
    ("GET", "/admin/policies", None),
    ("GET", "/admin/policies/code", None),
    ("PUT", "/admin/policies/code", {"threshold": 0.99}),
    ("PATCH", "/admin/policies/code", {"threshold": 0.99}),
    ("DELETE", "/admin/policies/code", None),
    ("GET", "/admin/entries", None),
    ("GET", "/admin/entries/1", None),
    ("DELETE", "/admin/entries/1", None),
    ("POST", "/admin/purge", {"all": True}),
    ("GET", "/admin/upstreams", None),
]


@pytest.mark.parametrize(
    "authorization", [None, "Bearer wrong-token", f"Basic {ADMIN_TOKEN}", "Bearer"]
)
def test_without_a_valid_token_every_route_is_401_and_does_nothing(
    admin_client: TestClient, authorization: str | None
) -> None:
    ask(admin_client, "What is the capital of Peru?")
    headers = {"authorization": authorization} if authorization else {}
    for method, path, body in ROUTES:
        response = admin_client.request(method, path, json=body, headers=headers)
        assert response.status_code == 401, (method, path)
        assert response.json()["error"]["type"] == "authentication_error"
    assert count_entries(admin_client) == 1  # the purge did nothing
    assert admin_client.get("/admin/policies/code", headers=ADMIN).json()["threshold"] == 0.96


def test_no_token_configured_disables_the_admin_api(
    make_app: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    with make_app() as client:  # the control: the token works while it is configured
        assert client.get("/admin/stats", headers=ADMIN).status_code == 200
    monkeypatch.delenv("GATEWAY_ADMIN_TOKEN")
    with make_app() as client:
        response = client.get("/admin/stats", headers=ADMIN)
    assert response.status_code == 401 and "disabled" in response.json()["error"]["message"]


def test_a_configured_token_hash_works(
    make_app: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GATEWAY_ADMIN_TOKEN")  # the variable, when set, would win
    digest = hashlib.sha256(b"hashed-token").hexdigest()
    with make_app(admin={"token_sha256": digest}) as client:
        good = client.get("/admin/stats", headers={"authorization": "Bearer hashed-token"})
        assert good.status_code == 200
        assert client.get("/admin/stats", headers=ADMIN).status_code == 401


def test_openapi_matches_the_routes(admin_client: TestClient) -> None:
    document = admin_client.get("/admin/openapi.json", headers=ADMIN).json()
    assert document == json.loads(json.dumps(DOCUMENT))
    served = {
        (route.path, method.lower())
        for route in admin_client.app.routes  # type: ignore[attr-defined]
        if isinstance(route, Route) and route.path.startswith("/admin/")
        for method in route.methods or ()
        if method != "HEAD"
    }
    documented = {(path, method) for path, ops in document["paths"].items() for method in ops}
    assert served == documented
    for path, ops in document["paths"].items():
        for op in ops.values():
            names = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert names == set(path.replace("}", "{").split("{")[1::2])


def test_stats_count_outcomes_savings_and_false_hits(admin_client: TestClient) -> None:
    first = ask(admin_client, "Who wrote the novel Frankenstein?", "sk-alice")
    hit = ask(admin_client, "Who was the author of the novel Frankenstein?", "sk-alice")
    assert hit.headers["x-cache"] == "hit"
    ask(admin_client, "Who wrote the novel Frankenstein?", "sk-alice")  # exact hit
    admin_client.post(  # creative, above its max_temperature: a bypass
        "/v1/chat/completions",
        json=chat("Write a poem about rain", temperature=1.5),
        headers={"authorization": "Bearer sk-bob"},
    )
    assert (
        admin_client.post(
            "/admin/feedback",
            json={"response_id": hit.json()["id"], "verdict": "wrong"},
            headers=ADMIN,
        ).status_code
        == 201
    )
    stats = admin_client.get("/admin/stats", headers=ADMIN).json()
    totals = stats["totals"]
    assert (totals["requests"], totals["hits"], totals["misses"], totals["bypasses"]) == (
        4,
        2,
        1,
        1,
    )
    assert (totals["hits_exact"], totals["hits_semantic"]) == (1, 1)
    assert totals["hit_rate"] == 0.5 and totals["false_hits"] == 1
    usage = first.json()["usage"]
    assert totals["tokens_saved"] == 2 * (usage["prompt_tokens"] + usage["completion_tokens"])
    assert totals["cost_saved_usd"] > 0
    assert totals["added_latency_ms"]["p50"] is not None
    category = hit.headers["x-cache-category"]
    assert stats["by_category"][category]["hits"] >= 1
    assert stats["by_category"]["creative"]["bypasses"] == 1  # temperature_above_limit
    assert len(stats["by_tenant"]) == 2 and "sk-alice" not in json.dumps(stats)
    assert stats["by_model"]["gpt-4o-mini"]["requests"] == 4
    empty = admin_client.get("/admin/stats?until=1000", headers=ADMIN).json()
    assert empty["totals"]["requests"] == 0
    iso = admin_client.get("/admin/stats?since=2020-01-01T00:00:00", headers=ADMIN)
    assert iso.json()["totals"]["requests"] == 4
    for bad in ("since=yesterday", "since=2000&until=1000", "since=nan"):
        response = admin_client.get(f"/admin/stats?{bad}", headers=ADMIN)
        assert response.status_code == 400 and response.json()["error"]["param"] == "since"


def test_a_policy_change_applies_to_the_next_request_and_survives_a_restart(
    make_app: AppFactory, tmp_path: Path
) -> None:
    db = tmp_path / "policies.db"
    with make_app(db=db) as client:
        listed = client.get("/admin/policies", headers=ADMIN).json()
        assert "code" in {p["name"] for p in listed["data"]}
        before = ask(client, "How do I parse JSON in Rust?", **{"x-cache-category": "code"})
        assert before.headers["x-cache-threshold"] == "0.9600"
        changed = client.patch(
            "/admin/policies/code",
            json={"threshold": 0.99, "threshold_floor": 0.98, "quota": 5},
            headers=ADMIN,
        )
        assert changed.status_code == 200 and changed.json()["overridden"]
        after = ask(client, "How do I parse TOML in Rust?", **{"x-cache-category": "code"})
        assert after.headers["x-cache-threshold"] == "0.9900"
        bad = client.patch("/admin/policies/code", json={"eviction": "random"}, headers=ADMIN)
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "eviction"
        bad = client.patch("/admin/policies/code", json={"threshold": "high"}, headers=ADMIN)
        assert bad.status_code == 400
        assert client.get("/admin/policies/code", headers=ADMIN).json()["threshold"] == 0.99
        assert client.get("/admin/policies/nope", headers=ADMIN).status_code == 404
        assert client.patch("/admin/policies/nope", json={}, headers=ADMIN).status_code == 404
        created = client.put(
            "/admin/policies/recipes",
            json={"rules": ["\\brecipe\\b"], "ttl_seconds": 60, "ttl_ceiling_seconds": 60},
            headers=ADMIN,
        )
        assert created.status_code == 201
        recipe = ask(client, "A recipe for lentil soup please")
        assert recipe.headers["x-cache-category"] == "recipes"
    with make_app(db=db) as client:  # a restart: the database wins over the files
        policy = client.get("/admin/policies/code", headers=ADMIN).json()
        assert (policy["threshold"], policy["quota"]) == (0.99, 5)
        again = ask(client, "Any recipe for bread?")
        assert again.headers["x-cache-category"] == "recipes"
        assert client.delete("/admin/policies/code", headers=ADMIN).status_code == 200
        assert client.get("/admin/policies/code", headers=ADMIN).json()["threshold"] == 0.96
        assert client.delete("/admin/policies/code", headers=ADMIN).status_code == 404
        assert client.delete("/admin/policies/recipes", headers=ADMIN).json()["restored"] is False
        assert client.get("/admin/policies/recipes", headers=ADMIN).status_code == 404
        # `default`, which must always exist, goes back to its file too, in its place.
        order = [p["name"] for p in client.get("/admin/policies", headers=ADMIN).json()["data"]]
        default = client.get("/admin/policies/default", headers=ADMIN).json()["threshold"]
        assert (
            client.patch(
                "/admin/policies/default", json={"threshold": 0.97}, headers=ADMIN
            ).status_code
            == 200
        )
        assert client.get("/admin/policies/default", headers=ADMIN).json()["threshold"] == 0.97
        assert client.delete("/admin/policies/default", headers=ADMIN).status_code == 200
        assert client.get("/admin/policies/default", headers=ADMIN).json()["threshold"] == default
        after = [p["name"] for p in client.get("/admin/policies", headers=ADMIN).json()["data"]]
        assert after == order


def test_a_stored_policy_that_does_not_validate_is_ignored_at_start(
    make_app: AppFactory, tmp_path: Path
) -> None:
    db = tmp_path / "stale.db"
    with make_app(db=db) as client:
        response = client.patch("/admin/policies/math", json={"quota": 9}, headers=ADMIN)
        assert response.status_code == 200
        store = client.app.state.gateway.store  # type: ignore[attr-defined]
        with store.session() as session, session.begin():  # say, written by a newer version
            row = session.get(PolicyOverride, "math")
            assert row is not None
            row.policy_json = json.dumps({"quota": 9, "shiny_new_field": 1})
    with make_app(db=db) as client:  # starts, and math is the file's policy again
        policy = client.get("/admin/policies/math", headers=ADMIN).json()
        assert (policy["quota"], policy["overridden"]) == (50000, False)


def test_entries_list_filter_page_search_get_and_delete(
    admin_client: TestClient, upstream: FakeUpstream
) -> None:
    questions = [
        "What is the capital of Peru?",
        "Who discovered the structure of DNA?",
        "What is the boiling point of ethanol?",
    ]
    for text in questions:
        ask(admin_client, text)
    first = admin_client.get("/admin/entries?limit=2", headers=ADMIN).json()
    assert len(first["data"]) == 2 and first["has_more"]
    rest = admin_client.get(f"/admin/entries?limit=2&after={first['next_after']}", headers=ADMIN)
    assert [e["text"] for e in first["data"] + rest.json()["data"]] == questions
    assert not rest.json()["has_more"]
    none = admin_client.get("/admin/entries?model=other", headers=ADMIN).json()
    assert none["data"] == []
    young = admin_client.get("/admin/entries?newer_than_s=3600", headers=ADMIN).json()
    assert len(young["data"]) == 3
    old = admin_client.get("/admin/entries?older_than_s=3600", headers=ADMIN).json()
    assert old["data"] == []
    found = admin_client.get("/admin/entries?q=Peru's capital city", headers=ADMIN).json()
    assert found["data"][0]["text"] == questions[0] and found["data"][0]["similarity"] > 0.7
    entry_id = found["data"][0]["id"]
    one = admin_client.get(f"/admin/entries/{entry_id}", headers=ADMIN).json()
    assert one["request"]["messages"][0]["content"] == questions[0]
    assert one["response"]["choices"][0]["message"]["content"]
    assert admin_client.delete(f"/admin/entries/{entry_id}", headers=ADMIN).status_code == 200
    assert admin_client.get(f"/admin/entries/{entry_id}", headers=ADMIN).status_code == 404
    assert admin_client.delete(f"/admin/entries/{entry_id}", headers=ADMIN).status_code == 404
    assert admin_client.get("/admin/entries/abc", headers=ADMIN).status_code == 400
    for bad in ("limit=0", "limit=501", "after=x", "older_than_s=-1", "q="):
        assert admin_client.get(f"/admin/entries?{bad}", headers=ADMIN).status_code == 400
    calls = len(upstream.calls)
    # Gone from the index as well: a paraphrase is a miss now.
    assert ask(admin_client, "Which city is the capital of Peru?").headers["x-cache"] == "miss"
    assert len(upstream.calls) == calls + 1


def test_purge_by_filter_or_all_from_store_and_index(admin_client: TestClient) -> None:
    ask(admin_client, "What is the weather in Oslo today?")  # time_sensitive
    ask(admin_client, "Who painted The Night Watch?", **{"x-cache-category": "factual"})
    ask(admin_client, "Who painted Guernica?", **{"x-cache-category": "factual"})
    for body, message in (
        ({}, "at least one filter"),
        ({"colour": "red"}, "unknown field"),
        ({"all": "yes"}, "true or false"),
        ({"all": True, "category": "factual"}, "cannot be combined"),
        ({"older_than_s": "old"}, "number"),
    ):
        response = admin_client.post("/admin/purge", json=body, headers=ADMIN)
        assert response.status_code == 400 and message in response.json()["error"]["message"]
    assert count_entries(admin_client) == 3
    purged = admin_client.post("/admin/purge", json={"category": "factual"}, headers=ADMIN)
    assert purged.json() == {"object": "cache.purge", "deleted": 2}
    again = ask(admin_client, "Who painted Guernica?", **{"x-cache-category": "factual"})
    assert again.headers["x-cache"] == "miss"
    old = admin_client.post("/admin/purge", json={"older_than_s": 3600}, headers=ADMIN)
    assert old.json()["deleted"] == 0
    everything = admin_client.post("/admin/purge", json={"all": True}, headers=ADMIN)
    assert everything.json()["deleted"] == 2 and count_entries(admin_client) == 0


def test_feedback_demotes_a_wrong_hit_and_records_the_pair(make_app: AppFactory) -> None:
    with make_app() as client:
        original = "How do I undo the last git commit?"
        ask(client, original, "sk-alice")
        paraphrase = "How can I undo my last commit in git?"
        hit = ask(client, paraphrase, "sk-alice")
        assert hit.headers["x-cache"] == "hit"
        response_id = hit.json()["id"]
        # Another tenant cannot judge it; bad verdicts and unknown ids are refused.
        stranger = client.post(
            "/admin/feedback",
            json={"response_id": response_id, "verdict": "wrong"},
            headers={"authorization": "Bearer sk-mallory"},
        )
        assert stranger.status_code == 404
        bad = client.post(
            "/admin/feedback",
            json={"response_id": response_id, "verdict": "meh"},
            headers={"authorization": "Bearer sk-alice"},
        )
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "verdict"
        keyless = client.post("/admin/feedback", json={"response_id": response_id})
        assert keyless.status_code == 401  # the shared anonymous tenant cannot judge
        missing = client.post("/admin/feedback", json={"verdict": "wrong"}, headers=ADMIN)
        assert missing.status_code == 400
        unknown = client.post(
            "/admin/feedback",
            json={"response_id": "chatcmpl-nope", "verdict": "wrong"},
            headers=ADMIN,
        )
        assert unknown.status_code == 404
        verdict = client.post(
            "/admin/feedback",
            json={"response_id": response_id, "verdict": "wrong", "note": "different question"},
            headers={"authorization": "Bearer sk-alice"},  # the tenant, with its own key
        )
        assert verdict.status_code == 201 and verdict.json()["demoted"]
        # The neighbourhood is not served it again; its own exact request still is.
        assert ask(client, paraphrase, "sk-alice").headers["x-cache"] == "miss"
        assert ask(client, original, "sk-alice").headers["x-cache-tier"] == "exact"
        store = client.app.state.gateway.store  # type: ignore[attr-defined]
        with store.session() as session:
            (row,) = session.scalars(select(Feedback))
        assert (row.correct, row.source, row.note) == (False, "tenant", "different question")
        assert (row.prompt, row.entry_text) == (paraphrase, original)
        assert row.similarity is not None and row.similarity > 0.9
        right = client.post(
            "/admin/feedback", json={"entry_id": row.entry_id, "verdict": "right"}, headers=ADMIN
        )
        assert right.status_code == 201 and not right.json()["demoted"]


def test_upstreams_show_load_and_effective_thresholds(admin_client: TestClient) -> None:
    ask(admin_client, "What is the capital of Chile?")
    gateway = admin_client.app.state.gateway  # type: ignore[attr-defined]
    for _ in range(64):
        gateway.load.started("gpt-4o-mini")
    data = admin_client.get("/admin/upstreams", headers=ADMIN).json()["data"]
    models = {m["model"]: m for m in data}
    busy = models["gpt-4o-mini"]
    assert busy["inflight"] == 64 and busy["load"] == 1.0 and busy["requests"] == 65
    assert busy["latency_ewma_ms"] is not None
    assert busy["effective"]["default"]["threshold"] == 0.90  # the floor
    assert busy["effective"]["creative"]["ttl_seconds"] == 5184000.0  # exact repeats' TTL bends
    assert (
        models["sim"]["load"] == 0.0 and models["sim"]["effective"]["default"]["threshold"] == 0.93
    )


def test_metrics_in_prometheus_format_without_tenants(client: TestClient) -> None:
    ask(client, "Who invented the telescope?", "sk-alice")
    ask(client, "Who invented the telescope?", "sk-alice")
    text = client.get("/metrics").text
    assert (
        'gateway_requests_total{category="factual",model="gpt-4o-mini",outcome="miss"} 1.0' in text
    )
    assert (
        'gateway_cache_hits_total{category="factual",model="gpt-4o-mini",tier="exact"} 1.0' in text
    )
    assert "gateway_request_latency_seconds_bucket" in text
    assert 'gateway_saved_tokens_total{category="factual",model="gpt-4o-mini"}' in text
    assert "gateway_saved_cost_usd_total" in text
    assert "tenant" not in text and "sk-alice" not in text


@pytest.mark.parametrize("with_prompt", [False, True])
def test_one_json_log_line_per_request(
    make_app: AppFactory, caplog: pytest.LogCaptureFixture, tmp_path: Path, with_prompt: bool
) -> None:
    with (
        make_app(server={"log_prompts": with_prompt}, db=tmp_path / f"{with_prompt}.db") as client,
        caplog.at_level(logging.INFO, logger="gateway.access"),
    ):
        ask(client, "What is the speed of light?", "sk-secret-key")
        ask(client, "What is the speed of light?", "sk-secret-key")
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "gateway.access"]
    assert [line["outcome"] for line in lines] == ["miss", "hit_exact"]
    assert lines[0]["category"] and lines[0]["latency_ms"] > 0 and lines[0]["response_id"]
    assert all("sk-secret-key" not in json.dumps(line) for line in lines)
    assert ("prompt" in lines[0]) is with_prompt


def test_concurrent_policy_changes_are_never_lost(admin_client: TestClient) -> None:
    async def patch(category: str, threshold: float) -> int:
        transport = httpx.ASGITransport(app=admin_client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            response = await client.patch(
                f"/admin/policies/{category}", json={"threshold": threshold}, headers=ADMIN
            )
            return response.status_code

    async def both(round_: int) -> list[int]:
        # each change reads the policies in force, stores its change, then replaces them
        return list(
            await asyncio.gather(
                patch("code", 0.97 - round_ / 1000), patch("math", 0.985 - round_ / 1000)
            )
        )

    for round_ in range(10):
        assert admin_client.portal.call(both, round_) == [200, 200]  # type: ignore[union-attr]
        code = admin_client.get("/admin/policies/code", headers=ADMIN).json()
        math = admin_client.get("/admin/policies/math", headers=ADMIN).json()
        assert (code["threshold"], math["threshold"]) == (
            pytest.approx(0.97 - round_ / 1000),
            pytest.approx(0.985 - round_ / 1000),
        ), f"round {round_}"
