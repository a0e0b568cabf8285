"""What every route gets: a request id, and an event for passthrough requests too."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from tests.gateway.conftest import chat, request_events


@pytest.fixture
def client(fast_client: TestClient) -> TestClient:
    """What these tests check does not depend on meaning: the fast embedder serves."""
    return fast_client


def test_a_request_id_is_echoed_or_made(client: TestClient) -> None:
    given = client.post(
        "/v1/chat/completions", json=chat("Which id?"), headers={"x-request-id": "req-42.a"}
    )
    assert given.headers["x-request-id"] == "req-42.a"
    made = client.post("/v1/chat/completions", json=chat("Which id?"))
    assert len(made.headers["x-request-id"]) == 32
    # an id that is not a plain token (or too long) is replaced, never echoed
    for bad in ("a b", "x" * 129, "<script>"):
        odd = client.post(
            "/v1/chat/completions", json=chat("Which id?"), headers={"x-request-id": bad}
        )
        assert odd.headers["x-request-id"] != bad
    ids = [e.request_id for e in request_events(client)]
    assert ids[0] == "req-42.a" and ids[1] == made.headers["x-request-id"]


@pytest.mark.parametrize("path", ["/healthz", "/v1/nothing", "/v1/models/nope"])
def test_every_answer_carries_the_id(client: TestClient, path: str) -> None:
    assert client.get(path, headers={"x-request-id": "r1"}).headers["x-request-id"] == "r1"


def test_passthrough_requests_leave_events(client: TestClient) -> None:
    ok = client.post("/v1/embeddings", json={"model": "sim", "input": ["a", "b"]})
    assert ok.status_code == 200
    text = client.post("/v1/completions", json={"model": "sim", "prompt": "Once upon"})
    assert text.status_code == 200
    failed = client.post("/v1/completions", json={"model": "gpt-4o-mini", "prompt": "x [[500]]"})
    assert failed.status_code == 500
    events = request_events(client)
    assert [(e.outcome, e.bypass_reason, e.requested_model) for e in events] == [
        ("bypass", "passthrough", "sim"),
        ("bypass", "passthrough", "sim"),
        ("error", "passthrough", "gpt-4o-mini"),
    ]
    assert events[1].completion_tokens > 0
    assert all(e.request_id for e in events)
