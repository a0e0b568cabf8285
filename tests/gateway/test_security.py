"""What a client may and may not do: one test per finding of the security review."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from gateway.settings import Settings, SettingsError
from tests.gateway.conftest import AppFactory, chat, count_entries, request_events
from tests.support.fake_upstream import FakeUpstream

Message = MutableMapping[str, Any]

PROVIDER_OPTIONS: list[tuple[str, Any]] = [
    ("base_url", "http://127.0.0.1:9/v1"),
    ("api_base", "http://127.0.0.1:9/v1"),
    ("api_key", "sk-mine"),
    ("extra_headers", {"Authorization": "Bearer sk-mine"}),
    ("extra_body", {"x": 1}),
    ("timeout", 1),
    ("num_retries", 5),
    ("mock_response", "Call +1-900-SCAM-NOW"),
    ("input_cost_per_token", 30),
    ("output_cost_per_token", 30),
    ("custom_llm_provider", "openai"),
    ("metadata", {"a": "b"}),
    ("litellm_logging_obj", None),
    ("no_such_parameter", 1),
]


@pytest.fixture
def client(fast_client: TestClient) -> TestClient:
    """What these tests check does not depend on meaning: the fast embedder serves."""
    return fast_client


@pytest.mark.parametrize(("field", "value"), PROVIDER_OPTIONS)
def test_provider_options_are_refused_by_name_and_reach_nothing(
    client: TestClient, upstream: FakeUpstream, field: str, value: Any
) -> None:
    response = client.post("/v1/chat/completions", json=chat("hi there", **{field: value}))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == field and field in error["message"]
    assert upstream.calls == [] and count_entries(client) == 0
    # the same text without the option is an ordinary miss: nothing was cached by the refusal
    assert client.post("/v1/chat/completions", json=chat("hi there")).headers["x-cache"] == "miss"


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("/v1/completions", {"model": "gpt-4o-mini", "prompt": "hi", "timeout": 5}),
        ("/v1/completions", {"model": "gpt-4o-mini", "prompt": "hi", "base_url": "http://x"}),
        ("/v1/embeddings", {"model": "gpt-4o-mini", "input": "hi", "api_base": "http://x"}),
        ("/v1/embeddings", {"model": "sim", "input": "hi", "mock_response": [0.1]}),
    ],
)
def test_passthrough_routes_have_their_own_allow_lists(
    client: TestClient, upstream: FakeUpstream, route: str, body: dict[str, Any]
) -> None:
    response = client.post(route, json=body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unsupported_parameter"
    assert upstream.calls == []


def test_the_upstream_sees_only_allowed_parameters_and_the_configured_key(
    client: TestClient, upstream: FakeUpstream
) -> None:
    body = chat("Which parameters arrive?", seed=7, max_tokens=50, user="u-1", temperature=0)
    assert client.post("/v1/chat/completions", json=body).status_code == 200
    sent = upstream.calls[-1]
    assert sent["seed"] == 7 and sent["max_tokens"] == 50 and sent["user"] == "u-1"
    assert upstream.keys[-1] == "Bearer sk-upstream"


def test_an_operator_can_allow_a_provider_parameter_for_one_model(
    make_app: AppFactory, upstream: FakeUpstream, fake_upstream: FakeUpstream
) -> None:
    models = [
        {
            "name": "gpt-4o-mini",
            "litellm_model": "openai/gpt-4o-mini",
            "api_base": fake_upstream.base_url,
            "api_key_env": "FAKE_UPSTREAM_KEY",
            "allow_params": ["top_k"],
        },
        {"name": "sim", "litellm_model": "simulated/gpt-4o-mini"},
    ]
    with make_app(models=models) as client:
        allowed = client.post("/v1/chat/completions", json=chat("Top k?", top_k=5))
        assert allowed.status_code == 200 and upstream.calls[-1]["top_k"] == 5
        refused = client.post("/v1/chat/completions", json=chat("Top k?", model="sim", top_k=5))
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "top_k"
        # the parameter is part of the key: another value is another entry
        other = client.post("/v1/chat/completions", json=chat("Top k?", top_k=6))
        assert other.headers["x-cache"] == "miss"


@pytest.mark.parametrize("name", ["api_base", "base_url", "input_cost_per_token", "extra_headers"])
def test_an_operator_cannot_allow_transport_or_pricing_options(name: str) -> None:
    raw = {"models": [{"name": "m", "litellm_model": "openai/m", "allow_params": [name]}]}
    with pytest.raises(SettingsError, match="may not be set by clients"):
        Settings.from_dict(raw, {})


def test_every_answer_changing_parameter_is_in_the_key(client: TestClient) -> None:
    first = client.post("/v1/chat/completions", json=chat("Name a colour.", seed=1))
    assert first.headers["x-cache"] == "miss"
    for change in ({"seed": 2}, {"presence_penalty": 0.5}, {"stop": ["."]}, {"max_tokens": 9}):
        response = client.post("/v1/chat/completions", json=chat("Name a colour.", **change))
        assert response.headers["x-cache"] == "miss", change
    again = client.post("/v1/chat/completions", json=chat("Name a colour.", seed=1))
    assert again.headers["x-cache"] == "hit"


def test_prices_cannot_be_rewritten_by_a_client(client: TestClient) -> None:
    body = chat("How much?", input_cost_per_token=30, output_cost_per_token=30)
    assert client.post("/v1/chat/completions", json=body).status_code == 400
    assert client.post("/v1/chat/completions", json=chat("How much?")).status_code == 200
    (event,) = [e for e in request_events(client) if e.outcome == "miss"]
    assert 0 < event.cost_usd < 0.01


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        (b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], '
         b'"temperature": NaN}', None),
        (b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], '
         b'"temperature": Infinity}', None),
        (b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "\\ud800"}]}', None),
        (b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], '
         b'"temperature": 1' + b"0" * 400 + b"}", None),
        (b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], '
         b'"seed": 99999999999999999999}', None),
        (b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], '
         b'"temperature": 7}', "temperature"),
        (b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], '
         b'"n": 0}', "n"),
        (b'{"model": "gpt-4o-mini", "messages": [{"role": "hacker", "content": "x"}]}',
         "messages[0].role"),
        (b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "x": '
         + b"[" * 5000 + b"]" * 5000 + b"}", None),
        (b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], '
         b'"response_format": ' + b'{"a":' * 100 + b"1" + b"}" * 100 + b"}", None),
    ],
)  # fmt: skip
def test_malformed_values_are_400s_and_not_upstream_load(
    client: TestClient, upstream: FakeUpstream, raw: bytes, param: str | None
) -> None:
    gateway = client.app.state.gateway  # type: ignore[attr-defined]
    for _ in range(6):
        response = client.post(
            "/v1/chat/completions", content=raw, headers={"content-type": "application/json"}
        )
        assert response.status_code == 400, response.text
        assert response.json()["error"]["type"] == "invalid_request_error"
        if param is not None:
            assert response.json()["error"]["param"] == param
    assert upstream.calls == []
    assert gateway.load.load("gpt-4o-mini") == 0.0
    assert all(s.recent_errors == 0 for s in gateway.load.snapshot())


@pytest.mark.parametrize("ttl", ["nan", "inf", "-inf", "0", "-5", "1e400", "ten", "1e12"])
def test_a_ttl_header_must_be_a_finite_positive_number(client: TestClient, ttl: str) -> None:
    response = client.post(
        "/v1/chat/completions", json=chat("Forever?"), headers={"x-cache-ttl": ttl}
    )
    assert response.status_code == 400 and response.json()["error"]["param"] == "x-cache-ttl"
    assert count_entries(client) == 0


def test_an_html_page_is_not_an_answer_as_a_stream_or_as_json(
    client: TestClient, upstream: FakeUpstream
) -> None:
    # LiteLLM reads the page as an empty stream, or raises a 500 of its own for JSON
    for stream, status in ((True, 502), (False, 500)):
        body = chat("Log in please [[html]]", stream=stream)
        response = client.post("/v1/chat/completions", json=body)
        assert response.status_code == status, response.text
        assert response.json()["error"]["type"] == "upstream_error"
    assert count_entries(client) == 0
    assert [e.outcome for e in request_events(client)] == ["error", "error"]  # one each
    again = client.post("/v1/chat/completions", json=chat("Log in please [[html]]"))
    assert again.headers["x-cache"] != "hit"


def test_an_empty_answer_is_never_stored(client: TestClient) -> None:
    streamed = client.post("/v1/chat/completions", json=chat("Nothing [[empty]]", stream=True))
    assert streamed.status_code == 502
    plain = client.post("/v1/chat/completions", json=chat("Nothing [[empty]]"))
    assert plain.status_code == 200 and plain.headers["x-cache"] == "miss"
    assert count_entries(client) == 0


def _scope(client: TestClient) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "root_path": "",
        "state": {},
        "app": client.app,
    }


async def _asgi(
    client: TestClient, body: bytes, *, timeline: list[str] | None = None, leave: bool = False
) -> list[Message]:
    """One request straight through the app's ASGI interface; returns what the app sent.
    With `leave`, the client disconnects as soon as it has sent the body; `timeline` gets
    "done" when `[DONE]` is sent."""
    sent: list[Message] = []
    delivered = False

    async def receive() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        if leave:
            return {"type": "http.disconnect"}
        await asyncio.Event().wait()  # the client stays until the app has answered
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        await asyncio.sleep(0)  # as a socket does, sending lets other tasks run
        if timeline is not None and b"[DONE]" in message.get("body", b""):
            timeline.append("done")
        sent.append(message)

    await client.app(_scope(client), receive, send)
    return sent


def test_a_streamed_miss_is_committed_before_done_is_sent(client: TestClient) -> None:
    gateway = client.app.state.gateway  # type: ignore[attr-defined]
    timeline: list[str] = []
    put = gateway.cache.put

    async def recording_put(entry: Any) -> int:
        entry_id: int = await put(entry)
        timeline.append("commit")
        return entry_id

    gateway.cache.put = recording_put
    body = orjson.dumps(chat("Durable before done?", stream=True))
    sent = client.portal.call(lambda: _asgi(client, body, timeline=timeline))  # type: ignore[union-attr]
    assert sent[0]["status"] == 200
    assert timeline == ["commit", "done"]


def test_a_store_failure_still_answers_the_client_and_leaves_an_event(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = client.app.state.gateway  # type: ignore[attr-defined]

    async def broken_put(entry: Any) -> int:
        raise RuntimeError("disk full")

    gateway.cache.put = broken_put
    for stream in (False, True):
        response = client.post("/v1/chat/completions", json=chat("Paid for", stream=stream))
        assert response.status_code == 200 and "Answer" in response.text
        assert response.headers["x-cache"] == "miss"
    assert "could not store the answer" in caplog.text
    assert [e.outcome for e in request_events(client)] == ["miss", "miss"]
    assert count_entries(client) == 0


def test_abandoned_streams_leave_no_load_and_no_leaders(client: TestClient) -> None:
    gateway = client.app.state.gateway  # type: ignore[attr-defined]
    # 100 clients leave as soon as they have sent their request; a third ask the same thing,
    # so some of them are coalescing leaders when they go
    bodies = [
        orjson.dumps(chat(f"Abandoned {i % 3 if i % 3 == 0 else i}", stream=True))
        for i in range(100)
    ]

    async def abandon_all() -> list[list[Message]]:
        return await asyncio.gather(*(_asgi(client, body, leave=True) for body in bodies))

    client.portal.call(abandon_all)  # type: ignore[union-attr]
    (state,) = [s for s in gateway.load.snapshot() if s.model == "gpt-4o-mini"]
    assert state.requests >= 1 and state.inflight == 0
    assert gateway.load.load("gpt-4o-mini") == 0.0
    assert gateway.inflight == {}


def test_a_body_that_never_arrives_is_a_408(make_app: AppFactory) -> None:
    with make_app(server={"body_timeout_s": 0.2}) as client:

        async def stalled() -> list[Message]:
            sent: list[Message] = []

            async def receive() -> Message:
                await asyncio.Event().wait()  # headers came, the body never does
                raise AssertionError("unreachable")

            async def send(message: Message) -> None:
                sent.append(message)

            await client.app(_scope(client), receive, send)
            return sent

        sent = client.portal.call(stalled)  # type: ignore[union-attr]
        assert sent[0]["status"] == 408
        assert b"request_timeout" in sent[1]["body"]


def test_an_unhandled_error_is_a_json_500_not_a_reset(client: TestClient) -> None:
    gateway = client.app.state.gateway  # type: ignore[attr-defined]

    def broken(*args: Any) -> Any:
        raise RuntimeError("a bug")

    gateway.tenancy.identify = broken
    # TestClient re-raises what the app raises: a server then resets the connection
    response = client.post("/v1/chat/completions", json=chat("Boom"))
    assert response.status_code == 500
    assert response.json()["error"] == {
        "message": "internal error",
        "type": "server_error",
        "param": None,
        "code": None,
    }
    assert client.get("/healthz").status_code == 200


def test_large_bodies_are_checked_as_strictly(client: TestClient) -> None:
    # past 64 KiB a body is parsed in a worker thread: the same rules hold there
    padding = "x" * 100_000
    deep = {**chat("Deep"), "user": padding[:500], "response_format": {"type": "text"}}
    raw = orjson.dumps(deep)[:-1] + b', "metadata_pad": ' + b"[" * 100 + b"]" * 100 + b"}"
    raw = raw.replace(b'"Deep"', orjson.dumps("Deep " + padding))
    assert len(raw) > 64 * 1024
    response = client.post(
        "/v1/chat/completions", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400 and "nested deeper" in response.json()["error"]["message"]
    fine = client.post("/v1/chat/completions", json=chat("Long " + padding))
    assert fine.status_code == 200 and fine.headers["x-cache"] == "miss"
