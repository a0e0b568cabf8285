"""`gateway serve --workers 2`: two processes behind one port, each with its own indexes,
serve what either stored and forget what either deleted."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support.fake_upstream import FakeUpstream, answer_for, serve_fake_upstream
from tests.support.gateway_process import gateway_env, gateway_process, write_config

ADMIN = {"authorization": "Bearer workers-admin"}
QUESTION = "How do I keep basil fresh for longer?"
PARAPHRASE = "how can I keep basil fresh longer"
EARLIER = "What is the best way to store fresh ginger?"


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with serve_fake_upstream() as fake:
        yield fake


def _ask(base_url: str, text: str, *, store: bool = False) -> httpx.Response:
    """One request on a connection of its own (so that either worker may take it), of one
    category (so that every text meets the same partition's index)."""
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}
    headers = {"x-cache-category": "default"}
    if not store:
        headers["cache-control"] = "no-store"
    with httpx.Client(base_url=base_url, timeout=30) as client:
        return client.post("/chat/completions", json=body, headers=headers)


def _served(responses: list[httpx.Response]) -> set[str | None]:
    """The cache tiers that answered; None for the upstream (identical misses in flight
    together are answered once, coalesced, which is not the cache serving)."""
    tiers = {r.headers.get("x-cache-tier") for r in responses}
    return {None if tier == "coalesced" else tier for tier in tiers}


def _all(base_url: str, text: str, count: int = 24) -> list[httpx.Response]:
    """`count` requests at once, each on its own connection: the kernel spreads
    connections among the workers (SO_REUSEPORT), so both take some."""
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda _: _ask(base_url, text), range(count)))


def _until(condition: object, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.2)  # the poll interval of a bounded wait on the condition
    return False


def test_two_workers_serve_and_forget_what_either_stored(
    tmp_path: Path, upstream: FakeUpstream, model_cache: Path
) -> None:
    config = write_config(
        tmp_path,
        upstream_base_url=upstream.base_url,
        model_cache=model_cache,
        extra="\n[cache]\nfollow_interval_s = 0.2\nhot_max_age_s = 0.5\n",
    )
    env = {**gateway_env(), "GATEWAY_ADMIN_TOKEN": "workers-admin"}
    with gateway_process(config, env, workers=2) as (_, base_url):
        assert _ask(base_url, EARLIER, store=True).headers["x-cache"] == "miss"
        # both workers search the partition now (and so hold its index): what is stored
        # next must reach them while they run
        assert _served(_all(base_url, PARAPHRASE)) == {None}
        stored = _ask(base_url, QUESTION, store=True)
        assert stored.headers["x-cache"] == "miss"
        # within the follow interval, whichever worker answers knows the entry
        assert _until(lambda: _served(_all(base_url, PARAPHRASE)) == {"semantic"})
        answers = {r.json()["choices"][0]["message"]["content"] for r in _all(base_url, PARAPHRASE)}
        assert answers == {answer_for(QUESTION)}
        assert _served(_all(base_url, QUESTION)) == {"exact"}

        root = base_url.removesuffix("/v1")
        entry = _ask(base_url, QUESTION).headers["x-cache-entry"]
        deleted = httpx.delete(f"{root}/admin/entries/{entry}", headers=ADMIN)
        assert deleted.status_code == 200
        # one worker deleted it; neither serves it again, from its index or its memory
        assert _until(lambda: _served(_all(base_url, QUESTION)) == {None})
        assert _served(_all(base_url, PARAPHRASE)) == {None}
