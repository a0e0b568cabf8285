"""Routes end to end: a route's misses go to its small or large member on the fake upstream
(loopback), the small one with in-context examples from the caller's own cache."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.gateway.conftest import ADMIN, AppFactory, request_events, stored_entries
from tests.support.fake_upstream import FakeUpstream, answer_for

ALICE = {"authorization": "Bearer sk-alice"}
BOB = {"authorization": "Bearer sk-bob"}
SYSTEM = {"role": "system", "content": "Answer briefly."}
LIST = "how do I reverse a list in python quickly"
STRING = "how do I reverse a string in python quickly"
TUPLE = "how do I reverse a tuple in python quickly"


def routed_settings(**default: Any) -> dict[str, Any]:
    """A small and a large model on the fake upstream, routed as `auto`; the default
    category with a strict hit threshold, so that neighbours are examples, not hits."""
    model = {"api_base": "", "api_key_env": "FAKE_UPSTREAM_KEY", "timeout_s": 2.0}
    return {
        "models": [
            {**model, "name": "mini", "litellm_model": "openai/gpt-4o-mini"},
            {**model, "name": "big", "litellm_model": "openai/gpt-4o", "tier": "large"},
        ],
        "routes": [{"name": "auto", "small": "mini", "large": "big"}],
        "categories": {
            "default": {"threshold": 0.99, "threshold_floor": 0.99, "example_floor": 0.3, **default}
        },
    }


def _app(
    make_fast_app: AppFactory, upstream: FakeUpstream, db: Path | None = None, **default: Any
) -> Any:
    settings = routed_settings(**default)
    for model in settings["models"]:
        model["api_base"] = upstream.base_url
    return make_fast_app(db=db, **settings)


def ask(
    client: TestClient,
    text: str,
    *,
    route: str | None = None,
    headers: dict[str, str] = ALICE,
    stream: bool = False,
) -> Any:
    extra = {"x-cache-category": "default", **({"x-gateway-route": route} if route else {})}
    body = {"model": "auto", "messages": [SYSTEM, {"role": "user", "content": text}]}
    response = client.post(
        "/v1/chat/completions", json={**body, "stream": stream}, headers={**headers, **extra}
    )
    assert response.status_code == 200, response.text
    return response


def test_examples_reach_the_small_model_as_prior_turns_from_the_own_tenant_only(
    make_fast_app: AppFactory, upstream: FakeUpstream
) -> None:
    with _app(make_fast_app, upstream) as client:
        large = ask(client, LIST, route="large")
        assert large.headers["x-gateway-route"] == "large"
        assert "x-cache-examples" not in large.headers
        (example,) = stored_entries(client)
        assert example["answered_tier"] == "large"

        upstream.calls.clear()
        small = ask(client, STRING, route="small")
        assert small.headers["x-gateway-route"] == "small"
        assert small.headers["x-gateway-route-reason"] == "client"
        assert small.headers["x-cache-examples"] == f"count=1; ids={example['id']}"
        (sent,) = upstream.calls
        assert sent["model"] == "gpt-4o-mini"
        assert sent["messages"] == [
            SYSTEM,
            {"role": "user", "content": LIST},
            {"role": "assistant", "content": answer_for(LIST)},
            {"role": "user", "content": STRING},
        ]
        # what is stored is the client's request, not the one with the examples
        answered = [e for e in stored_entries(client) if e["answered_tier"] == "small"]
        (detail,) = [
            client.get(f"/admin/entries/{e['id']}", headers=ADMIN).json() for e in answered
        ]
        assert detail["request"]["messages"] == [SYSTEM, {"role": "user", "content": STRING}]

        # another tenant asks the same: nothing of alice's reaches its prompt
        upstream.calls.clear()
        other = ask(client, STRING, route="small", headers=BOB)
        assert "x-cache-examples" not in other.headers
        assert upstream.calls[0]["messages"] == [SYSTEM, {"role": "user", "content": STRING}]

        # a small model's answer never becomes an example: only the large one's does
        upstream.calls.clear()
        third = ask(client, TUPLE, route="small")
        assert third.headers["x-cache-examples"] == f"count=1; ids={example['id']}"
        contents = [m["content"] for m in upstream.calls[0]["messages"]]
        assert contents == [SYSTEM["content"], LIST, answer_for(LIST), TUPLE]


def test_examples_stay_under_the_budget_and_k_max_best_last(
    make_fast_app: AppFactory, upstream: FakeUpstream, tmp_path: Path
) -> None:
    texts = [LIST, STRING, "how do I reverse a dict in python quickly"]
    with _app(make_fast_app, upstream, example_k_max=2) as client:
        for text in texts:
            ask(client, text, route="large")
        upstream.calls.clear()
        response = ask(client, TUPLE, route="small")
        assert response.headers["x-cache-examples"].startswith("count=2; ")
        messages = upstream.calls[0]["messages"]
        assert len(messages) == 1 + 2 * 2 + 1
        assert [m["role"] for m in messages] == [
            "system", "user", "assistant", "user", "assistant", "user",
        ]  # fmt: skip
        assert all(m["content"] == answer_for(p["content"])
                   for p, m in zip(messages[1:5:2], messages[2:5:2], strict=True))  # fmt: skip
        ids = response.headers["x-cache-examples"].split("ids=")[1].split(",")
        by_id = {str(e["id"]): e["text"] for e in stored_entries(client)}
        # the header lists the best first; the prompt has the best last, nearest the question
        assert [messages[3]["content"], messages[1]["content"]] == [by_id[i] for i in ids]

    with _app(make_fast_app, upstream, tmp_path / "b.db", example_budget_tokens=20) as client:
        ask(client, LIST, route="large")
        upstream.calls.clear()
        response = ask(client, STRING, route="small")
        assert "x-cache-examples" not in response.headers  # one example is ~36 tokens
        assert len(upstream.calls[0]["messages"]) == 2


def test_a_category_without_examples_gives_none_and_prefers_its_member(
    make_fast_app: AppFactory, upstream: FakeUpstream
) -> None:
    with _app(make_fast_app, upstream, examples=False, route="small") as client:
        ask(client, LIST, route="large")
        upstream.calls.clear()
        response = ask(client, STRING)  # no header: the category decides
        assert response.headers["x-gateway-route"] == "small"
        assert response.headers["x-gateway-route-reason"] == "category"
        assert "x-cache-examples" not in response.headers
        assert len(upstream.calls[0]["messages"]) == 2


def test_an_idle_large_model_answers_misses_without_good_examples(
    make_fast_app: AppFactory, upstream: FakeUpstream
) -> None:
    with _app(make_fast_app, upstream) as client:
        response = ask(client, LIST)
        assert response.headers["x-gateway-route"] == "large"
        assert response.headers["x-gateway-route-reason"] == "quality"
        assert upstream.calls[-1]["model"] == "gpt-4o"


def test_feedback_on_an_answer_made_with_examples_teaches_their_utility(
    make_fast_app: AppFactory, upstream: FakeUpstream
) -> None:
    with _app(make_fast_app, upstream) as client:
        ask(client, LIST, route="large")
        ask(client, STRING, route="small")
        entries = {e["answered_tier"]: e for e in stored_entries(client)}
        example, answer = entries["large"], entries["small"]
        assert example["example"]["utility"] == pytest.approx(0.5)
        verdict = client.post(
            "/admin/feedback", json={"entry_id": answer["id"], "verdict": "right"}, headers=ADMIN
        )
        assert verdict.status_code == 201, verdict.text
        assert verdict.json()["examples_credited"] == 1
        after = {e["id"]: e for e in stored_entries(client)}[example["id"]]["example"]
        assert after["helped"] == 1 and after["utility"] == pytest.approx(2 / 3)

        wrong = client.post(
            "/admin/feedback", json={"entry_id": answer["id"], "verdict": "wrong"}, headers=ADMIN
        )
        assert wrong.json()["examples_credited"] == 1 and wrong.json()["demoted"] is True
        after = {e["id"]: e for e in stored_entries(client)}[example["id"]]["example"]
        assert after["did_not_help"] == 1 and after["utility"] == pytest.approx(0.5)


def test_routing_shows_in_events_stats_and_metrics(
    make_fast_app: AppFactory, upstream: FakeUpstream
) -> None:
    with _app(make_fast_app, upstream) as client:
        ask(client, LIST, route="large")
        ask(client, STRING, route="small")
        events = request_events(client)
        assert [(e.route, e.route_reason) for e in events] == [
            ("large", "client"), ("small", "client"),
        ]  # fmt: skip
        assert events[0].examples is None and events[1].examples is not None
        assert events[0].routing_saved_usd is None
        assert events[1].routing_saved_usd is not None and events[1].routing_saved_usd > 0

        stats = client.get("/admin/stats", headers=ADMIN).json()
        routing = stats["totals"]["routing"]
        assert (routing["routed_small"], routing["routed_large"]) == (1, 1)
        assert routing["offloaded_share"] == pytest.approx(0.5)
        assert routing["routing_saved_usd"] == round(events[1].routing_saved_usd, 6)
        assert stats["by_category"]["default"]["routing"]["routed_small"] == 1

        metrics = client.get("/metrics").text
        labels = 'category="default",model="auto",reason="client",route="small"'
        assert f"gateway_routed_total{{{labels}}} 1.0" in metrics
        assert "gateway_examples_given_total" in metrics


def test_the_route_header_is_checked_and_may_be_forbidden_per_key(
    make_fast_app: AppFactory, upstream: FakeUpstream
) -> None:
    digest = hashlib.sha256(b"sk-carol").hexdigest()
    tenants = {"virtual_keys": [{"key_sha256": digest, "tenant": "carol", "route_header": False}]}
    settings = routed_settings()
    for model in settings["models"]:
        model["api_base"] = upstream.base_url
    with make_fast_app(tenants=tenants, **settings) as client:
        body = {"model": "auto", "messages": [{"role": "user", "content": "hello there"}]}
        upstream.calls.clear()
        bad = client.post(
            "/v1/chat/completions", json=body, headers={**ALICE, "x-gateway-route": "tiny"}
        )
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "x-gateway-route"
        carol = {"authorization": "Bearer sk-carol"}
        forbidden = client.post(
            "/v1/chat/completions", json=body, headers={**carol, "x-gateway-route": "small"}
        )
        assert forbidden.status_code == 403
        assert forbidden.json()["error"]["type"] == "permission_error"
        assert upstream.calls == []  # refused before anything went upstream
        auto = client.post(
            "/v1/chat/completions", json=body, headers={**carol, "x-gateway-route": "auto"}
        )
        assert auto.status_code == 200
        allowed = client.post(
            "/v1/chat/completions", json=body, headers={**ALICE, "x-gateway-route": "small"}
        )
        assert allowed.headers["x-gateway-route"] == "small"


def test_routes_are_listed_and_single_models_still_answer_as_configured(
    make_fast_app: AppFactory, upstream: FakeUpstream
) -> None:
    with _app(make_fast_app, upstream) as client:
        names = [m["id"] for m in client.get("/v1/models").json()["data"]]
        assert names == ["mini", "big", "auto"]
        (route,) = client.get("/admin/upstreams", headers=ADMIN).json()["routes"]
        assert (route["name"], route["small"], route["large"]) == ("auto", "mini", "big")
        assert route["small_cheaper"] is True  # gpt-4o-mini costs less per token than gpt-4o
        assert route["bar"] == pytest.approx(0.75) and route["large_pressure"] == 0.0
        assert client.get("/v1/models/auto").status_code == 200
        direct = client.post(
            "/v1/chat/completions",
            json={"model": "big", "messages": [{"role": "user", "content": "hi"}]},
            headers={**ALICE, "x-gateway-route": "small"},  # not a route: the header is moot
        )
        assert direct.headers["x-gateway-route"] == "large"
        assert "x-gateway-route-reason" not in direct.headers
        assert upstream.calls[-1]["model"] == "gpt-4o"


def test_a_streamed_miss_gets_its_examples_too(
    make_fast_app: AppFactory, upstream: FakeUpstream
) -> None:
    with _app(make_fast_app, upstream) as client:
        ask(client, LIST, route="large")
        upstream.calls.clear()
        response = ask(client, STRING, route="small", stream=True)
        assert "data: [DONE]" in response.text
        assert response.headers["x-cache-examples"].startswith("count=1; ")
        (sent,) = upstream.calls
        assert sent["stream"] is True and sent["model"] == "gpt-4o-mini"
        assert [m["content"] for m in sent["messages"]] == [
            SYSTEM["content"], LIST, answer_for(LIST), STRING,
        ]  # fmt: skip
        (event,) = [e for e in request_events(client) if e.route == "small"]
        assert event.routing_saved_usd is not None and event.routing_saved_usd > 0


def test_a_category_without_examples_lends_none_to_another(
    make_fast_app: AppFactory, upstream: FakeUpstream
) -> None:
    with _app(make_fast_app, upstream) as client:
        for category, text in (("sensitive", LIST), ("factual", STRING)):
            response = client.post(
                "/v1/chat/completions",
                json={"model": "auto", "messages": [SYSTEM, {"role": "user", "content": text}]},
                headers={**ALICE, "x-cache-category": category, "x-gateway-route": "large"},
            )
            assert response.headers["x-cache-category"] == category
        ids = {e["category"]: e["id"] for e in stored_entries(client)}
        response = ask(client, TUPLE, route="small")  # default: both entries are near
        assert response.headers["x-cache-examples"] == f"count=1; ids={ids['factual']}"
