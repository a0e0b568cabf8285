from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from starlette.testclient import TestClient

from tests.gateway.conftest import AppFactory, chat, count_entries, request_events, stored_entries
from tests.support.fake_upstream import FakeUpstream, answer_for


def test_miss_then_paraphrase_hit(client: TestClient, upstream: FakeUpstream) -> None:
    first = client.post("/v1/chat/completions", json=chat("How do I reverse a list in Python?"))
    assert first.status_code == 200
    assert first.headers["x-cache"] == "miss"
    assert first.headers["x-cache-category"] == "code"
    assert first.headers["x-cache-category-step"] == "prototype"
    content = first.json()["choices"][0]["message"]["content"]
    assert content == answer_for("How do I reverse a list in Python?")

    second = client.post("/v1/chat/completions", json=chat("how can I reverse a list in python"))
    assert second.status_code == 200
    assert second.headers["x-cache"] == "hit"
    assert second.headers["x-cache-tier"] == "semantic"
    assert float(second.headers["x-cache-similarity"]) >= float(second.headers["x-cache-threshold"])
    assert second.headers["x-cache-threshold"] == "0.9600"  # the code policy, no load
    body = second.json()
    assert body["choices"][0]["message"]["content"] == content
    assert body["model"] == "gpt-4o-mini"
    assert body["id"] != first.json()["id"]
    assert body["usage"]["completion_tokens"] == first.json()["usage"]["completion_tokens"]
    assert len(upstream.calls) == 1
    assert upstream.keys == ["Bearer sk-upstream"]
    outcomes = [e.outcome for e in request_events(client)]
    assert outcomes == ["miss", "hit_semantic"]
    assert request_events(client)[0].cost_usd > 0  # priced from LiteLLM's map


def test_exact_hit_needs_no_embedding(make_app: AppFactory, upstream: FakeUpstream) -> None:
    with make_app() as client:
        client.post("/v1/chat/completions", json=chat("What is a B-tree?"))
        batcher = client.app.state.gateway.batcher  # type: ignore[attr-defined]
        batches = batcher.batches
        again = client.post("/v1/chat/completions", json=chat("  what is a b-tree? "))
        assert again.headers["x-cache"] == "hit"
        assert again.headers["x-cache-tier"] == "exact"
        assert batcher.batches == batches
    assert len(upstream.calls) == 1


def _sse(text: str) -> list[Any]:
    events = [line[6:] for line in text.split("\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


def test_streaming_miss_is_stored_and_streaming_hit_is_well_formed(
    client: TestClient, upstream: FakeUpstream
) -> None:
    prompt = "Explain what a hash table is."
    miss = client.post("/v1/chat/completions", json=chat(prompt, stream=True))
    assert miss.status_code == 200 and miss.headers["x-cache"] == "miss"
    chunks = _sse(miss.text)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text.strip() == answer_for(prompt)
    assert all(c["choices"] for c in chunks)  # usage was not asked for

    hit = client.post(
        "/v1/chat/completions",
        json=chat(
            "Explain what a hash table is", stream=True, stream_options={"include_usage": True}
        ),
    )
    assert hit.headers["x-cache"] == "hit"
    chunks = _sse(hit.text)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0
    pieces = [c["choices"][0]["delta"].get("content", "") for c in chunks[1:-2]]
    assert "".join(pieces).strip() == answer_for(prompt)
    assert all(p.strip() and " " not in p.strip() for p in pieces)  # word boundaries
    assert len(upstream.calls) == 1


def test_sdk_parses_hits_and_misses(client: TestClient) -> None:
    openai = pytest.importorskip("openai")
    sdk = openai.OpenAI(
        base_url="http://testserver/v1", api_key="sk-team", http_client=client, max_retries=0
    )
    first = sdk.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Name a prime number."}]
    )
    stream = sdk.chat.completions.create(
        model="gpt-4o-mini",
        stream=True,
        stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "Name a prime number."}],
    )
    chunks = list(stream)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == first.choices[0].message.content
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0


def test_tenants_never_see_each_other(client: TestClient, upstream: FakeUpstream) -> None:
    alice = {"authorization": "Bearer sk-alice"}
    bob = {"authorization": "Bearer sk-bob"}
    client.post("/v1/chat/completions", json=chat("What is our refund policy?"), headers=alice)
    other = client.post(
        "/v1/chat/completions", json=chat("What is our refund policy?"), headers=bob
    )
    assert other.headers["x-cache"] == "miss"
    same = client.post(
        "/v1/chat/completions", json=chat("What is our refund policy?"), headers=alice
    )
    assert same.headers["x-cache"] == "hit"
    tenants = {row["tenant"] for row in stored_entries(client)}
    assert len(tenants) == 2 and not any("sk-" in t for t in tenants)
    assert len(upstream.calls) == 2


def test_namespace_is_an_extra_partition(client: TestClient) -> None:
    client.post(
        "/v1/chat/completions",
        json=chat("Summarise the handbook"),
        headers={"x-cache-namespace": "team-a"},
    )
    other = client.post(
        "/v1/chat/completions",
        json=chat("Summarise the handbook"),
        headers={"x-cache-namespace": "team-b"},
    )
    assert other.headers["x-cache"] == "miss"
    same = client.post(
        "/v1/chat/completions",
        json=chat("Summarise the handbook"),
        headers={"x-cache-namespace": "team-a"},
    )
    assert same.headers["x-cache"] == "hit"  # the control: the same namespace is served
    bad = client.post(
        "/v1/chat/completions", json=chat("x"), headers={"x-cache-namespace": "no spaces allowed"}
    )
    assert bad.status_code == 400


def test_context_chain(client: TestClient, upstream: FakeUpstream) -> None:
    def follow_up(first_turn: str) -> dict[str, Any]:
        return {
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "user", "content": first_turn},
                {"role": "assistant", "content": "It is a common condition."},
                {"role": "user", "content": "What are its causes?"},
            ],
        }

    assert (
        client.post("/v1/chat/completions", json=follow_up("Tell me about migraine")).headers[
            "x-cache"
        ]
        == "miss"
    )
    other = client.post("/v1/chat/completions", json=follow_up("Tell me about inflation"))
    assert other.headers["x-cache"] == "miss"
    same = client.post("/v1/chat/completions", json=follow_up("Tell me about migraine"))
    assert same.headers["x-cache"] == "hit"
    assert len(upstream.calls) == 2


def test_system_prompt_is_part_of_the_key(client: TestClient) -> None:
    def with_system(system: str) -> dict[str, Any]:
        return {
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": "Translate 'good morning'"},
            ],
        }

    client.post("/v1/chat/completions", json=with_system("Answer in French."))
    other = client.post("/v1/chat/completions", json=with_system("Answer in German."))
    assert other.headers["x-cache"] == "miss"
    same = client.post("/v1/chat/completions", json=with_system("Answer in French."))
    assert same.headers["x-cache"] == "hit"  # the control: the same system prompt is served


def test_no_cache_no_store_and_ttl(client: TestClient, upstream: FakeUpstream) -> None:
    prompt = "List three sorting algorithms"
    stored = client.post(
        "/v1/chat/completions", json=chat(prompt), headers={"cache-control": "no-store"}
    )
    assert stored.headers["x-cache"] == "miss"
    assert count_entries(client) == 0
    fresh = client.post(
        "/v1/chat/completions",
        json=chat(prompt),
        headers={"cache-control": "no-cache", "x-cache-ttl": "120"},
    )
    assert fresh.headers["x-cache"] == "bypass"
    assert count_entries(client) == 1  # no-cache skips the lookup but still stores
    (row,) = stored_entries(client)
    assert row["expires_at"] - row["created_at"] == pytest.approx(120)
    assert client.post("/v1/chat/completions", json=chat(prompt)).headers["x-cache"] == "hit"
    assert len(upstream.calls) == 2
    bad = client.post("/v1/chat/completions", json=chat(prompt), headers={"x-cache-ttl": "soon"})
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"


def test_expired_entries_are_not_served_and_are_swept(client: TestClient) -> None:
    ask = chat("What is the tallest mountain?")
    client.post("/v1/chat/completions", json=ask, headers={"x-cache-ttl": "1"})
    fresh = client.post("/v1/chat/completions", json=ask)
    assert fresh.headers["x-cache"] == "hit"  # the control: served while it lives
    time.sleep(1.2)
    again = client.post("/v1/chat/completions", json=ask)
    assert again.headers["x-cache"] == "miss"  # held in memory or not, it has expired
    gateway = client.app.state.gateway  # type: ignore[attr-defined]
    removed = client.portal.call(gateway.cache.sweep_expired)  # type: ignore[union-attr]
    assert removed == 1
    assert count_entries(client) == 1  # the fresh answer


@pytest.mark.parametrize("stream", [False, True])
def test_concurrent_identical_misses_are_coalesced(
    client: TestClient, upstream: FakeUpstream, stream: bool
) -> None:
    prompt = f"Why is the sky blue? stream={stream} [[slow:0.5]]"

    def ask(_: int) -> tuple[str, str]:
        response = client.post("/v1/chat/completions", json=chat(prompt, stream=stream))
        assert response.status_code == 200
        if not stream:
            return response.headers["x-cache"], response.json()["choices"][0]["message"]["content"]
        chunks = [
            json.loads(line[6:])
            for line in response.text.split("\n")
            if line.startswith("data: ") and line != "data: [DONE]"
        ]
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
        return response.headers["x-cache"], text.strip()

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(ask, range(4)))
    assert len(upstream.calls) == 1
    assert {text for _, text in results} == {answer_for(prompt)}
    assert sorted(cache for cache, _ in results) == ["hit", "hit", "hit", "miss"]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("How do I turn on dark mode in VS Code?", "How do I turn off dark mode in VS Code?"),
        ("What is the weather in Boston today?", "What is the weather in Paris today?"),
        ("Convert 5 km to miles", "Convert 50 km to miles"),
        ("Sort a list in ascending order in Python", "Sort a list in descending order in Python"),
    ],
)
def test_guard_rejects_opposites_numbers_and_entities(
    make_app: AppFactory, upstream: FakeUpstream, tmp_path: Path, first: str, second: str
) -> None:
    # At this threshold every pair is a hit without the guard: the guard turns them down.
    pinned = {"x-cache-category": "default"}
    for guard, expected in ((False, "hit"), (True, "miss")):
        policy = {"guard": guard, "threshold": 0.7, "threshold_floor": 0.7}
        with make_app(categories={"default": policy}, db=tmp_path / f"guard-{guard}.db") as client:
            client.post("/v1/chat/completions", json=chat(first), headers=pinned)
            response = client.post("/v1/chat/completions", json=chat(second), headers=pinned)
            assert response.headers["x-cache"] == expected, (guard, first, second)
    assert len(upstream.calls) == 3


def test_restart_keeps_entries_and_index(
    make_app: AppFactory, upstream: FakeUpstream, tmp_path: Path
) -> None:
    with make_app() as client:
        client.post("/v1/chat/completions", json=chat("What does HTTP 418 mean?"))
    assert (tmp_path / "gateway.db.index").is_dir()
    with make_app() as client:
        hit = client.post("/v1/chat/completions", json=chat("what does http 418 mean"))
        assert hit.headers["x-cache"] == "hit"
    assert len(upstream.calls) == 1


def test_other_routes(client: TestClient) -> None:
    models = client.get("/v1/models").json()
    assert {m["id"] for m in models["data"]} == {"gpt-4o-mini", "sim"}
    assert client.get("/v1/models/sim").json()["id"] == "sim"
    assert client.get("/v1/models/nope").status_code == 404
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    vectors = client.post("/v1/embeddings", json={"model": "sim", "input": ["a", "b"]}).json()
    assert len(vectors["data"]) == 2 and len(vectors["data"][0]["embedding"]) == 384
    assert np.isclose(np.linalg.norm(vectors["data"][0]["embedding"]), 1.0, atol=1e-4)
    text = client.post("/v1/completions", json={"model": "sim", "prompt": "Once upon"}).json()
    assert text["object"] == "text_completion" and text["choices"][0]["text"]
    sim = client.post("/v1/chat/completions", json=chat("hello", model="sim")).json()
    assert sim["model"] == "simulated/gpt-4o-mini"
    assert client.get("/v1/nothing").status_code == 404
    assert client.get("/v1/chat/completions").status_code == 405


def test_hits_are_counted_and_events_batched(client: TestClient) -> None:
    client.post("/v1/chat/completions", json=chat("What is a monad?"))
    for _ in range(3):
        assert (
            client.post("/v1/chat/completions", json=chat("What is a monad?")).headers["x-cache"]
            == "hit"
        )
    events = request_events(client)
    assert [e.outcome for e in events] == ["miss"] + ["hit_exact"] * 3
    assert all(e.latency_ms > 0 for e in events)
    assert {e.entry_id for e in events} == {events[0].entry_id}
    (entry,) = stored_entries(client)
    assert entry["hit_count"] == 3 and entry["last_hit_at"] is not None


def test_tool_requests_are_cached_when_configured(make_app: AppFactory) -> None:
    def tools(name: str) -> list[dict[str, Any]]:
        return [{"type": "function", "function": {"name": name, "parameters": {}}}]

    with make_app(cache={"cache_tools": True}) as client:
        first = client.post(
            "/v1/chat/completions", json=chat("What's the weather like?", tools=tools("weather"))
        )
        assert first.headers["x-cache"] == "miss"
        again = client.post(
            "/v1/chat/completions", json=chat("What's the weather like?", tools=tools("weather"))
        )
        assert again.headers["x-cache"] == "hit"
        other = client.post(
            "/v1/chat/completions", json=chat("What's the weather like?", tools=tools("forecast"))
        )
        assert other.headers["x-cache"] == "miss"  # other tools, another answer
        streamed = client.post(
            "/v1/chat/completions",
            json=chat("What's the weather like?", tools=tools("weather"), stream=True),
        )
        assert streamed.headers["x-cache"] == "bypass"


def test_simulated_upstream_is_the_default(make_app: AppFactory, upstream: FakeUpstream) -> None:
    with make_app(models=[]) as client:
        assert {m["id"] for m in client.get("/v1/models").json()["data"]} == {
            "gpt-4o-mini",
            "gpt-4o",
            "auto",  # the simulated route between them
        }
        first = client.post("/v1/chat/completions", json=chat("Tell me about HNSW"))
        assert first.json()["model"] == "simulated/gpt-4o-mini"
        assert first.json()["usage"]["completion_tokens"] > 0
        again = client.post("/v1/chat/completions", json=chat("Tell me about HNSW"))
        assert again.json()["choices"] == first.json()["choices"]
        routed = client.post(
            "/v1/chat/completions", json={**chat("What is a B-tree?"), "model": "auto"}
        )
        assert routed.headers["x-gateway-route"] in ("small", "large")
        assert routed.headers["x-gateway-model"].startswith("simulated/")
    assert upstream.calls == []


def test_a_stuck_leader_does_not_hold_others_past_the_model_timeout(
    client: TestClient, upstream: FakeUpstream
) -> None:
    from gateway.auth import ANONYMOUS
    from gateway.cache.keys import parse_chat

    gateway = client.app.state.gateway  # type: ignore[attr-defined]
    body = chat("Is this request stuck?")
    key = parse_chat(body)

    def stuck() -> None:
        future = asyncio.get_running_loop().create_future()
        gateway.inflight[(ANONYMOUS, "", key.exact_hash)] = future

    client.portal.call(stuck)  # type: ignore[union-attr]
    response = client.post("/v1/chat/completions", json=body)  # waits timeout_s (2 s)
    assert response.status_code == 200
    assert response.headers["x-cache"] == "miss"
    assert len(upstream.calls) == 1
