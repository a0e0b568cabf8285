from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from embeddings.protocol import Vectors
from embeddings.runtime import OnnxEmbedder
from tests.gateway.conftest import AppFactory, chat, count_entries, request_events
from tests.support.embedders import Wrapped
from tests.support.fake_upstream import FakeUpstream


class BrokenEmbedder(Wrapped):
    def __init__(
        self, inner: OnnxEmbedder, *, fail: bool = False, gate: threading.Event | None = None
    ) -> None:
        super().__init__(inner)
        self.fail, self.gate = fail, gate

    def embed(self, texts: Sequence[str]) -> Vectors:
        if self.fail:
            raise RuntimeError("embedder crashed")
        if self.gate is not None:
            self.gate.wait(10)
        return self.inner.embed(texts)


def test_fail_open_with_a_broken_embedder(
    make_app: AppFactory,
    embedder: OnnxEmbedder,
    upstream: FakeUpstream,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with make_app(embedder_=BrokenEmbedder(embedder, fail=True)) as client:
        response = client.post("/v1/chat/completions", json=chat("Is water wet?"))
        assert response.status_code == 200
        assert response.headers["x-cache"] == "bypass"
        assert response.headers["x-cache-bypass-reason"] == "lookup_failed"
        assert count_entries(client) == 0
        events = request_events(client)
        assert [(e.outcome, e.bypass_reason) for e in events] == [("bypass", "lookup_failed")]
        # a fault, not load: its traceback is in the log
        (failed,) = [r for r in caplog.records if "failed open" in r.getMessage()]
        assert failed.exc_info is not None
        metrics = client.get("/metrics").text
        assert 'gateway_bypasses_total{reason="lookup_failed"} 1.0' in metrics


def test_fail_open_with_a_slow_embedder(
    make_app: AppFactory, embedder: OnnxEmbedder, upstream: FakeUpstream
) -> None:
    gate = threading.Event()
    slow = BrokenEmbedder(embedder, gate=gate)
    try:
        with make_app(embedder_=slow, cache={"lookup_deadline_ms": 50}) as client:
            response = client.post("/v1/chat/completions", json=chat("Is fire hot?"))
            assert response.status_code == 200
            assert response.headers["x-cache"] == "bypass"
            assert response.headers["x-cache-bypass-reason"] == "lookup_timeout"
            assert len(upstream.calls) == 1
    finally:
        gate.set()


@pytest.mark.parametrize(
    ("marker", "status"),
    [("[[429]]", 429), ("[[500]]", 500), ("[[slow:3]]", 504), ("[[garbage]]", 502)],
)
def test_upstream_errors_are_mapped(client: TestClient, marker: str, status: int) -> None:
    response = client.post("/v1/chat/completions", json=chat(f"Hello {marker}"))
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert count_entries(client) == 0
    assert request_events(client)[-1].outcome == "error"


def test_upstream_errors_on_streams_keep_their_status(client: TestClient) -> None:
    response = client.post("/v1/chat/completions", json=chat("Hi [[429]]", stream=True))
    assert response.status_code == 429


def test_aborted_stream_and_truncated_answer_store_nothing(client: TestClient) -> None:
    client.post("/v1/chat/completions", json=chat("Tell a story [[cut]]", stream=True))
    client.post("/v1/chat/completions", json=chat("Tell a story [[length]]"))
    assert count_entries(client) == 0


def test_dead_upstream_is_a_502(make_app: AppFactory, tmp_path: Path) -> None:
    with make_app(
        models=[
            {
                "name": "gpt-4o-mini",
                "litellm_model": "openai/gpt-4o-mini",
                "api_base": "http://127.0.0.1:9/v1",
                "api_key_env": "FAKE_UPSTREAM_KEY",
                "timeout_s": 2.0,
            }
        ]
    ) as client:
        response = client.post("/v1/chat/completions", json=chat("anyone there?"))
        assert response.status_code in (502, 504)
        assert count_entries(client) == 0


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        (b"{not json", 400, None),
        (b"[1, 2]", 400, None),
        (json.dumps({"model": "gpt-4o-mini"}).encode(), 400, "messages"),
        (json.dumps({"model": "gpt-4o-mini", "messages": "hi"}).encode(), 400, "messages"),
        (
            json.dumps({"model": 3, "messages": [{"role": "user", "content": "x"}]}).encode(),
            400,
            "model",
        ),
        (json.dumps(chat("x", temperature="hot")).encode(), 400, "temperature"),
        (json.dumps(chat("x", stream="yes")).encode(), 400, "stream"),
        (
            json.dumps({"model": "gpt-4o-mini", "messages": [{"content": "x"}]}).encode(),
            400,
            "messages[0].role",
        ),
        (json.dumps(chat("x", model="gpt-9")).encode(), 404, "model"),
    ],
)
def test_bad_input_gets_a_clear_error_and_changes_nothing(
    client: TestClient, upstream: FakeUpstream, body: bytes, status: int, param: str | None
) -> None:
    response = client.post(
        "/v1/chat/completions", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == status
    error = response.json()["error"]
    assert error["message"] and error["param"] == param
    assert count_entries(client) == 0 and upstream.calls == []


def test_body_over_the_limit_is_413(make_app: AppFactory, upstream: FakeUpstream) -> None:
    with make_app(server={"max_body_bytes": 2048}) as client:
        response = client.post("/v1/chat/completions", json=chat("x" * 5000))
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "request_too_large"
    assert upstream.calls == []


@pytest.mark.parametrize(
    "extra",
    [
        {"n": 2},
        {"temperature": 1.5},
        {"logprobs": True},
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
    ],
)
def test_uncacheable_requests_bypass(client: TestClient, extra: dict[str, Any]) -> None:
    first = client.post("/v1/chat/completions", json=chat("Pick a colour", **extra))
    assert first.headers["x-cache"] == "bypass"
    assert count_entries(client) == 0
