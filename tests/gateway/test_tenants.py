from __future__ import annotations

import hashlib

import pytest
from starlette.testclient import TestClient

from gateway.auth import ANONYMOUS, Tenancy
from gateway.errors import InvalidRequest, Unauthorized
from gateway.settings import TenantSettings
from tests.gateway.conftest import AppFactory, chat, stored_entries
from tests.support.fake_upstream import FakeUpstream


def _sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def test_tenant_is_a_salted_hash_of_the_key() -> None:
    tenancy = Tenancy(TenantSettings(), b"salt-1")
    caller = tenancy.identify("Bearer sk-secret", None)
    assert caller.tenant == tenancy.tenant_of("sk-secret")
    assert "sk-secret" not in caller.tenant and len(caller.tenant) == 32
    assert Tenancy(TenantSettings(), b"salt-2").tenant_of("sk-secret") != caller.tenant
    assert tenancy.identify(None, None).tenant == ANONYMOUS


def test_bad_or_missing_keys() -> None:
    with pytest.raises(Unauthorized):
        Tenancy(TenantSettings(), b"s").identify("Basic abc", None)
    with pytest.raises(Unauthorized, match="required"):
        Tenancy(TenantSettings(require_key=True), b"s").identify(None, None)
    with pytest.raises(InvalidRequest):
        Tenancy(TenantSettings(), b"s").identify(None, "a b")


def test_virtual_keys_share_a_tenant_and_namespace(
    make_app: AppFactory, upstream: FakeUpstream
) -> None:
    keys = [
        {"key_sha256": _sha("sk-one"), "tenant": "team-a", "namespace": "shared"},
        {"key_sha256": _sha("sk-two"), "tenant": "team-a", "namespace": "shared"},
    ]
    with make_app(tenants={"virtual_keys": keys}) as client:
        client.post(
            "/v1/chat/completions",
            json=chat("Where is the style guide?"),
            headers={"authorization": "Bearer sk-one"},
        )
        second = client.post(
            "/v1/chat/completions",
            json=chat("Where is the style guide?"),
            headers={"authorization": "Bearer sk-two"},
        )
        assert second.headers["x-cache"] == "hit"
        stranger = client.post(
            "/v1/chat/completions",
            json=chat("Where is the style guide?"),
            headers={"authorization": "Bearer sk-three"},
        )
        assert stranger.headers["x-cache"] == "miss"
        rows = stored_entries(client)
        assert ("team-a", "shared") in {(r["tenant"], r["namespace"]) for r in rows}
    assert upstream.keys == ["Bearer sk-upstream", "Bearer sk-upstream"]


def test_callers_key_is_passed_upstream_when_configured(
    make_app: AppFactory, upstream: FakeUpstream
) -> None:
    with make_app(tenants={"pass_through_key": True}) as client:
        client.post(
            "/v1/chat/completions",
            json=chat("Hello there"),
            headers={"authorization": "Bearer sk-caller"},
        )
    assert upstream.keys == ["Bearer sk-caller"]


def test_required_key(make_app: AppFactory) -> None:
    with make_app(tenants={"require_key": True}) as client:
        response = client.post("/v1/chat/completions", json=chat("Hello"))
        assert response.status_code == 401
        assert response.json()["error"]["type"] == "authentication_error"


def test_sliding_ttl_extends_on_hit(make_app: AppFactory) -> None:
    def expiry(client: TestClient) -> float:
        (row,) = stored_entries(client)
        return float(row["expires_at"])

    with make_app(cache={"sliding_ttl": True}) as client:
        client.post(
            "/v1/chat/completions", json=chat("Define entropy"), headers={"x-cache-ttl": "60"}
        )
        before = expiry(client)
        assert (
            client.post("/v1/chat/completions", json=chat("Define entropy")).headers["x-cache"]
            == "hit"
        )
    with make_app(cache={"sliding_ttl": True}) as client:
        assert expiry(client) > before + 1000  # slid to now + cache.ttl_seconds
