"""What operators watch: Prometheus metrics and one JSON log line per request.

Labels are category, model and outcome, never a tenant or a key (a tenant label would let
anyone who reads the metrics count a customer's traffic, and grows without bound).
Each app has its own registry: no process-wide state.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

ACCESS_LOGGER = "gateway.access"
_LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ("category", "model")
        self.requests = Counter(
            "gateway_requests",
            "Chat requests by outcome.",
            (*labels, "outcome"),
            registry=self.registry,
        )
        self.hits = Counter(
            "gateway_cache_hits",
            "Requests answered from the cache.",
            (*labels, "tier"),
            registry=self.registry,
        )
        self.misses = Counter(
            "gateway_cache_misses",
            "Requests sent upstream after a lookup.",
            labels,
            registry=self.registry,
        )
        self.latency = Histogram(
            "gateway_request_latency_seconds",
            "Time from request to last byte.",
            ("category", "outcome"),
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.added = Histogram(
            "gateway_added_latency_seconds",
            "Latency the gateway added (upstream time excluded).",
            ("category", "outcome"),
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.saved_tokens = Counter(
            "gateway_saved_tokens",
            "Tokens not bought upstream thanks to hits.",
            labels,
            registry=self.registry,
        )
        self.saved_cost = Counter(
            "gateway_saved_cost_usd",
            "Money not spent upstream thanks to hits (USD).",
            labels,
            registry=self.registry,
        )

        self.events_dropped = Counter(
            "gateway_events_dropped",
            "Request events dropped because too many were waiting to be written.",
            registry=self.registry,
        )

        self.bypasses = Counter(
            "gateway_bypasses",
            "Requests neither looked up nor stored, by reason.",
            ["reason"],
            registry=self.registry,
        )

        self.routes = Counter(
            "gateway_routed",
            "Misses of a route by the member that answered and why.",
            ("category", "model", "route", "reason"),
            registry=self.registry,
        )
        self.routing_saved = Counter(
            "gateway_routing_saved_cost_usd",
            "Money saved by answering a route's misses with its small member (USD).",
            labels,
            registry=self.registry,
        )
        self.embedding_batch = Histogram(
            "gateway_embedding_batch_size",
            "Texts per model call of the embedding batcher.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=self.registry,
        )
        self.embedding_queue = Gauge(
            "gateway_embedding_queue_depth",
            "Texts waiting to be embedded (callers that gave up excluded).",
            registry=self.registry,
        )
        self.stored_later = Counter(
            "gateway_stored_after_fail_open",
            "Answers of misses whose lookup failed open, embedded and stored after the answer.",
            registry=self.registry,
        )
        self.examples = Counter(
            "gateway_examples_given",
            "In-context examples given to a small member.",
            labels,
            registry=self.registry,
        )

    def observe(self, event: dict[str, Any]) -> None:
        category, model, outcome = event["category"], event["requested_model"], event["outcome"]
        self.requests.labels(category, model, outcome).inc()
        seconds = event["latency_ms"] / 1000
        self.latency.labels(category, outcome).observe(seconds)
        upstream = (event["upstream_ms"] or 0.0) / 1000
        self.added.labels(category, outcome).observe(max(0.0, seconds - upstream))
        if outcome.startswith("hit"):
            self.hits.labels(category, model, outcome.removeprefix("hit_")).inc()
            tokens = event["prompt_tokens"] + event["completion_tokens"]
            self.saved_tokens.labels(category, model).inc(tokens)
            self.saved_cost.labels(category, model).inc(event["cost_usd"])
        elif outcome == "miss":
            self.misses.labels(category, model).inc()
        elif outcome == "bypass":
            self.bypasses.labels(event["bypass_reason"] or "unknown").inc()
        if event.get("route"):
            self.routes.labels(category, model, event["route"], event["route_reason"]).inc()
            self.routing_saved.labels(category, model).inc(
                max(0.0, event["routing_saved_usd"] or 0.0)
            )
            if event["examples"]:
                self.examples.labels(category, model).inc(len(event["examples"].split(",")))

    def render(self) -> bytes:
        return generate_latest(self.registry)


def log_access(event: dict[str, Any], *, with_prompt: bool) -> None:
    """One JSON line per request on the `gateway.access` logger; the prompt only when
    enabled, and never a key (events hold the salted tenant hash only)."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not logger.isEnabledFor(logging.INFO):
        return
    line = {k: v for k, v in event.items() if k != "prompt" or with_prompt}
    logger.info(json.dumps(line, ensure_ascii=False, separators=(",", ":")))
