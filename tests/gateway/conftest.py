from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from embeddings.protocol import Embedder
from embeddings.runtime import OnnxEmbedder
from gateway.app import create_app
from gateway.settings import ModelSettings, Settings
from gateway.store.models import RequestEvent
from gateway.upstream import SimulatedUpstream, SimulationProfile
from tests.support.embedders import HashingEmbedder, Memoized
from tests.support.fake_upstream import FakeUpstream, serve_fake_upstream
from tests.support.stores import store_url

AppFactory = Callable[..., AbstractContextManager[TestClient]]


@pytest.fixture(scope="session")
def fake_upstream() -> Iterator[FakeUpstream]:
    with serve_fake_upstream() as upstream:
        yield upstream


@pytest.fixture
def upstream(fake_upstream: FakeUpstream) -> FakeUpstream:
    fake_upstream.calls.clear()
    fake_upstream.keys.clear()
    return fake_upstream


def gateway_settings(db: Path, upstream: FakeUpstream, **sections: Any) -> Settings:
    raw: dict[str, Any] = {
        "store": {"url": store_url(db), "index_dir": f"{db}.index"},
        # the apps under test are given the base model's embedder; thresholds must match it
        "embedding": {"model": "base", **sections.pop("embedding", {})},
        "cache": {"lookup_deadline_ms": 5000, **sections.pop("cache", {})},
        "models": [
            {
                "name": "gpt-4o-mini",
                "litellm_model": "openai/gpt-4o-mini",
                "api_base": upstream.base_url,
                "api_key_env": "FAKE_UPSTREAM_KEY",
                "timeout_s": 2.0,
            },
            {"name": "sim", "litellm_model": "simulated/gpt-4o-mini"},
        ],
        **sections,
    }
    return Settings.from_dict(raw, {})


@pytest.fixture(scope="session")
def app_embedder(embedder: OnnxEmbedder) -> Memoized:
    """The real model, remembered across the apps the tests build (see `Memoized`)."""
    return Memoized(embedder)


ADMIN_TOKEN = "admin-secret-token"
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}


def _factory(
    tmp_path: Path, upstream: FakeUpstream, default: Embedder, monkeypatch: pytest.MonkeyPatch
) -> AppFactory:
    """Apps with the admin API on (`ADMIN`), which tests use to look at what was stored."""
    monkeypatch.setenv("FAKE_UPSTREAM_KEY", "sk-upstream")
    monkeypatch.setenv("GATEWAY_ADMIN_TOKEN", ADMIN_TOKEN)

    @contextmanager
    def factory(
        *,
        embedder_: Embedder | None = None,
        own_model: bool = False,
        db: Path | None = None,
        **sections: Any,
    ) -> Iterator[TestClient]:
        """`own_model`: the app loads the model its settings (and store) name itself."""
        settings = gateway_settings(db or tmp_path / "gateway.db", upstream, **sections)
        app = create_app(
            settings,
            embedder=None if own_model else embedder_ or default,
            salt=b"test-salt",
            simulated=SimulatedUpstream(SimulationProfile(0.0, 0.0)),
        )
        with TestClient(app) as client:
            yield client

    return factory


@pytest.fixture
def make_app(
    tmp_path: Path, upstream: FakeUpstream, app_embedder: Memoized, monkeypatch: pytest.MonkeyPatch
) -> AppFactory:
    """Apps on the real model, or on the embedder a test passes as `embedder_`."""
    return _factory(tmp_path, upstream, app_embedder, monkeypatch)


@pytest.fixture
def make_fast_app(
    tmp_path: Path,
    upstream: FakeUpstream,
    fast_embedder: HashingEmbedder,
    monkeypatch: pytest.MonkeyPatch,
) -> AppFactory:
    """Apps on the hashing embedder: for tests that do not depend on meaning."""
    return _factory(tmp_path, upstream, fast_embedder, monkeypatch)


@pytest.fixture
def client(make_app: AppFactory) -> Iterator[TestClient]:
    with make_app() as test_client:
        yield test_client


@pytest.fixture
def seeded_admin_client(make_fast_app: AppFactory) -> Iterator[TestClient]:
    """A fast app with two entries of the tenant of sk-alice: ids 1 and 2."""
    with make_fast_app() as client:
        for question in ("What is the capital of Peru?", "Who wrote Frankenstein?"):
            response = client.post(
                "/v1/chat/completions",
                json=chat(question),
                headers={"authorization": "Bearer sk-alice"},
            )
            assert response.headers["x-cache"] == "miss"
        yield client


@pytest.fixture
def fast_client(make_fast_app: AppFactory) -> Iterator[TestClient]:
    """An app on the hashing embedder: for tests that do not depend on meaning."""
    with make_fast_app() as test_client:
        yield test_client


def chat(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], **extra}


def stored_entries(client: TestClient, **filters: str) -> list[dict[str, Any]]:
    """Every stored entry (matching the admin API's filters), read through the admin API."""
    rows: list[dict[str, Any]] = []
    after = 0
    while True:
        response = client.get(
            "/admin/entries", params={**filters, "after": after, "limit": 500}, headers=ADMIN
        )
        assert response.status_code == 200, response.text
        listed = response.json()
        rows += listed["data"]
        if not listed["has_more"]:
            return rows
        after = listed["next_after"]


def count_entries(client: TestClient) -> int:
    return len(stored_entries(client))


def request_events(client: TestClient) -> list[RequestEvent]:
    gateway = client.app.state.gateway  # type: ignore[attr-defined]
    client.portal.call(gateway.events.flush)  # type: ignore[union-attr]
    store = gateway.store
    with store.session() as session:
        return list(session.scalars(select(RequestEvent).order_by(RequestEvent.id)))


__all__ = [
    "ADMIN",
    "AppFactory",
    "ModelSettings",
    "chat",
    "count_entries",
    "request_events",
    "stored_entries",
]
