from __future__ import annotations

import pytest

from categories.load import LoadMonitor, LoadSettings, adapt
from categories.policy import Policy

POLICY = Policy(
    "p", threshold=0.95, threshold_floor=0.85, ttl_seconds=600.0, ttl_ceiling_seconds=3600.0
)


def test_adapt_moves_linearly_between_policy_and_bounds() -> None:
    assert adapt(POLICY, 0.0).threshold == 0.95 and adapt(POLICY, 0.0).ttl_seconds == 600
    half = adapt(POLICY, 0.5)
    assert half.threshold == pytest.approx(0.90) and half.ttl_seconds == pytest.approx(2100)
    assert adapt(POLICY, 1.0).threshold == 0.85 and adapt(POLICY, 1.0).ttl_seconds == 3600
    assert adapt(POLICY, 7.0) == adapt(POLICY, 1.0)  # clamped
    assert adapt(POLICY, -1.0) == adapt(POLICY, 0.0)


def test_inflight_load_starts_at_the_knee() -> None:
    monitor = LoadMonitor(LoadSettings(max_inflight=10, inflight_knee=0.5))
    for _ in range(5):
        monitor.started("m")
    assert monitor.load("m", now=0.0) == 0.0  # half full: no adaptation yet
    for _ in range(5):
        monitor.started("m")
    assert monitor.load("m", now=0.0) == 1.0
    for _ in range(3):
        monitor.finished("m", 0.1, now=0.0)
    assert monitor.load("m", now=0.0) == pytest.approx(0.4)  # 7 of 10: (0.7 - 0.5) / 0.5
    assert monitor.load("other", now=0.0) == 0.0


def test_latency_load_then_relaxes_when_no_slow_answer_comes() -> None:
    monitor = LoadMonitor(LoadSettings(latency_slo_ms=1000, ewma_alpha=1.0, error_window_s=10))
    monitor.started("m")
    monitor.finished("m", 1.5, now=100.0)  # 1.5 x the SLO
    assert monitor.load("m", now=100.0) == pytest.approx(0.5)
    assert monitor.load("m", now=110.0) == pytest.approx(0.25)  # one half-life later
    assert monitor.load("m", now=200.0) < 0.01
    monitor.started("m")
    monitor.finished("m", 0.2, now=201.0)
    assert monitor.load("m", now=201.0) == 0.0


def test_errors_count_within_the_window_only() -> None:
    monitor = LoadMonitor(LoadSettings(errors_at_full=4, error_window_s=30))
    for at, status in ((0.0, 429), (1.0, 503), (2.0, 400), (3.0, 500)):
        monitor.started("m")
        monitor.finished("m", 0.1, status=status, now=at)
    assert monitor.load("m", now=5.0) == pytest.approx(0.75)  # 400 is the caller's fault
    assert monitor.load("m", now=31.5) == pytest.approx(0.25)  # 0 and 1 left the window
    assert monitor.load("m", now=40.0) == 0.0
    (snapshot,) = monitor.snapshot(now=40.0)
    assert snapshot.inflight == 0 and snapshot.requests == 4 and snapshot.recent_errors == 0


def test_same_signal_same_answer_and_disabled_means_zero() -> None:
    def replay(settings: LoadSettings) -> list[float]:
        monitor = LoadMonitor(settings)
        loads = []
        for step in range(50):
            monitor.started("m")
            if step % 3:
                monitor.finished(
                    "m", 0.5 + step / 10, status=503 if step % 7 == 0 else None, now=float(step)
                )
            loads.append(monitor.load("m", now=float(step)))
        return loads

    settings = LoadSettings(max_inflight=8, latency_slo_ms=2000)
    assert replay(settings) == replay(settings)
    assert max(replay(settings)) > 0
    assert set(replay(LoadSettings(max_inflight=8, latency_slo_ms=2000, enabled=False))) == {0.0}


@pytest.mark.parametrize(
    "bad",
    [
        {"max_inflight": 0},
        {"inflight_knee": 1.0},
        {"latency_slo_ms": 0},
        {"ewma_alpha": 0},
        {"error_window_s": 0},
        {"errors_at_full": 0},
    ],
)
def test_invalid_load_settings(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="adaptation"):
        LoadSettings(**bad)  # type: ignore[arg-type]


def test_acceptance_takes_the_stricter_threshold_and_skips_refusing_categories() -> None:
    from categories.load import acceptance
    from categories.policy import load_policies

    policies = load_policies()
    accept = acceptance(policies, policies["factual"], 0.0, None)
    assert next(iter(accept)) == "factual" and accept["factual"].threshold == 0.92
    assert accept["code"].threshold == 0.96 and accept["default"].threshold == 0.93
    assert "creative" not in accept  # exact repeats only: never a paraphrase's hit
    own = acceptance(policies, policies["creative"], 0.0, None)
    assert list(own) == ["creative"] and own["creative"].threshold > 1.0
    busy = acceptance(policies, policies["factual"], 1.0, None)
    assert busy["factual"].threshold == policies["factual"].threshold_floor
    hot = acceptance(policies, policies["factual"], 0.0, 0.9)
    assert set(hot) == {p.name for p in policies.policies if p.enabled and p.semantic}
    assert acceptance(policies, policies["factual"], 0.0, 1.5) == {
        "factual": accept["factual"]
    }  # the own category's refusal is the caller's to check
