from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.gateway.conftest import AppFactory, chat, count_entries, request_events, stored_entries
from tests.support.fake_upstream import FakeUpstream


def ask(
    client: TestClient,
    text: str,
    category: str | None = None,
    namespace: str | None = None,
    **extra: Any,
) -> Any:
    headers = {"x-cache-category": category} if category else {}
    if namespace:
        headers["x-cache-namespace"] = namespace
    return client.post("/v1/chat/completions", json=chat(text, **extra), headers=headers)


def entries(client: TestClient) -> list[SimpleNamespace]:
    return [SimpleNamespace(**row) for row in stored_entries(client)]


def test_creative_serves_exact_repeats_only_and_temperature_is_per_category(
    client: TestClient, upstream: FakeUpstream
) -> None:
    poem = "Write a poem about the sea at dawn"
    first = ask(client, poem, temperature=0.9)
    assert (first.headers["x-cache"], first.headers["x-cache-category"]) == ("miss", "creative")
    again = ask(client, poem, temperature=0.9)  # the same prompt asked again is a repeat
    assert (again.headers["x-cache"], again.headers["x-cache-tier"]) == ("hit", "exact")
    assert again.json()["choices"] == first.json()["choices"]
    # A paraphrase wants its own poem: no semantic hit from a creative entry.
    near = ask(client, "Write a poem about the sea at sunrise", temperature=0.9)
    assert near.headers["x-cache"] == "miss"
    assert len(upstream.calls) == 2 and count_entries(client) == 2
    # Above the category's max_temperature (1.0): not cached, and the header says why.
    hot = ask(client, poem, temperature=1.5)
    assert hot.headers["x-cache"] == "bypass"
    assert hot.headers["x-cache-bypass-reason"] == "temperature_above_limit"
    assert len(upstream.calls) == 3 and count_entries(client) == 2
    events = request_events(client)
    assert [(e.category, e.category_step) for e in events[:2]] == [("creative", "rule")] * 2
    assert events[-1].bypass_reason == "temperature_above_limit"


@pytest.mark.parametrize("category", ["creative", "default"])  # exact repeats only, or not
def test_a_pool_keeps_distinct_answers_and_serves_one_once_full(
    make_fast_app: AppFactory, upstream: FakeUpstream, category: str
) -> None:
    with make_fast_app(categories={category: {"pool": 3}}) as client:
        story = "Write a short story about a lighthouse keeper"
        # While the pool fills, not even the semantic tier serves the stored answers.
        kinds = [ask(client, story, category, temperature=0.8).headers["x-cache"] for _ in range(3)]
        assert kinds == ["miss"] * 3  # the pool fills: each asks the upstream
        pooled = {e.id for e in entries(client)}
        assert len(pooled) == 3 and len(upstream.calls) == 3
        served = set()
        for _ in range(24):
            response = ask(client, story, category, temperature=0.8)
            assert response.headers["x-cache"] == "hit"
            served.add(int(response.headers["x-cache-entry"]))
        assert served <= pooled and len(served) >= 2  # random among the pool (p of 1: 3^-23)
        assert len(upstream.calls) == 3
        # At temperature 0 a stored answer is served at once, pool full or not.
        other = "Write a limerick about a cat"
        assert ask(client, other, category, temperature=0).headers["x-cache"] == "miss"
        assert ask(client, other, category, temperature=0).headers["x-cache"] == "hit"
        assert ask(client, other, category, temperature=0.8).headers["x-cache"] == "miss"  # filling


def test_policy_decides_ttl_threshold_and_partition(client: TestClient) -> None:
    before = time.time()
    weather = ask(client, "What is the weather in Lisbon today?")
    assert weather.headers["x-cache-category"] == "time_sensitive"
    assert weather.headers["x-cache-threshold"] == "0.9200"
    code = ask(client, "How do I read a JSON file in Python?", category="code")
    assert code.headers["x-cache-category-step"] == "header"
    assert code.headers["x-cache-threshold"] == "0.9600"
    stored = {e.category: e for e in entries(client)}
    assert stored["time_sensitive"].expires_at is not None
    assert before + 600 <= stored["time_sensitive"].expires_at <= time.time() + 600  # 10 min
    assert stored["code"].expires_at is not None
    assert stored["code"].expires_at >= before + 30 * 24 * 3600  # 30 days
    events = request_events(client)
    assert [e.threshold for e in events] == [0.92, 0.96]


def test_a_paraphrase_classified_differently_still_hits_at_the_stricter_threshold(
    client: TestClient, upstream: FakeUpstream
) -> None:
    ask(client, "How do I reverse a list in Python?", category="code")
    other = ask(client, "how can I reverse a list in python", category="factual")
    assert other.headers["x-cache"] == "hit"
    assert other.headers["x-cache-category"] == "factual"
    assert len(upstream.calls) == 1
    # These two are 0.95 similar: enough for factual (0.92), not for code (0.96).
    stored, asked = "What is the capital of Peru?", "Which city is the capital of Peru?"
    for namespace, category, expected in (("a", "factual", "hit"), ("b", "code", "miss")):
        ask(client, stored, category=category, namespace=namespace)
        found = ask(client, asked, category="factual", namespace=namespace)
        assert found.headers["x-cache"] == expected, category


QUESTIONS = {
    "a": "What is the tallest mountain in Africa?",
    "b": "Who painted the ceiling of the Sistine Chapel?",
    "c": "How many bones does an adult human have?",
    "d": "What is the chemical symbol for gold?",
}


@pytest.mark.parametrize(
    ("eviction", "evicted"),
    [
        ("fifo", "a"),  # stored first
        ("lfu", "b"),  # one hit, the others two
        ("lru", "c"),  # its last hit is the oldest
    ],
)
def test_quota_evicts_by_policy_from_store_and_index(
    make_app: AppFactory, upstream: FakeUpstream, tmp_path: Path, eviction: str, evicted: str
) -> None:
    policy = {"quota": 3, "eviction": eviction}
    with make_app(categories={"factual": policy}, db=tmp_path / f"{eviction}.db") as client:
        gateway = client.app.state.gateway  # type: ignore[attr-defined]
        for name in "abc":
            ask(client, QUESTIONS[name], category="factual")
        for name in "ccbaa":  # c: 2 hits, then b: 1 hit, then a: 2 hits (most recent)
            assert ask(client, QUESTIONS[name], category="factual").headers["x-cache"] == "hit"
        client.portal.call(gateway.events.flush)  # type: ignore[union-attr]
        ask(client, QUESTIONS["d"], category="factual")  # the fourth entry: one must go
        kept = {e.text for e in entries(client)}
        assert kept == {QUESTIONS[name] for name in "abcd" if name != evicted}
        calls = len(upstream.calls)
        again = ask(client, QUESTIONS[evicted], category="factual")
        assert again.headers["x-cache"] == "miss"  # gone from the index too, not only the store
        assert len(upstream.calls) == calls + 1


def test_load_lowers_the_threshold_and_relaxes_back(
    make_app: AppFactory, upstream: FakeUpstream
) -> None:
    policy = {"threshold": 0.99, "threshold_floor": 0.80}
    with make_app(categories={"factual": policy}, adaptation={"max_inflight": 4}) as client:
        gateway = client.app.state.gateway  # type: ignore[attr-defined]
        ask(client, "Who painted the Mona Lisa?", category="factual")
        paraphrase = "Which artist painted the Mona Lisa?"
        calm = ask(client, paraphrase, category="factual", max_tokens=1)
        assert calm.headers["x-cache-threshold"] == "0.9900"
        for _ in range(4):  # the upstream is full
            gateway.load.started("gpt-4o-mini")
        busy = ask(client, paraphrase, category="factual")
        assert busy.headers["x-cache-threshold"] == "0.8000"
        assert busy.headers["x-cache"] == "hit"  # between the floor and the policy's threshold
        assert float(busy.headers["x-cache-similarity"]) < 0.99
        for _ in range(4):
            gateway.load.finished("gpt-4o-mini", 0.01)
        relaxed = ask(client, paraphrase, category="factual", max_tokens=2)
        assert relaxed.headers["x-cache-threshold"] == "0.9900"


def test_feedback_may_name_the_category_a_prompt_should_have_had(
    seeded_admin_client: TestClient,
) -> None:
    from gateway.store.feedback import category_labels
    from tests.gateway.conftest import ADMIN

    client = seeded_admin_client
    judged = {"entry_id": 1, "verdict": "right", "category": "factual"}
    response = client.post("/admin/feedback", json=judged, headers=ADMIN)
    assert response.status_code == 201 and response.json()["category"] == "factual"
    unknown = {"entry_id": 1, "verdict": "right", "category": "nope"}
    refused = client.post("/admin/feedback", json=unknown, headers=ADMIN)
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "category"
    plain = client.post("/admin/feedback", json={"entry_id": 2, "verdict": "right"}, headers=ADMIN)
    assert plain.status_code == 201 and plain.json()["category"] is None
    store = client.app.state.gateway.store  # type: ignore[attr-defined]
    assert category_labels(store) == [("What is the capital of Peru?", "factual")]


def test_the_served_model_classifies_and_a_category_added_through_the_api_joins(
    make_app: AppFactory, trained_embedder: Any
) -> None:
    from tests.gateway.conftest import ADMIN

    with make_app(embedder_=trained_embedder) as client:
        assert client.app.state.gateway.classifier.model is not None  # type: ignore[attr-defined]
        asked = ask(client, "Who won the last Super Bowl?")
        step = (asked.headers["x-cache-category"], asked.headers["x-cache-category-step"])
        assert step == ("time_sensitive", "model")
        events = request_events(client)
        assert (events[-1].category, events[-1].category_step) == ("time_sensitive", "model")
        recipes = {"prototypes": ["How long do I bake banana bread?"], "ttl_seconds": 86400}
        created = client.put("/admin/policies/recipes", json=recipes, headers=ADMIN)
        assert created.status_code in (200, 201), created.text
        near = ask(client, "How long should banana bread bake for?")
        assert (near.headers["x-cache-category"], near.headers["x-cache-category-step"]) == (
            "recipes",
            "prototype",
        )
        other = ask(client, "Who wrote the novel Moby Dick?")
        assert other.headers["x-cache-category-step"] == "model"
