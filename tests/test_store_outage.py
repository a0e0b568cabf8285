"""PostgreSQL unavailable under a running gateway: requests still get answers (the cache
fails open: bypassed, or answered without being stored), what was stored before is kept,
and the gateway recovers by itself when the database is back. The outage is real: the
database refuses connections and every open one is terminated. (The SQLite store is a file
of the gateway's own machine: it has no outage of this kind.)"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.fake_upstream import FakeUpstream, serve_fake_upstream
from tests.support.gateway_process import gateway_env, gateway_process, write_config
from tests.support.stores import admin_sql, on_postgres, store_url

pytestmark = pytest.mark.skipif(
    not on_postgres(), reason="a database server's outage: runs on the PostgreSQL run"
)


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with serve_fake_upstream() as fake:
        yield fake


def _ask(base: str, text: str, *, store: bool = True) -> httpx.Response:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}
    headers = {} if store else {"cache-control": "no-store"}
    return httpx.post(f"{base}/chat/completions", json=body, headers=headers, timeout=30)


def test_requests_fail_open_while_postgres_is_down_and_recover(
    tmp_path: Path, upstream: FakeUpstream, model_cache: Path
) -> None:
    url = store_url(tmp_path / "outage.db")
    database = url.rsplit("/", 1)[1]
    config = write_config(
        tmp_path, upstream_base_url=upstream.base_url, model_cache=model_cache, store=url,
        extra="\n[cache]\nhot_bytes = 0\n",  # every exact hit reads the store
    )  # fmt: skip
    with gateway_process(config, gateway_env()) as (_, base):
        before = "What is the tallest mountain in Europe?"
        assert _ask(base, before).headers["x-cache"] == "miss"
        assert _ask(base, before).headers["x-cache"] == "hit"
        admin_sql(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        admin_sql(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'"
        )
        try:
            during = [_ask(base, f"Name a river in country number {i}") for i in range(4)]
            during.append(_ask(base, before))
            # Every request is answered; none from the cache, none stored.
            assert [r.status_code for r in during] == [200] * 5
            assert {r.headers["x-cache"] for r in during} <= {"miss", "bypass"}
            assert "store_error" in {r.headers.get("x-cache-bypass-reason") for r in during}
        finally:
            admin_sql(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        # Back by itself: what was stored before is served, new answers are stored again.
        deadline = time.monotonic() + 30
        while _ask(base, before).headers["x-cache"] != "hit":
            assert time.monotonic() < deadline, "the gateway did not recover"
            time.sleep(0.2)  # the poll interval of a bounded wait for recovery
        after = "Name a lake in Finland"
        assert _ask(base, after).headers["x-cache"] == "miss"
        assert _ask(base, after).headers["x-cache"] == "hit"
