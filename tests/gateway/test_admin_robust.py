"""Malformed input to the admin API (the findings of an outside review, one test each) is
an OpenAI-shaped 4xx that names the parameter, and leaves the store as it was."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from starlette.testclient import TestClient

from gateway.store.models import CacheEntry, Feedback, PolicyOverride
from tests.gateway.conftest import ADMIN

JSON = {"content-type": "application/json"}
PAST_64_BITS = ("9223372036854775808", "99999999999999999999", "1" + "0" * 5000)


def snapshot(client: TestClient) -> tuple[Any, ...]:
    """All that a refused request must leave alone: entries (and their demotion), feedback,
    stored policy changes, and the policies in force."""
    gateway = client.app.state.gateway  # type: ignore[attr-defined]
    with gateway.store.session() as session:
        entries = session.execute(select(CacheEntry.id, CacheEntry.demoted_at)).all()
        feedback = session.scalar(select(func.count(Feedback.id)))
        overrides = session.scalars(select(PolicyOverride.category)).all()
    policies = [p.to_dict() for p in gateway.policies.policies]
    return [tuple(row) for row in entries], feedback, list(overrides), policies


def assert_error(response: Any, status: int, param: str | None, where: object) -> None:
    assert response.status_code == status, (where, response.status_code, response.text)
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}, where
    assert isinstance(error["message"], str) and error["message"], where
    kind = "authentication_error" if status == 401 else "invalid_request_error"
    assert error["type"] == kind, where
    assert error["param"] == param, (where, error)


def test_an_entry_id_of_digits_beyond_ascii_is_a_400(seeded_admin_client: TestClient) -> None:
    before = snapshot(seeded_admin_client)
    for raw in ("%C2%B2", "%D9%A1", "1_0", "+1", "%201"):  # U+00B2 and U+0661 pass str.isdigit()
        for method in ("GET", "DELETE"):
            response = seeded_admin_client.request(method, f"/admin/entries/{raw}", headers=ADMIN)
            assert_error(response, 400, "entry_id", (method, raw))
    assert snapshot(seeded_admin_client) == before
    assert seeded_admin_client.get("/admin/entries/1", headers=ADMIN).status_code == 200


def test_an_entry_id_past_64_bits_is_a_400(seeded_admin_client: TestClient) -> None:
    before = snapshot(seeded_admin_client)
    for raw in (*PAST_64_BITS, "0", "-1"):
        for method in ("GET", "DELETE"):
            response = seeded_admin_client.request(method, f"/admin/entries/{raw}", headers=ADMIN)
            assert_error(response, 400, "entry_id", (method, raw[:30]))
    largest = str(2**63 - 1)  # in range, and absent
    for method in ("GET", "DELETE"):
        response = seeded_admin_client.request(method, f"/admin/entries/{largest}", headers=ADMIN)
        assert_error(response, 404, "entry_id", method)
    assert snapshot(seeded_admin_client) == before


def test_text_that_is_not_utf8_is_a_400_naming_the_parameter(
    seeded_admin_client: TestClient,
) -> None:
    before = snapshot(seeded_admin_client)
    surrogate = "%ED%A0%80"  # U+D800 as UTF-8 would have it; no valid text decodes to it
    for method, url, param in (
        ("GET", f"/admin/entries?q={surrogate}", "q"),
        ("GET", f"/admin/entries?tenant={surrogate}", "tenant"),
        ("GET", f"/admin/entries?limit=5&category=ok{surrogate}", "category"),
        ("GET", f"/admin/stats?since={surrogate}", "since"),
        ("GET", f"/admin/policies/{surrogate}", "category"),
        ("DELETE", f"/admin/policies/{surrogate}", "category"),
        ("GET", "/admin/entries?q=%FF", "q"),
    ):
        assert_error(seeded_admin_client.request(method, url, headers=ADMIN), 400, param, url)
    # In a body, the JSON itself is refused: the parser does not let a lone surrogate through.
    for method, url, body in (
        ("POST", "/admin/purge", b'{"tenant": "\\ud800"}'),
        ("PUT", "/admin/policies/fresh", b'{"rules": ["\\udc00x"]}'),
        ("PATCH", "/admin/policies/code", b'{"description": "\\ud800"}'),
        ("POST", "/admin/feedback", b'{"verdict": "right", "entry_id": 1, "note": "\\ud800"}'),
    ):
        response = seeded_admin_client.request(method, url, content=body, headers={**ADMIN, **JSON})
        assert_error(response, 400, None, url)
        assert "not valid JSON" in response.json()["error"]["message"]
    assert snapshot(seeded_admin_client) == before


def test_feedback_authenticates_before_the_body_and_range_checks_entry_id(
    seeded_admin_client: TestClient,
) -> None:
    before = snapshot(seeded_admin_client)
    huge = {"entry_id": 10**30, "verdict": "wrong"}
    refused = seeded_admin_client.post("/admin/feedback", json=huge)  # no key at all
    assert_error(refused, 401, None, "no key")
    unread = seeded_admin_client.post("/admin/feedback", content=b"{not json", headers=JSON)
    assert_error(unread, 401, None, "no key, bad body")  # refused before the body is read
    for headers in (ADMIN, {"authorization": "Bearer sk-alice"}):  # operator, tenant
        for entry_id in (10**30, 2**64, 0, -1, 1.5, True, "1", None):
            response = seeded_admin_client.post(
                "/admin/feedback", json={"entry_id": entry_id, "verdict": "wrong"}, headers=headers
            )
            assert_error(response, 400, "entry_id", (headers, entry_id))
        response = seeded_admin_client.post(
            "/admin/feedback", json={"response_id": "x" * 129, "verdict": "wrong"}, headers=headers
        )
        assert_error(response, 400, "response_id", headers)
        past = seeded_admin_client.post(  # refused by the body parser: no 64-bit integer reaches it
            "/admin/feedback", json={"entry_id": 2**63, "verdict": "wrong"}, headers=headers
        )
        assert_error(past, 400, None, (headers, 2**63))
    assert snapshot(seeded_admin_client) == before
    # The tenant's own key still judges what it was served.
    judged = seeded_admin_client.post(
        "/admin/feedback",
        json={"entry_id": 1, "verdict": "right"},
        headers={"authorization": "Bearer sk-alice"},
    )
    assert judged.status_code == 201 and judged.json()["entry_id"] == 1


def test_every_admin_route_refuses_malformed_values(seeded_admin_client: TestClient) -> None:
    before = snapshot(seeded_admin_client)
    for url, name in (
        ("/admin/entries?after=99999999999999999999", "after"),
        ("/admin/entries?after=1_0", "after"),
        ("/admin/entries?limit=%C2%B2", "limit"),
        ("/admin/entries?limit=", "limit"),
        ("/admin/entries?older_than_s=inf", "older_than_s"),
        ("/admin/entries?newer_than_s=nan", "newer_than_s"),
        ("/admin/entries?older_than_s=1e999", "older_than_s"),
        ("/admin/entries?older_than_s=%D9%A1", "older_than_s"),
        ("/admin/entries?tenant=" + "a" * 257, "tenant"),
        ("/admin/entries?q=" + "a" * 4097, "q"),
        ("/admin/stats?since=1e999", "since"),
        ("/admin/stats?until=%D9%A1%D9%A2", "until"),  # Arabic-Indic digits: float() takes them
        ("/admin/stats?until=" + "1" * 100, "until"),
    ):
        assert_error(seeded_admin_client.get(url, headers=ADMIN), 400, name, url)
    deep = b"[" * 100_000 + b"]" * 100_000
    bodies: list[tuple[str, str, bytes, str | None]] = [
        ("PATCH", "/admin/policies/code", b'{"threshold": NaN}', None),
        ("PATCH", "/admin/policies/code", b'{"threshold": -Infinity}', None),
        ("PATCH", "/admin/policies/code", b'{"threshold": 1' + b"0" * 400 + b"}", None),
        ("PATCH", "/admin/policies/code", b'{"quota": 1e30}', "quota"),
        ("PUT", "/admin/policies/fresh", b'{"quota": 99999999999999999999}', "quota"),
        ("PUT", "/admin/policies/fresh", b'{"description": "' + b"d" * 5000 + b'"}', "description"),
        (
            "PUT",
            "/admin/policies/fresh",
            b'{"prototypes": [' + b'"p",' * 1000 + b'"p"]}',
            "prototypes",
        ),
        ("PUT", "/admin/policies/fresh", deep, None),
        ("PUT", "/admin/policies/fresh", b"[1]", None),
        ("POST", "/admin/purge", b'{"older_than_s": NaN}', None),
        ("POST", "/admin/purge", b'{"older_than_s": 1e400}', None),
        ("POST", "/admin/purge", b'{"older_than_s": 1' + b"0" * 400 + b"}", None),
        ("POST", "/admin/purge", b'{"newer_than_s": -1}', "newer_than_s"),
        ("POST", "/admin/purge", b'{"older_than_s": "5"}', "older_than_s"),
        ("POST", "/admin/purge", b'{"tenant": 5}', "tenant"),
        ("POST", "/admin/purge", b'{"tenant": null}', "tenant"),
        ("POST", "/admin/purge", b'{"model": "' + b"m" * 257 + b'"}', "model"),
        ("POST", "/admin/purge", deep, None),
        ("POST", "/admin/feedback", deep, None),
    ]
    for method, url, body, param in bodies:
        response = seeded_admin_client.request(method, url, content=body, headers={**ADMIN, **JSON})
        assert_error(response, 400, param, (method, url, body[:40]))
    assert snapshot(seeded_admin_client) == before


def test_nul_characters_are_taken_by_either_store(seeded_admin_client: TestClient) -> None:
    """PostgreSQL refuses NUL in text, SQLite takes it: a prompt, a note or a search term
    holding one is stored (as U+FFFD) or searched on both, never a 500."""
    client = seeded_admin_client
    prompt = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "odd\u0000one"}]}
    asked = client.post("/v1/chat/completions", json=prompt)
    assert asked.status_code == 200 and asked.headers["x-cache"] == "miss"
    again = client.post("/v1/chat/completions", json=prompt)
    assert again.headers["x-cache"] == "hit"
    found = client.get("/admin/entries", params={"q": "odd\u0000one"}, headers=ADMIN)
    assert found.status_code == 200
    assert found.json()["data"][0]["text"] == "odd\ufffdone"  # the nearest first
    judged = {"entry_id": 1, "verdict": "right", "note": "fine\u0000really"}
    assert client.post("/admin/feedback", json=judged, headers=ADMIN).status_code == 201
    store = client.app.state.gateway.store  # type: ignore[attr-defined]
    with store.session() as session:
        assert session.scalar(select(Feedback.note)) == "fine\ufffdreally"
