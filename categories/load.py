"""Upstream load and what it does to a policy.

A `LoadMonitor` keeps, per upstream model, the requests in flight, an EWMA of latency and
the recent 429/5xx answers, and folds them into one load figure in [0, 1]. `adapt` turns
a policy and a load into the effective threshold and TTL: at load 0 the policy's own, at
load 1 its floor and ceiling, linear between. Every method takes the time explicitly
(default: the monotonic clock), so the same signal always gives the same answer.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from categories.policy import Policy, PolicySet


@dataclass(frozen=True)
class LoadSettings:
    # In-flight requests the upstream takes before it is full (load 1 from this source).
    max_inflight: int = 64
    # Share of max_inflight below which the in-flight count adds no load.
    inflight_knee: float = 0.5
    # Latency EWMA at this value adds no load; at twice it, full load.
    latency_slo_ms: float = 5000.0
    ewma_alpha: float = 0.2
    # 429/5xx answers within the window; this many make full load.
    error_window_s: float = 30.0
    errors_at_full: int = 5
    enabled: bool = True

    def __post_init__(self) -> None:
        if self.max_inflight < 1:
            raise ValueError("adaptation.max_inflight must be at least 1")
        if not 0 <= self.inflight_knee < 1:
            raise ValueError("adaptation.inflight_knee must be in [0, 1)")
        if self.latency_slo_ms <= 0:
            raise ValueError("adaptation.latency_slo_ms must be positive")
        if not 0 < self.ewma_alpha <= 1:
            raise ValueError("adaptation.ewma_alpha must be in (0, 1]")
        if self.error_window_s <= 0:
            raise ValueError("adaptation.error_window_s must be positive")
        if self.errors_at_full < 1:
            raise ValueError("adaptation.errors_at_full must be at least 1")


@dataclass(frozen=True)
class Effective:
    threshold: float
    ttl_seconds: float
    load: float


def adapt(policy: Policy, load: float) -> Effective:
    """The policy as `load` bends it: threshold toward its floor, TTL toward its ceiling."""
    share = min(max(load, 0.0), 1.0)
    threshold = policy.threshold - share * (policy.threshold - policy.threshold_floor)
    ttl = policy.ttl_seconds + share * (policy.ttl_ceiling_seconds - policy.ttl_seconds)
    return Effective(round(threshold, 4), ttl, share)


NEVER = 2.0  # a threshold no cosine reaches


@dataclass(frozen=True)
class Acceptance:
    """What a candidate of one category must meet to be served."""

    threshold: float
    guard: bool


def acceptance(
    policies: PolicySet, own: Policy, load: float, temperature: float | None
) -> dict[str, Acceptance]:
    """The query's own category first, then every other category whose entries it may be
    served: a paraphrase classified differently is still a hit, but only at the stricter of
    the two effective thresholds, and never from a category that does not cache it or
    serves exact repeats only (`semantic = false`; its own threshold is then unreachable)."""
    if not own.semantic:
        return {own.name: Acceptance(NEVER, own.guard)}
    mine = adapt(own, load).threshold
    accept = {own.name: Acceptance(mine, own.guard)}
    for policy in policies.policies:
        if policy.name != own.name and policy.refusal(temperature) is None and policy.semantic:
            threshold = max(mine, adapt(policy, load).threshold)
            accept[policy.name] = Acceptance(threshold, own.guard or policy.guard)
    return accept


@dataclass
class _Model:
    inflight: int = 0
    latency_ms: float | None = None  # EWMA
    latency_at: float = 0.0  # when the last latency sample arrived
    errors: deque[float] = field(default_factory=deque)
    requests: int = 0


@dataclass(frozen=True)
class UpstreamLoad:
    model: str
    inflight: int
    latency_ewma_ms: float | None
    recent_errors: int
    requests: int
    load: float


class LoadMonitor:
    """Use from one event loop (or one thread): no locking."""

    def __init__(
        self,
        settings: LoadSettings = LoadSettings(),
        per_model: Mapping[str, LoadSettings] | None = None,
    ) -> None:
        self.settings = settings
        self._per_model = dict(per_model or {})  # a model's own capacity and SLO
        self._models: dict[str, _Model] = {}

    def settings_of(self, model: str) -> LoadSettings:
        return self._per_model.get(model, self.settings)

    def _model(self, name: str) -> _Model:
        return self._models.setdefault(name, _Model())

    def started(self, model: str) -> None:
        state = self._model(model)
        state.inflight += 1
        state.requests += 1

    def finished(
        self,
        model: str,
        latency_s: float,
        *,
        status: int | None = None,
        now: float | None = None,
    ) -> None:
        """One request ended after `latency_s`; `status` is the upstream's error status."""
        at = time.monotonic() if now is None else now
        state = self._model(model)
        state.inflight = max(0, state.inflight - 1)
        if status is not None and (status == 429 or status >= 500):
            state.errors.append(at)
            return  # a failed request's latency says little about service time
        sample = latency_s * 1000
        alpha = self.settings_of(model).ewma_alpha
        previous = self._decayed(state, at, self.settings_of(model))
        state.latency_ms = sample if previous is None else alpha * sample + (1 - alpha) * previous
        state.latency_at = at

    def _decayed(self, state: _Model, now: float, settings: LoadSettings) -> float | None:
        """The latency EWMA, fading toward the SLO when no sample arrives (half-life: window),
        so that a model nobody is sent to stops looking slow."""
        if state.latency_ms is None:
            return None
        age = max(0.0, now - state.latency_at)
        fade = math.pow(0.5, age / settings.error_window_s)
        slo = settings.latency_slo_ms
        return slo + (state.latency_ms - slo) * fade if state.latency_ms > slo else state.latency_ms

    def load(self, model: str, now: float | None = None) -> float:
        """The load that adapts thresholds and TTLs: 0 when adaptation is off."""
        if not self.settings.enabled:
            return 0.0
        return self.pressure(model, now)

    def full(self, model: str) -> bool:
        """Whether the model has as many requests in flight as it takes."""
        state = self._models.get(model)
        return state is not None and state.inflight >= self.settings_of(model).max_inflight

    def pressure(self, model: str, now: float | None = None) -> float:
        """The model's load in [0, 1] from in-flight requests, latency and errors (whether
        or not adaptation is on: routing weighs it too)."""
        at = time.monotonic() if now is None else now
        state = self._models.get(model)
        if state is None:
            return 0.0
        s = self.settings_of(model)
        while state.errors and state.errors[0] <= at - s.error_window_s:
            state.errors.popleft()
        inflight = (state.inflight / s.max_inflight - s.inflight_knee) / (1 - s.inflight_knee)
        latency = self._decayed(state, at, s)
        slow = (latency / s.latency_slo_ms - 1.0) if latency is not None else 0.0
        errors = len(state.errors) / s.errors_at_full
        return min(1.0, max(0.0, inflight, slow, errors))

    def snapshot(self, now: float | None = None) -> list[UpstreamLoad]:
        at = time.monotonic() if now is None else now
        out = []
        for name, state in sorted(self._models.items()):
            load = self.load(name, at)
            out.append(
                UpstreamLoad(
                    name,
                    state.inflight,
                    self._decayed(state, at, self.settings_of(name)),
                    len(state.errors),
                    state.requests,
                    load,
                )
            )
        return out
