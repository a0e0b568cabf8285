"""`gateway refine` on a store a routed gateway filled: the small model on the fake upstream
(loopback, through LiteLLM) is asked again with examples, judged, and utilities change."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import main
from gateway.refine.run import Summary, refine
from gateway.settings import Settings
from gateway.store import open_store
from gateway.store.models import CacheEntry
from gateway.upstream import Upstreams
from tests.gateway.conftest import AppFactory, gateway_settings
from tests.gateway.test_routing import LIST, STRING, TUPLE, _app, ask, routed_settings
from tests.support.embedders import HashingEmbedder
from tests.support.fake_upstream import FakeUpstream
from tests.support.stores import store_url


def arguments(**changes: Any) -> argparse.Namespace:
    values = {
        "route": None, "sample": 10, "tenant": None, "judge": "similarity",
        "judge_threshold": 0.8, "budget_usd": 1.0, "retire_after": 3, "concurrency": 2,
        "seed": 0, "dry_run": False, "json": None,
    }  # fmt: skip
    return argparse.Namespace(**{**values, **changes})


def seeded(make_fast_app: AppFactory, upstream: FakeUpstream, db: Path) -> Settings:
    """Three large-model answers that are each other's neighbours; the settings to refine."""
    with _app(make_fast_app, upstream, db) as client:
        for text in (LIST, STRING, TUPLE):
            ask(client, text, route="large")
    settings = routed_settings()
    for model in settings["models"]:
        model["api_base"] = upstream.base_url
    return gateway_settings(db, upstream, **settings)


def run(settings: Settings, **changes: Any) -> Summary:
    store = open_store(settings.store.url)
    try:
        return asyncio.run(
            refine(settings, store, HashingEmbedder(), Upstreams(), arguments(**changes))
        )
    finally:
        store.engine.dispose()


def examples_of(settings: Settings) -> dict[int, tuple[float, float, bool]]:
    store = open_store(settings.store.url)
    with store.session() as session:
        rows = session.query(CacheEntry).all()
        found = {r.id: (r.example_good, r.example_bad, r.example_retired) for r in rows}
    store.engine.dispose()
    return found


def test_refine_asks_the_small_model_judges_and_credits_the_examples(
    make_fast_app: AppFactory, upstream: FakeUpstream, tmp_path: Path
) -> None:
    settings = seeded(make_fast_app, upstream, tmp_path / "r.db")
    upstream.calls.clear()
    summary = run(settings)
    assert (summary.sampled, summary.without_examples, summary.judged) == (3, 0, 3)
    # the fake small model answers the last user turn as the large one did: acceptable
    assert summary.helped == 3 and summary.credited >= 3 and summary.spent_usd > 0
    small = [c for c in upstream.calls if c["model"] == "gpt-4o-mini"]
    assert len(small) == 3 and all(len(c["messages"]) >= 4 for c in small)  # with examples
    goods = [good for good, bad, _ in examples_of(settings).values()]
    assert sum(goods) == summary.credited


def test_a_dry_run_calls_and_writes_nothing(
    make_fast_app: AppFactory, upstream: FakeUpstream, tmp_path: Path
) -> None:
    settings = seeded(make_fast_app, upstream, tmp_path / "r.db")
    before = examples_of(settings)
    upstream.calls.clear()
    summary = run(settings, dry_run=True, judge="llm")
    assert upstream.calls == [] and examples_of(settings) == before
    assert len(summary.plans) == 3 and summary.estimated_usd > 0 and summary.judged == 0


def test_examples_that_never_help_are_retired_and_the_budget_caps_spending(
    make_fast_app: AppFactory, upstream: FakeUpstream, tmp_path: Path
) -> None:
    settings = seeded(make_fast_app, upstream, tmp_path / "r.db")
    # the large model as judge: the fake one never answers YES
    first = run(settings, judge="llm", retire_after=0)
    assert (first.judged, first.helped, first.retired) == (3, 0, 0)
    assert all(bad > 0 and good == 0 for good, bad, _ in examples_of(settings).values())

    upstream.calls.clear()
    broke = run(settings, budget_usd=0.0)
    assert broke.stopped_by_budget and broke.judged == 0 and upstream.calls == []

    second = run(settings, judge="llm", retire_after=2)
    assert second.retired == 3
    assert all(gone for _, _, gone in examples_of(settings).values())
    third = run(settings)  # retired entries are no one's examples any more
    assert (third.without_examples, third.judged) == (3, 0)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--sample", "0"], "--sample must be at least 1"),
        (["--judge-threshold", "1.5"], "--judge-threshold"),
        (["--budget-usd", "-1"], "--budget-usd"),
        (["--route", "nope"], "no route 'nope'"),
    ],
)
def test_refine_arguments_are_checked_before_anything_runs(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["refine", *flags]) == 2
    assert message in capsys.readouterr().err


def test_the_command_plans_on_the_configured_store_and_writes_json(
    make_fast_app: AppFactory,
    upstream: FakeUpstream,
    tmp_path: Path,
    model_cache: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seeded(make_fast_app, upstream, tmp_path / "r.db")
    config = tmp_path / "gateway.toml"
    models = "".join(
        f'[[models]]\nname = "{name}"\nlitellm_model = "{litellm}"\napi_base = '
        f'"{upstream.base_url}"\napi_key_env = "FAKE_UPSTREAM_KEY"\ntier = "{tier}"\n'
        for name, litellm, tier in (
            ("mini", "openai/gpt-4o-mini", "small"), ("big", "openai/gpt-4o", "large"),
        )
    )  # fmt: skip
    config.write_text(
        f'[store]\nurl = "{store_url(tmp_path / "r.db")}"\n'
        f'[embedding]\nmodel = "base"\ncache_dir = "{model_cache}"\n'
        "[categories.default]\nthreshold = 0.99\nthreshold_floor = 0.99\nexample_floor = 0.3\n"
        f'{models}[[routes]]\nname = "auto"\nsmall = "mini"\nlarge = "big"\n'
    )
    out = tmp_path / "plan.json"
    upstream.calls.clear()
    code = main(["refine", "--config", str(config), "--dry-run", "--json", str(out)])
    assert code == 0, capsys.readouterr().err
    assert "dry run: would ask the small model" in capsys.readouterr().out
    plan = json.loads(out.read_text())
    assert plan["dry_run"] and plan["sampled"] == 3 and upstream.calls == []
    assert len(plan["plans"]) + plan["without_examples"] == 3
