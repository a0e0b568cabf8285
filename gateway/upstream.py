"""Calling the model behind the gateway: LiteLLM for real providers, and a built-in
simulated model when none is configured. The only place foreign errors are translated."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import os
import time
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.errors import GatewayError, UpstreamError, UpstreamTimeout
from gateway.params import CHAT, never_allowed
from gateway.settings import ModelSettings

logger = logging.getLogger(__name__)

SIMULATED_PREFIX = "simulated/"
Chunk = dict[str, Any]


class Upstream(Protocol):
    async def complete(
        self, model: ModelSettings, body: dict[str, Any], api_key: str | None
    ) -> dict[str, Any]: ...

    def stream(
        self, model: ModelSettings, body: dict[str, Any], api_key: str | None
    ) -> AsyncGenerator[Chunk, None]: ...


def load_litellm() -> Any:
    """Import LiteLLM (about 3 s) with its bundled price map: never fetched at run time."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True
    return litellm


def price(model: str, prompt_tokens: int, completion_tokens: int) -> float:
    """Cost in USD from LiteLLM's price map; 0 for a model it does not know."""
    litellm = load_litellm()

    name = model.removeprefix(SIMULATED_PREFIX)
    try:
        prompt_cost, completion_cost = litellm.cost_per_token(
            model=name, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
        )
    except Exception as exc:
        if name not in _UNPRICED:  # once per model: every request of it would say the same
            _UNPRICED.add(name)
            logger.warning("no price for %s (%s): its costs and savings count as 0", name, exc)
        return 0.0
    return float(prompt_cost + completion_cost)


_UNPRICED: set[str] = set()


def _forwarded(model: ModelSettings, body: dict[str, Any]) -> dict[str, Any]:
    """The checked parameters of `body` (see `gateway.params`), filtered once more here, the
    last step before LiteLLM: nothing outside the allow-list ever becomes a keyword."""
    skip = {"model", "messages", "stream", "stream_options"}
    return {
        k: v
        for k, v in body.items()
        if k not in skip and (k in CHAT or k in model.allow_params) and not never_allowed(k)
    }


class LiteLLMUpstream:
    """Any LiteLLM provider, including OpenAI-compatible servers named by `api_base`."""

    def __init__(self) -> None:
        self._litellm = load_litellm()

    def _kwargs(
        self, model: ModelSettings, body: dict[str, Any], api_key: str | None
    ) -> dict[str, Any]:
        key = api_key or (os.environ.get(model.api_key_env) if model.api_key_env else None)
        kwargs: dict[str, Any] = {
            "model": model.litellm_model,
            "messages": body["messages"],
            "timeout": model.timeout_s,
            "num_retries": 0,
            **_forwarded(model, body),
        }
        if model.api_base:
            kwargs["api_base"] = model.api_base
        if key:
            kwargs["api_key"] = key
        return kwargs

    async def complete(
        self, model: ModelSettings, body: dict[str, Any], api_key: str | None
    ) -> dict[str, Any]:
        try:
            response = await self._litellm.acompletion(**self._kwargs(model, body, api_key))
            result: dict[str, Any] = response.model_dump(exclude_none=True)
        except Exception as exc:
            raise translate(exc) from exc
        if not isinstance(result.get("choices"), list) or not result["choices"]:
            raise UpstreamError("the upstream returned no choices")
        return result

    async def stream(
        self, model: ModelSettings, body: dict[str, Any], api_key: str | None
    ) -> AsyncGenerator[Chunk, None]:
        kwargs = self._kwargs(model, body, api_key)
        kwargs["stream_options"] = {"include_usage": True}  # the gateway accounts every stream
        try:
            response = await self._litellm.acompletion(stream=True, **kwargs)
            async for chunk in response:
                yield chunk.model_dump(exclude_none=True)
        except GatewayError:
            raise
        except Exception as exc:
            raise translate(exc) from exc


def translate(exc: BaseException) -> GatewayError:
    """LiteLLM, OpenAI SDK and httpx errors to the gateway's, keeping 429 and 5xx: by type,
    through the exception and its causes (`_kinds`), then by the status it carries."""
    if isinstance(exc, GatewayError):
        return exc
    message = str(getattr(exc, "message", None) or exc) or type(exc).__name__
    timeouts, unreachable, invalid = _kinds()
    chain = _chain(exc)
    if isinstance(exc, timeouts):
        return UpstreamTimeout(f"the upstream timed out: {message}")
    if any(isinstance(seen, unreachable) for seen in chain):
        return UpstreamError(f"the upstream could not be reached: {message}")
    if any(isinstance(seen, invalid) for seen in chain[1:]):  # e.g. JSON that did not parse
        return UpstreamError(f"the upstream sent an invalid response: {message}")
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and (status == 429 or status >= 500):
        return UpstreamError(
            f"upstream error: {message}",
            status=status,
            code="rate_limit_exceeded" if status == 429 else None,
        )
    if isinstance(status, int) and 400 <= status < 500:
        return UpstreamError(f"upstream rejected the request: {message}", status=status)
    return UpstreamError(f"upstream unavailable: {message}")


Kinds = tuple[type[BaseException], ...]


@functools.cache
def _kinds() -> tuple[Kinds, Kinds, Kinds]:
    """The foreign exception types, imported on the first error rather than at start:
    timeouts, an upstream that could not be reached, and an answer that did not parse."""
    import httpx
    import openai

    timeouts: Kinds = (TimeoutError, openai.APITimeoutError, httpx.TimeoutException)
    unreachable: Kinds = (openai.APIConnectionError, httpx.TransportError, ConnectionError)
    return timeouts, unreachable, (ValueError,)


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and what caused it, at most ten deep."""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and len(chain) < 10:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    return chain


@dataclass(frozen=True)
class SimulationProfile:
    """Latency of the simulated model: time to first token plus time per output token, and
    how many requests it serves at once (the rest wait their turn, as on a real server)."""

    first_token_s: float = 0.25
    per_token_s: float = 0.004
    capacity: int | None = None  # None: unbounded


# The built-in pair: a small model, fast and roomy; a large one, slower and with a quarter
# of the capacity (the default route `auto` sends misses between them).
SIMULATED_PROFILES = {
    "gpt-4o-mini": SimulationProfile(first_token_s=0.15, per_token_s=0.003, capacity=64),
    "gpt-4o": SimulationProfile(first_token_s=0.4, per_token_s=0.008, capacity=16),
}


class SimulatedUpstream:
    """A deterministic stand-in for a real model: the same prompt gets the same answer,
    with realistic token counts and latency. Its responses name it: `simulated/<model>`.
    A model of `profiles` (by name, without the prefix) has its own latency and capacity."""

    def __init__(
        self,
        profile: SimulationProfile = SimulationProfile(),
        profiles: dict[str, SimulationProfile] | None = None,
    ) -> None:
        self.profile = profile
        self.profiles = dict(profiles or {})
        self._slots: dict[str, asyncio.Semaphore] = {}

    def _profile(self, model: ModelSettings) -> SimulationProfile:
        return self.profiles.get(model.litellm_model.removeprefix(SIMULATED_PREFIX), self.profile)

    def _slot(self, model: ModelSettings) -> contextlib.AbstractAsyncContextManager[Any]:
        profile = self._profile(model)
        if profile.capacity is None:
            return contextlib.nullcontext()
        name = model.litellm_model
        if name not in self._slots:
            self._slots[name] = asyncio.Semaphore(profile.capacity)
        return self._slots[name]

    def _answer(self, body: dict[str, Any]) -> tuple[str, int]:
        messages = body.get("messages", [])
        prompt = " ".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))
        digest = hashlib.sha256(prompt.encode()).hexdigest()
        words = ["This", "is", "a", "simulated", "answer", "to", "your", "question", "."]
        length = 20 + int(digest[:2], 16) % 60
        topic = " ".join(str(messages[-1].get("content", "")).split()[:12]) if messages else ""
        body_words = (
            f"Simulated answer {digest[:8]} about: {topic}. "
            + " ".join(words[i % len(words)] for i in range(length))
        ).split()
        prompt_tokens = max(1, len(prompt) // 4) + 4 * len(messages)
        return " ".join(body_words), prompt_tokens

    async def complete(
        self, model: ModelSettings, body: dict[str, Any], api_key: str | None
    ) -> dict[str, Any]:
        text, prompt_tokens = self._answer(body)
        completion_tokens = len(text.split())
        profile = self._profile(model)
        async with self._slot(model):
            await asyncio.sleep(profile.first_token_s + profile.per_token_s * completion_tokens)
        return {
            "id": f"chatcmpl-sim-{uuid.uuid4().hex[:20]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model.litellm_model,
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": text},
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    async def stream(
        self, model: ModelSettings, body: dict[str, Any], api_key: str | None
    ) -> AsyncGenerator[Chunk, None]:
        text, prompt_tokens = self._answer(body)
        words = text.split(" ")
        base = {
            "id": f"chatcmpl-sim-{uuid.uuid4().hex[:20]}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model.litellm_model,
        }
        profile = self._profile(model)
        async with self._slot(model):
            await asyncio.sleep(profile.first_token_s)
            yield {
                **base,
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}],
            }
            for i, word in enumerate(words):
                await asyncio.sleep(profile.per_token_s)
                piece = word if i == 0 else " " + word
                yield {**base, "choices": [{"index": 0, "delta": {"content": piece}}]}
        yield {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        yield {
            **base,
            "choices": [],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": len(words),
                "total_tokens": prompt_tokens + len(words),
            },
        }


class Upstreams:
    """Sends each model to its upstream: simulated models to the simulator, others to LiteLLM."""

    def __init__(self, *, simulated: Upstream | None = None, real: Upstream | None = None) -> None:
        self._simulated = simulated or SimulatedUpstream()
        self._real = real

    def for_model(self, model: ModelSettings) -> Upstream:
        if model.litellm_model.startswith(SIMULATED_PREFIX):
            return self._simulated
        if self._real is None:
            self._real = LiteLLMUpstream()
        return self._real
