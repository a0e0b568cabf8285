"""Two `gateway serve` processes on one store (PostgreSQL on the PostgreSQL run, else one
SQLite file), each with its own indexes and index folder, as two machines would be: what
one stores, deletes, purges, demotes or changes in a policy reaches the other through the
change log (LISTEN/NOTIFY on PostgreSQL, polling on SQLite), and quotas hold across both."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support.fake_upstream import FakeUpstream, answer_for, serve_fake_upstream
from tests.support.gateway_process import gateway_env, gateway_process, write_config
from tests.support.stores import on_postgres, store_url

ADMIN = {"authorization": "Bearer replicas-admin"}
QUESTION = "How do I keep basil fresh for longer?"
PARAPHRASE = "how can I keep basil fresh longer"
OTHER = "What is the best way to store fresh ginger?"


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with serve_fake_upstream() as fake:
        yield fake


def _ask(base: str, text: str, *, store: bool = False, key: str = "sk-team") -> httpx.Response:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}
    headers = {"x-cache-category": "default", "authorization": f"Bearer {key}"}
    if not store:
        headers["cache-control"] = "no-store"
    response = httpx.post(f"{base}/chat/completions", json=body, headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    return response


def _until(condition: Callable[[], bool], seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)  # the poll interval of a bounded wait on the condition
    return False


def _replicas(
    tmp_path: Path,
    upstream: FakeUpstream,
    model_cache: Path,
    *,
    extra: str = "",
    embedding: str = "",
) -> list[Path]:
    """Configs of two gateways, `a` and `b`, each with its own folder, on one store."""
    shared = store_url(tmp_path / "shared.db")
    return [
        write_config(tmp_path / name, upstream_base_url=upstream.base_url,
                     model_cache=model_cache, extra=extra, embedding=embedding, store=shared)
        for name in ("a", "b")
    ]  # fmt: skip


def _tier(base: str, text: str) -> str | None:
    tier: str | None = _ask(base, text).headers.get("x-cache-tier")
    return tier


def test_two_replicas_follow_each_other_through_the_store(
    tmp_path: Path, upstream: FakeUpstream, model_cache: Path
) -> None:
    # On PostgreSQL the log is read only every 30 s unless a NOTIFY wakes the follower: every
    # bounded wait below (20 s) then holds only if the notifications work.
    follow = 30 if on_postgres() else 0.5
    extra = f"\n[cache]\nfollow_interval_s = {follow}\nsweep_interval_s = 0.5\n"
    configs = _replicas(tmp_path, upstream, model_cache, extra=extra)
    env = {**gateway_env(), "GATEWAY_ADMIN_TOKEN": "replicas-admin"}
    with gateway_process(configs[0], env) as (_, a), gateway_process(configs[1], env) as (_, b):
        root_a, root_b = a.removesuffix("/v1"), b.removesuffix("/v1")
        # B has the partition's index loaded (it searched it) before A stores anything.
        assert _ask(a, OTHER, store=True).headers["x-cache"] == "miss"
        assert _tier(b, OTHER) == "exact"
        assert _tier(b, PARAPHRASE) is None
        # An entry written through A is a semantic hit on B.
        assert _ask(a, QUESTION, store=True).headers["x-cache"] == "miss"
        assert _until(lambda: _tier(b, PARAPHRASE) == "semantic")
        answer = _ask(b, PARAPHRASE).json()["choices"][0]["message"]["content"]
        assert answer == answer_for(QUESTION)
        # A demotion through A: B serves no paraphrase of it (its own exact request still).
        entry = _ask(b, PARAPHRASE).headers["x-cache-entry"]
        judged = {"entry_id": int(entry), "verdict": "wrong"}
        assert httpx.post(f"{root_a}/admin/feedback", json=judged, headers=ADMIN).status_code == 201
        assert _until(lambda: _tier(b, PARAPHRASE) is None)
        assert _tier(b, QUESTION) == "exact"
        # A delete through A: B serves it no more, from its index or its memory.
        deleted = httpx.delete(f"{root_a}/admin/entries/{entry}", headers=ADMIN)
        assert deleted.status_code == 200
        assert _until(lambda: _tier(b, QUESTION) is None)
        # A purge through A.
        assert _tier(b, OTHER) == "exact"
        purged = httpx.post(f"{root_a}/admin/purge", json={"all": True}, headers=ADMIN)
        assert purged.status_code == 200
        assert _until(lambda: _tier(b, OTHER) is None)
        # A policy change through A is in force on B.
        patched = httpx.patch(
            f"{root_a}/admin/policies/default", json={"threshold": 0.97, "quota": 3},
            headers=ADMIN,
        )  # fmt: skip
        assert patched.status_code == 200
        assert _until(lambda: _ask(b, OTHER).headers["x-cache-threshold"] == "0.9700")
        view = httpx.get(f"{root_b}/admin/policies/default", headers=ADMIN).json()
        assert (view["threshold"], view["quota"], view["overridden"]) == (0.97, 3, True)
        # The quota (3) holds across both under concurrent misses, once the sweep ran.
        texts = [f"Give me a fact about the number {i}" for i in range(16)]
        with ThreadPoolExecutor(8) as pool:
            asked = pool.map(lambda i: _ask((a, b)[i % 2], texts[i], store=True), range(16))
            assert [r.headers["x-cache"] for r in asked] == ["miss"] * 16

        def kept() -> int:
            listed = httpx.get(f"{root_a}/admin/entries?limit=100", headers=ADMIN).json()
            return len(listed["data"])

        # The newest 3: each trim keeps the best 3 it sees, so none takes it below its quota.
        assert _until(lambda: kept() == 3), kept()


def test_a_replica_killed_under_load_loses_no_acknowledged_entry(
    tmp_path: Path, upstream: FakeUpstream, model_cache: Path
) -> None:
    configs = _replicas(tmp_path, upstream, model_cache)
    env = gateway_env()
    texts = [f"Suggest a name for a boat, idea number {i}" for i in range(400)]
    acknowledged: list[str] = []
    served_by_b: list[int] = []
    with (
        gateway_process(configs[0], env) as (a_process, a),
        gateway_process(configs[1], env) as (
            _,
            b,
        ),
    ):

        def to_a(text: str) -> None:
            try:
                response = _ask(a, text, store=True)
            except httpx.TransportError:
                return  # A is gone: not acknowledged
            if response.headers.get("x-cache") == "miss":
                acknowledged.append(text)

        def to_b(i: int) -> None:
            served_by_b.append(_ask(b, f"What rhymes with word number {i}?").status_code)

        with ThreadPoolExecutor(6) as pool:
            futures = [pool.submit(to_a, text) for text in texts]
            futures += [pool.submit(to_b, i) for i in range(30)]
            assert _until(lambda: len(acknowledged) >= 10)
            a_process.kill()  # kill -9, mid-load
            for future in futures:
                future.result()
        assert 10 <= len(acknowledged) < len(texts)  # A died with requests in flight
        # Every answer A acknowledged was stored: B serves each from the shared store.
        assert all(_tier(b, text) == "exact" for text in acknowledged)
        assert served_by_b == [200] * 30  # B kept serving throughout


def test_a_model_activated_through_one_replica_is_served_by_the_other(
    tmp_path: Path, upstream: FakeUpstream, model_cache: Path
) -> None:
    configs = _replicas(tmp_path, upstream, model_cache, embedding='model = "base"')
    env = {**gateway_env(), "GATEWAY_ADMIN_TOKEN": "replicas-admin"}
    with gateway_process(configs[0], env) as (_, a), gateway_process(configs[1], env) as (_, b):
        root_a, root_b = a.removesuffix("/v1"), b.removesuffix("/v1")
        assert _ask(a, QUESTION, store=True).headers["x-cache"] == "miss"

        def serving(root: str) -> str:
            view = httpx.get(f"{root}/admin/model", headers=ADMIN).json()
            return str(view["model"])

        assert serving(root_b) == "base"
        started = httpx.post(f"{root_a}/admin/model", json={"model": "trained"}, headers=ADMIN)
        assert started.status_code in (200, 202), started.text
        assert _until(lambda: serving(root_a) == "trained", 120)
        # B hears of the activation in the change log and makes the same change.
        assert _until(lambda: serving(root_b) == "trained", 120)
        assert _until(lambda: _tier(b, PARAPHRASE) == "semantic", 30)  # its new indexes
