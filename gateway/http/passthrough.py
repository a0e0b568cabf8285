"""Routes passed through to the upstream without caching: legacy completions, embeddings."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from categories.classifier import Classification
from gateway.errors import GatewayError, InvalidRequest
from gateway.http.body import read_json
from gateway.http.responses import JSONResponse
from gateway.middleware import request_id
from gateway.outcome import Outcome, account
from gateway.params import COMPLETIONS, EMBEDDINGS, Check, check, requested_model
from gateway.routing import routed
from gateway.upstream import SIMULATED_PREFIX, load_litellm, translate

if TYPE_CHECKING:
    from gateway.runtime import Gateway
    from gateway.settings import ModelSettings

RouteHandler = Callable[[Request], Awaitable[Response]]
MAX_INPUTS = 2048  # as the OpenAI API
BYPASS = {"x-cache": "bypass", "x-cache-category": "none"}


@dataclass(frozen=True)
class Call:
    """A passthrough request, checked: the model, the body, its parameters, the upstream key."""

    gw: Gateway
    model: ModelSettings
    body: dict[str, Any]
    params: dict[str, Any]
    key: str | None


Handler = Callable[[Call], Awaitable[dict[str, Any]]]


def passthrough(route: Mapping[str, Check | None]) -> Callable[[Handler], RouteHandler]:
    """A route whose body is checked against `route`'s allow-list and whose answer comes
    from `handler`; each request leaves an event (a bypass, or an error), a metric and a
    log line, as cached requests do."""

    def decorate(handler: Handler) -> RouteHandler:
        async def endpoint(request: Request) -> Response:
            gw: Gateway = request.app.state.gateway
            started = time.perf_counter()
            caller = gw.tenancy.identify(request.headers.get("authorization"), None)
            server = gw.settings.server
            body = await read_json(request, server.max_body_bytes, server.body_timeout_s)
            chosen = routed(gw.routes, body)  # a route's name: its large member answers
            model = chosen.large if chosen is not None else requested_model(gw.models, body)
            params = check(body, route, extra=model.allow_params)
            key = caller.upstream_key
            if key is None and model.api_key_env:
                key = os.environ.get(model.api_key_env)
            outcome = Outcome(caller, model.name, started, request_id=request_id(request))
            outcome.kind, outcome.bypass_reason = "bypass", "passthrough"
            outcome.classification = Classification("none", "default")
            outcome.model, outcome.tier = model.litellm_model, model.tier
            try:
                result = await handler(Call(gw, model, body, params, key))
            except GatewayError:
                outcome.kind = "error"
                gw.recorder.record(outcome)
                raise
            account(outcome, model, result.get("usage"))
            gw.recorder.record(outcome)
            return JSONResponse(result, headers=BYPASS)

        endpoint.__name__ = handler.__name__
        return endpoint

    return decorate


def _litellm_kwargs(model: ModelSettings, key: str | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"model": model.litellm_model, "timeout": model.timeout_s}
    if model.api_base:
        kwargs["api_base"] = model.api_base
    if key:
        kwargs["api_key"] = key
    return kwargs


async def _via_litellm(call: Call, function: str, **inputs: Any) -> dict[str, Any]:
    """One LiteLLM call with the checked parameters only; its errors translated."""
    kwargs = _litellm_kwargs(call.model, call.key)
    try:
        response = await getattr(load_litellm(), function)(**inputs, **kwargs, **call.params)
        result: dict[str, Any] = response.model_dump(exclude_none=True)
    except Exception as exc:
        raise translate(exc) from exc
    return result


def _texts(value: Any, name: str) -> list[str]:
    texts = [value] if isinstance(value, str) else value
    if (
        not isinstance(texts, list)
        or not 0 < len(texts) <= MAX_INPUTS
        or not all(isinstance(t, str) for t in texts)
    ):
        raise InvalidRequest(
            f"{name} must be a string or an array of 1 to {MAX_INPUTS} strings "
            "(token arrays are not supported)",
            param=name,
        )
    return texts


@passthrough(EMBEDDINGS)
async def embeddings(call: Call) -> dict[str, Any]:
    gw, model = call.gw, call.model
    texts = _texts(call.body.get("input"), "input")
    if model.litellm_model.startswith(SIMULATED_PREFIX):
        vectors = await asyncio.get_running_loop().run_in_executor(None, gw.embedder.embed, texts)
        tokens = sum(len(t) // 4 + 1 for t in texts)
        result: dict[str, Any] = {
            "object": "list",
            "model": model.litellm_model,
            "data": [
                {"object": "embedding", "index": i, "embedding": v.tolist()}
                for i, v in enumerate(vectors)
            ],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    else:
        result = await _via_litellm(call, "aembedding", input=texts)
    return result


@passthrough(COMPLETIONS)
async def completions(call: Call) -> dict[str, Any]:
    model, body = call.model, call.body
    prompt = body.get("prompt")
    prompts = _texts(prompt, "prompt")
    if body.get("stream"):
        raise InvalidRequest("streaming is supported on /v1/chat/completions only", param="stream")
    if model.litellm_model.startswith(SIMULATED_PREFIX):
        text = " ".join(prompts)
        chat = await call.gw.upstreams.for_model(model).complete(
            model, {"messages": [{"role": "user", "content": text}]}, call.key
        )
        result: dict[str, Any] = {
            "id": f"cmpl-{uuid.uuid4().hex[:24]}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": model.litellm_model,
            "choices": [
                {
                    "index": 0,
                    "text": chat["choices"][0]["message"]["content"],
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": chat["usage"],
        }
    else:
        result = await _via_litellm(call, "atext_completion", prompt=prompt)
    return result
