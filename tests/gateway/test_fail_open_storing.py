"""Under load the cache keeps learning: a miss whose lookup failed open (the deadline passed,
or the embedding queue was full) is still embedded after its answer and stored."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from embeddings.protocol import Vectors
from tests.gateway.conftest import AppFactory, chat, count_entries, stored_entries
from tests.support.embedders import HashingEmbedder


class Slow(HashingEmbedder):
    """The hashing embedder, taking `seconds` per model call (as a loaded model would)."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.texts = 0

    def embed(self, texts: Sequence[str]) -> Vectors:
        time.sleep(self.seconds)
        self.texts += len(texts)
        return super().embed(texts)


def settle(client: TestClient) -> None:
    """Wait for the answers being stored after they were sent."""
    gateway = client.app.state.gateway  # type: ignore[attr-defined]

    async def drained() -> None:
        async with asyncio.timeout(30):  # bounded: a store that hangs fails the test
            while gateway.background:
                await asyncio.gather(*gateway.background, return_exceptions=True)

    client.portal.call(drained)  # type: ignore[union-attr]


def test_misses_that_failed_open_are_stored_after_their_answer(make_fast_app: AppFactory) -> None:
    slow = Slow(0.15)
    limits = {"cache": {"lookup_deadline_ms": 20}, "embedding": {"max_queue": 2}}
    with make_fast_app(embedder_=slow, **limits) as client:
        prompts = [f"what is the tallest tree of forest number {i}?" for i in range(12)]

        def ask(text: str) -> tuple[str, str]:
            response = client.post("/v1/chat/completions", json=chat(text, model="sim"))
            assert response.status_code == 200, response.text
            return response.headers["x-cache"], response.headers.get("x-cache-bypass-reason", "")

        with ThreadPoolExecutor(max_workers=12) as pool:
            answers = list(pool.map(ask, prompts))
        reasons = {reason for kind, reason in answers if kind == "bypass"}
        assert reasons and reasons <= {"lookup_timeout", "lookup_queue_full"}
        settle(client)
        assert count_entries(client) == len(prompts)  # every answer was learned
        metrics = {
            family.name: family
            for family in text_string_to_metric_families(client.get("/metrics").text)
        }
        (late,) = metrics["gateway_stored_after_fail_open"].samples
        assert late.value == sum(1 for kind, _ in answers if kind == "bypass")
        batches = metrics["gateway_embedding_batch_size"].samples
        assert next(s.value for s in batches if s.name.endswith("_count")) > 0
        assert "gateway_embedding_queue_depth" in metrics

        slow.seconds = 0.0  # the load is gone: the stored answers now serve
        again = client.post("/v1/chat/completions", json=chat(prompts[3], model="sim"))
        assert again.headers["x-cache"] == "hit"


def test_no_store_is_honoured_when_the_lookup_failed_open(make_fast_app: AppFactory) -> None:
    slow = Slow(0.2)
    with make_fast_app(embedder_=slow, cache={"lookup_deadline_ms": 20}) as client:
        response = client.post(
            "/v1/chat/completions",
            json=chat("is this stored anywhere?", model="sim"),
            headers={"cache-control": "no-store"},
        )
        assert response.headers["x-cache-bypass-reason"] == "lookup_timeout"
        settle(client)
        assert count_entries(client) == 0


def test_a_late_category_brings_its_own_ttl(make_fast_app: AppFactory) -> None:
    # no rule claims it, so the category comes from the nearest prototype, after the answer
    prompt = "Who holds the world record for the 100 metres?"  # a time_sensitive prototype
    slow = Slow(0.2)
    with make_fast_app(embedder_=slow, cache={"lookup_deadline_ms": 20}) as client:
        response = client.post("/v1/chat/completions", json=chat(prompt, model="sim"))
        assert response.headers["x-cache-bypass-reason"] == "lookup_timeout"
        assert response.headers["x-cache-category"] == "default"
        settle(client)
        (entry,) = stored_entries(client)
        assert entry["category"] == "time_sensitive"
        assert entry["expires_at"] - entry["created_at"] == pytest.approx(600, abs=1)


@pytest.mark.parametrize("hot_bytes", [0, 1 << 20])
def test_exact_repeats_are_served_while_the_embedder_is_overloaded(
    make_fast_app: AppFactory, hot_bytes: int
) -> None:
    slow = Slow(0.0)
    limits = {"cache": {"lookup_deadline_ms": 20, "hot_bytes": hot_bytes}}
    with make_fast_app(embedder_=slow, embedding={"max_queue": 1}, **limits) as client:
        prompts = [f"how many moons does planet number {i} have?" for i in range(6)]
        for text in prompts:
            client.post("/v1/chat/completions", json=chat(text, model="sim"))
        settle(client)
        slow.seconds = 0.3  # every embedding now outlasts the deadline; the queue fills

        def ask(text: str) -> str:
            response = client.post("/v1/chat/completions", json=chat(text, model="sim"))
            assert response.status_code == 200, response.text
            return response.headers.get("x-cache-tier", response.headers["x-cache"])

        with ThreadPoolExecutor(max_workers=12) as pool:
            tiers = list(pool.map(ask, prompts * 2))
        assert tiers == ["exact"] * 12  # from memory, or from the store while embedding
        new = client.post("/v1/chat/completions", json=chat("a question never asked", model="sim"))
        assert new.headers["x-cache"] == "bypass"  # the control: the embedder is overloaded
