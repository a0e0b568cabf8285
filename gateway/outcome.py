"""What happened to one request: its outcome becomes its response headers, its event row,
its metrics and its access-log line."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from categories.classifier import Classification
from categories.policy import DEFAULT
from gateway.auth import Caller
from gateway.observe import Metrics, log_access
from gateway.settings import ModelSettings
from gateway.store.events import EventWriter
from gateway.store.queries import NewEvent
from gateway.upstream import price


@dataclass
class Outcome:
    """What happened to one request: becomes its event row and its headers."""

    caller: Caller
    requested_model: str  # the configured model name the client asked for
    started: float
    request_id: str = ""
    kind: str = "miss"
    similarity: float | None = None
    entry_id: int | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    model: str = ""
    classification: Classification = Classification(DEFAULT, "default")
    threshold: float | None = None  # the effective threshold of the semantic lookup
    upstream_ms: float | None = None  # time spent waiting on the upstream
    response_id: str | None = None
    prompt: str | None = None  # kept for semantic hits only (feedback makes it a label)
    nearest: float | None = None  # on misses: the most similar entry seen, below threshold
    bypass_reason: str | None = None  # why a bypass was neither looked up nor stored
    tier: str = ""  # the tier of the model that answered a miss: small or large
    route_reason: str | None = None  # why a route's miss went to that member
    examples: tuple[int, ...] = ()  # the in-context examples given (entry ids)
    example_tokens: int = 0  # their estimated prompt tokens, which the large one would not read
    # Routed to the small member: the large one, whose price at the same tokens is the
    # baseline of what routing saved.
    baseline: ModelSettings | None = None
    routing_saved_usd: float | None = None

    def headers(self) -> dict[str, str]:
        headers = {
            "x-cache": "hit" if self.kind.startswith("hit") else self.kind,
            "x-cache-category": self.classification.category,
            "x-cache-category-step": self.classification.step,
        }
        if self.threshold is not None:
            headers["x-cache-threshold"] = f"{self.threshold:.4f}"
        if self.kind.startswith("hit"):
            headers["x-cache-similarity"] = f"{self.similarity:.4f}"
            if self.entry_id is not None:  # coalesced answers have no entry of their own
                headers["x-cache-entry"] = str(self.entry_id)
            headers["x-cache-tier"] = self.kind.removeprefix("hit_")
        elif self.nearest is not None:
            headers["x-cache-nearest"] = f"{self.nearest:.4f}"
        if self.kind == "bypass" and self.bypass_reason:
            headers["x-cache-bypass-reason"] = self.bypass_reason
        if self.model:
            headers["x-gateway-model"] = self.model
            headers["x-gateway-route"] = self.tier
            if self.route_reason:
                headers["x-gateway-route-reason"] = self.route_reason
        if self.examples:
            ids = ",".join(str(i) for i in self.examples)
            headers["x-cache-examples"] = f"count={len(self.examples)}; ids={ids}"
        return headers


def account(outcome: Outcome, model: ModelSettings, usage: dict[str, Any] | None) -> None:
    usage = usage or {}
    outcome.prompt_tokens = int(usage.get("prompt_tokens") or 0)
    outcome.completion_tokens = int(usage.get("completion_tokens") or 0)
    outcome.cost_usd = price(model.litellm_model, outcome.prompt_tokens, outcome.completion_tokens)
    if outcome.baseline is not None:  # the large member's price, without the examples
        prompt = max(0, outcome.prompt_tokens - outcome.example_tokens)
        large = price(outcome.baseline.litellm_model, prompt, outcome.completion_tokens)
        outcome.routing_saved_usd = large - outcome.cost_usd


class Recorder:
    """Turns outcomes into event rows, metrics and access-log lines."""

    def __init__(self, events: EventWriter, metrics: Metrics, *, log_prompts: bool) -> None:
        self._events, self._metrics, self._log_prompts = events, metrics, log_prompts

    def record(self, outcome: Outcome) -> None:
        """The request's event row (journaled now, written in batches), its metrics and its
        log line. Called before the answer is acknowledged, so an acknowledged request always
        has its event, even if the process is killed the next moment."""
        event = NewEvent(
            ts=time.time(),
            tenant=outcome.caller.tenant,
            category=outcome.classification.category,
            category_step=outcome.classification.step,
            threshold=outcome.threshold,
            outcome=outcome.kind,
            latency_ms=(time.perf_counter() - outcome.started) * 1000,
            similarity=outcome.similarity,
            prompt_tokens=outcome.prompt_tokens,
            completion_tokens=outcome.completion_tokens,
            cost_usd=outcome.cost_usd,
            model=outcome.model,
            entry_id=outcome.entry_id,
            requested_model=outcome.requested_model,
            bypass_reason=outcome.bypass_reason,
            request_id=outcome.request_id or None,
            route=outcome.tier if outcome.route_reason else None,
            route_reason=outcome.route_reason,
            examples=",".join(str(i) for i in outcome.examples) or None,
            routing_saved_usd=outcome.routing_saved_usd,
            upstream_ms=outcome.upstream_ms,
            response_id=outcome.response_id,
            prompt=outcome.prompt,
        )
        self._events.put(event)
        fields = vars(event)
        self._metrics.observe(fields)
        log_access({**fields, "namespace": outcome.caller.namespace}, with_prompt=self._log_prompts)
