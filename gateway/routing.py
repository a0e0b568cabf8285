"""Routes: a name clients ask for whose misses go to a small or a large model.

For each miss of a route the router chooses the large member, the small one with in-context
examples from the cache, or the small one alone (IC-Cache's selector, without its learned
model). Its inputs:

- the category's preference (`route` in the policy: auto, large or small);
- an estimate that the small member answers acceptably, between the route's
  `small_quality` (its acceptable share without examples) and `small_quality_examples`
  (with examples of full relevance), by how much the examples carry:
  `q = small_quality + (small_quality_examples - small_quality) * carried`, with
  `carried = 1 - prod(1 - min(1, 2 * u_i * r_i))`, where `u_i` is an example's learned
  utility (0.5 unjudged, so 2u is 1) and `r_i` places its similarity between the category's
  example floor (0) and its hit threshold (1);
- the large member's load (`LoadMonitor.pressure`: in-flight against capacity, latency EWMA
  against the SLO, upstream 429/5xx): the bar `q` must reach falls linearly from
  `quality_bar` when the large member is idle to `quality_floor` when it is full;
- the price: when the small member is not cheaper per token, nothing is gained from it while
  the large member is idle, so the idle bar is 1 (load alone sends misses to it).

A member that is full (as many requests in flight as it takes) is avoided while the other
is not. A client may insist with `x-gateway-route: small | large | auto`, unless the operator
forbids it for its key (`[tenants] route_header`, per virtual key).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from categories.load import LoadMonitor
from categories.policy import Policy
from gateway.cache.examples import Example
from gateway.errors import InvalidRequest, PermissionDenied
from gateway.settings import ModelSettings, RouteSettings
from gateway.upstream import price

ROUTE_HEADER = "x-gateway-route"
CHOICES = ("auto", "small", "large")
_PRICE_TOKENS = 1000  # the per-token price compared: 1000 prompt and 1000 completion tokens


@dataclass(frozen=True)
class Route:
    settings: RouteSettings
    small: ModelSettings
    large: ModelSettings
    small_cheaper: bool  # per token, by LiteLLM's price map

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def allow_params(self) -> tuple[str, ...]:
        """Extra parameters both members take: a miss may go to either."""
        return tuple(p for p in self.small.allow_params if p in self.large.allow_params)

    def member(self, which: str) -> ModelSettings:
        return self.small if which == "small" else self.large


def build_routes(
    routes: tuple[RouteSettings, ...], models: Mapping[str, ModelSettings]
) -> dict[str, Route]:
    built = {}
    for route in routes:
        small, large = models[route.small], models[route.large]
        cheaper = _unit_price(small) < _unit_price(large)
        built[route.name] = Route(route, small, large, cheaper)
    return built


def _unit_price(model: ModelSettings) -> float:
    return price(model.litellm_model, _PRICE_TOKENS, _PRICE_TOKENS)


def routed(routes: Mapping[str, Route], body: Any) -> Route | None:
    """The route a request body names, if it names one."""
    name = body.get("model") if isinstance(body, dict) else None
    return routes.get(name) if isinstance(name, str) else None


def wanted(header: str | None, *, allowed: bool) -> str:
    """The member a client insists on (`x-gateway-route`), checked: auto without a header."""
    if header is None:
        return "auto"
    choice = header.strip().lower()
    if choice not in CHOICES:
        raise InvalidRequest(f"{ROUTE_HEADER} must be small, large or auto", param=ROUTE_HEADER)
    if choice != "auto" and not allowed:
        raise PermissionDenied(f"{ROUTE_HEADER} is not allowed for this key")
    return choice


@dataclass(frozen=True)
class Decision:
    member: str  # small or large
    reason: str  # client, category, quality, load or full
    quality: float | None = None  # the estimate, when the router weighed it
    bar: float | None = None  # the bar it had to reach
    examples: tuple[Example, ...] = field(default=())


def estimate(
    settings: RouteSettings, examples: list[Example], floor: float, threshold: float
) -> float:
    """The estimated chance the small member answers acceptably with these examples."""
    span = max(threshold - floor, 1e-6)
    uncarried = 1.0
    for example in examples:
        relevance = min(1.0, max(0.0, (example.similarity - floor) / span))
        uncarried *= 1.0 - min(1.0, 2.0 * example.utility * relevance)
    lift = settings.small_quality_examples - settings.small_quality
    return settings.small_quality + lift * (1.0 - uncarried)


def bar(route: Route, large_load: float) -> float:
    """The estimate the small member must reach at this load of the large one."""
    settings = route.settings
    idle = settings.quality_bar if route.small_cheaper else 1.0
    share = min(max(large_load, 0.0), 1.0)
    return idle - share * (idle - min(settings.quality_floor, idle))


def decide(
    route: Route,
    *,
    choice: str,
    policy: Policy,
    examples: list[Example],
    threshold: float,
    load: LoadMonitor,
    now: float | None = None,
) -> Decision:
    """Where one miss of `route` goes (see the module); `now` on the load's clock."""
    given = tuple(examples)
    if choice in ("small", "large"):
        return Decision(choice, "client", examples=given if choice == "small" else ())
    if policy.route in ("small", "large"):
        member = policy.route
        return Decision(member, "category", examples=given if member == "small" else ())
    pressure = load.pressure(route.large.name, now)
    quality = estimate(route.settings, examples, policy.example_floor, threshold)
    needed = bar(route, pressure)
    if quality >= needed:
        idle = bar(route, 0.0)
        member, reason = "small", ("quality" if quality >= idle else "load")
    else:
        member, reason = "large", "quality"
    other = "large" if member == "small" else "small"
    if load.full(route.member(member).name) and not load.full(route.member(other).name):
        member, reason = other, "full"
    return Decision(member, reason, quality, needed, given if member == "small" else ())
