"""The router's choice for one miss of a route, from load, examples, category and price."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from categories.load import LoadMonitor, LoadSettings
from categories.policy import Policy
from gateway.cache.examples import Example, ExampleLimits, choose, utility, with_examples
from gateway.errors import InvalidRequest, PermissionDenied
from gateway.routing import Route, bar, decide, estimate, wanted
from gateway.settings import ModelSettings, RouteSettings, Settings, SettingsError

SMALL = ModelSettings(name="mini", litellm_model="openai/gpt-4o-mini", max_inflight=8)
LARGE = ModelSettings(name="big", litellm_model="openai/gpt-4o", tier="large", max_inflight=4)
ROUTE = Route(RouteSettings("auto", "mini", "big"), SMALL, LARGE, small_cheaper=True)
POLICY = Policy("default", threshold=0.9, threshold_floor=0.9, example_floor=0.6)
NOW = 1000.0


def example(entry_id: int, similarity: float, good: float = 0.0, bad: float = 0.0) -> Example:
    return Example(entry_id, similarity, utility(good, bad), _prompt(entry_id), "answer")


def _prompt(entry_id: int) -> str:
    return "question " + "abcdefgh"[entry_id]


def monitor(large_inflight: int = 0, small_inflight: int = 0) -> LoadMonitor:
    base = LoadSettings(inflight_knee=0.0)
    load = LoadMonitor(base, {"mini": dataclasses.replace(base, max_inflight=8),
                              "big": dataclasses.replace(base, max_inflight=4)})  # fmt: skip
    for _ in range(large_inflight):
        load.started("big")
    for _ in range(small_inflight):
        load.started("mini")
    return load


def route(load: LoadMonitor, examples: list[Example], policy: Policy = POLICY) -> tuple[str, str]:
    decision = decide(
        ROUTE, choice="auto", policy=policy, examples=examples, threshold=0.9, load=load
    )
    return decision.member, decision.reason


def test_the_estimate_grows_with_similarity_utility_and_count() -> None:
    settings = ROUTE.settings
    alone, best = settings.small_quality, settings.small_quality_examples
    assert estimate(settings, [], 0.6, 0.9) == pytest.approx(alone)
    near, far = example(1, 0.8), example(2, 0.65)
    assert estimate(settings, [near], 0.6, 0.9) > estimate(settings, [far], 0.6, 0.9) > alone
    useful = example(1, 0.8, good=8)
    assert estimate(settings, [useful], 0.6, 0.9) > estimate(settings, [near], 0.6, 0.9)
    assert estimate(settings, [near, far], 0.6, 0.9) > estimate(settings, [near], 0.6, 0.9)
    assert estimate(settings, [example(1, 0.5)], 0.6, 0.9) == pytest.approx(alone)  # below floor
    # never beyond the measured quality with examples, reached at full relevance
    assert estimate(settings, [example(1, 0.9, good=50)] * 3, 0.6, 0.9) == pytest.approx(best)
    useless = example(1, 0.89, bad=50)  # judged, and it never helped
    assert estimate(settings, [useless], 0.6, 0.9) == pytest.approx(alone, abs=0.02)


def test_the_bar_falls_as_the_large_model_fills_and_price_sets_the_idle_bar() -> None:
    settings = ROUTE.settings
    assert bar(ROUTE, 0.0) == settings.quality_bar
    assert bar(ROUTE, 1.0) == pytest.approx(settings.quality_floor)
    assert settings.quality_floor < bar(ROUTE, 0.5) < settings.quality_bar
    same_price = dataclasses.replace(ROUTE, small_cheaper=False)
    assert bar(same_price, 0.0) == 1.0
    assert bar(same_price, 1.0) == pytest.approx(settings.quality_floor)


def test_idle_large_keeps_misses_unless_examples_are_good() -> None:
    assert route(monitor(), []) == ("large", "quality")
    assert route(monitor(), [example(1, 0.7)]) == ("large", "quality")
    strong = [example(1, 0.89, good=20), example(2, 0.88, good=20)]
    assert route(monitor(), strong) == ("small", "quality")


def test_load_on_the_large_model_lowers_the_bar() -> None:
    some = [example(1, 0.7)]
    assert route(monitor(large_inflight=1), some)[0] == "large"
    assert route(monitor(large_inflight=3), some) == ("small", "load")
    # full: even the small model alone is acceptable at the floor
    assert route(monitor(large_inflight=4), []) == ("small", "load")


def test_a_full_member_is_avoided_while_the_other_has_room() -> None:
    strong = [example(1, 0.89, good=20), example(2, 0.88, good=20)]
    assert route(monitor(small_inflight=8), strong) == ("large", "full")
    assert route(monitor(large_inflight=4, small_inflight=8), [])[0] == "small"  # both full


def test_the_category_and_the_client_decide_before_the_router() -> None:
    strong = [example(1, 0.89, good=20)]
    large = dataclasses.replace(POLICY, route="large")
    assert route(monitor(large_inflight=4), strong, large) == ("large", "category")
    small = dataclasses.replace(POLICY, route="small")
    decision = decide(ROUTE, choice="auto", policy=small, examples=strong, threshold=0.9,
                      load=monitor())  # fmt: skip
    assert (decision.member, decision.reason, decision.examples) == ("small", "category",
                                                                      tuple(strong))  # fmt: skip
    client = decide(ROUTE, choice="large", policy=small, examples=strong, threshold=0.9,
                    load=monitor())  # fmt: skip
    assert (client.member, client.reason, client.examples) == ("large", "client", ())


def test_the_header_values() -> None:
    assert wanted(None, allowed=False) == "auto"
    assert wanted(" Small ", allowed=True) == "small"
    assert wanted("auto", allowed=False) == "auto"
    with pytest.raises(InvalidRequest):
        wanted("medium", allowed=True)
    with pytest.raises(PermissionDenied):
        wanted("large", allowed=False)


def test_selection_takes_the_best_scores_under_budget_and_drops_contradictions() -> None:
    limits = ExampleLimits(floor=0.6, budget_tokens=1000, k_max=2)
    candidates = [
        example(1, 0.95),  # at or above the hit threshold: a hit, not an example
        example(2, 0.85),
        example(3, 0.8, good=9),  # less similar, far more useful: the best score
        example(4, 0.7),
        example(5, 0.55),  # below the floor
    ]
    chosen = choose(candidates, limits, threshold=0.9, query="question")
    assert [c.entry_id for c in chosen] == [3, 2]
    tight = choose(candidates, dataclasses.replace(limits, budget_tokens=20), threshold=0.9,
                   query="question")  # fmt: skip
    assert [c.entry_id for c in tight] == [3]  # each is 11 tokens
    off = choose(candidates, dataclasses.replace(limits, enabled=False), threshold=0.9,
                 query="question")  # fmt: skip
    assert off == []
    negated = Example(6, 0.85, 0.5, "how do I not turn on dark mode", "answer")
    assert choose([negated], limits, threshold=0.9, query="how do I turn on dark mode") == []
    assert choose([negated], limits, threshold=0.9, query="how do I turn on dark mode",
                  guard=False) == [negated]  # fmt: skip


def test_the_format_puts_examples_after_the_system_prompt_best_last() -> None:
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]
    best, second = example(1, 0.9), example(2, 0.8)
    assert with_examples(messages, [best, second]) == [
        {"role": "system", "content": "s"},
        {"role": "user", "content": _prompt(2)},
        {"role": "assistant", "content": "answer"},
        {"role": "user", "content": _prompt(1)},
        {"role": "assistant", "content": "answer"},
        {"role": "user", "content": "q"},
    ]
    assert with_examples(messages, []) is messages


def _routes(routes: list[dict[str, Any]]) -> Settings:
    models = [
        {"name": "mini", "litellm_model": "openai/gpt-4o-mini"},
        {"name": "big", "litellm_model": "openai/gpt-4o", "tier": "large"},
    ]
    return Settings.from_dict({"models": models, "routes": routes}, {})


def test_route_settings_are_checked() -> None:
    ok = _routes([{"name": "auto", "small": "mini", "large": "big"}])
    assert ok.routes[0].large == "big"
    for wrong, message in (
        ({"name": "auto", "small": "mini", "large": "nope"}, "no model named 'nope'"),
        ({"name": "auto", "small": "big", "large": "mini"}, "has tier 'large'"),
        ({"name": "mini", "small": "mini", "large": "big"}, "a model has that name"),
        ({"name": "auto", "small": "mini", "large": "big", "quality_bar": 2}, "in [0, 1]"),
        (
            {"name": "auto", "small": "mini", "large": "big", "quality_bar": 0.2},
            "must not exceed",
        ),
    ):
        with pytest.raises(SettingsError, match=message.replace("[", r"\[")):
            _routes([wrong])
