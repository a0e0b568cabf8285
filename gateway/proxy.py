"""The chat-completions route: validation, the cache tiers, and serving hits."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from embeddings.protocol import Vectors
from gateway.cache import Hit
from gateway.errors import BodyTooLarge, GatewayError, InvalidRequest, ModelNotFound
from gateway.events import HitUpdate
from gateway.keys import RequestKey, parse_chat
from gateway.misses import Storer, json_miss, stream_miss
from gateway.settings import ModelSettings
from gateway.sse import hit_body, hit_stream
from gateway.state import DEFAULT_CATEGORY, Gateway, Outcome, account, record
from gateway.store.queries import Partition

logger = logging.getLogger(__name__)


async def read_json(request: Request, limit: int) -> Any:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"the request body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"the request body is larger than {limit} bytes")
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}") from None


def _cache_control(request: Request) -> tuple[bool, bool, float | None]:
    directives = {d.strip().lower() for d in request.headers.get("cache-control", "").split(",")}
    ttl_header = request.headers.get("x-cache-ttl")
    ttl = None
    if ttl_header is not None:
        try:
            ttl = float(ttl_header)
        except ValueError:
            raise InvalidRequest("x-cache-ttl must be a number of seconds") from None
        if ttl <= 0:
            raise InvalidRequest("x-cache-ttl must be positive")
    return "no-cache" in directives, "no-store" in directives, ttl


async def chat_completions(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    started = time.perf_counter()
    try:
        caller = gw.tenancy.identify(
            request.headers.get("authorization"), request.headers.get("x-cache-namespace")
        )
        body = await read_json(request, gw.settings.server.max_body_bytes)
        key = parse_chat(
            body,
            max_temperature=gw.settings.cache.max_temperature,
            cache_tools=gw.settings.cache.cache_tools,
        )
        model = gw.models.get(key.model)
        if model is None:
            raise ModelNotFound(f"the model {key.model!r} does not exist", param="model")
        no_cache, no_store, ttl = _cache_control(request)
    except GatewayError as exc:
        return exc.response()
    outcome = Outcome(caller, key, started, model=model.litellm_model)
    partition = Partition(caller.tenant, caller.namespace, DEFAULT_CATEGORY)
    now = time.time()
    vector: Vectors | None = None
    hit: Hit | None = None
    failed = False
    if key.bypass is None:
        if not no_cache:
            hit = await gw.cache.lookup_exact(partition, key, now)
        if hit is None:
            vector, hit, failed = await _semantic(gw, partition, key, now, lookup=not no_cache)
    if hit is not None:
        return _serve_hit(gw, hit, key, outcome, now)
    if key.bypass is not None or no_cache or failed:
        outcome.kind = "bypass"
    storable = vector is not None and not no_store and key.bypass is None
    store = (
        Storer(gw, partition, key, body, vector, ttl) if storable and vector is not None else None
    )
    if store is not None:
        shared = await store.follow(model.timeout_s)
        if shared is not None:
            return _serve_shared(gw, shared, key, model, outcome)
    try:
        if key.stream:
            return await stream_miss(gw, model, body, key, outcome, store)
        return await json_miss(gw, model, body, key, outcome, store)
    except GatewayError as exc:
        outcome.kind = "error"
        response = exc.response()
        response.background = BackgroundTask(record, gw, outcome)
        return response


async def _semantic(
    gw: Gateway, partition: Partition, key: RequestKey, now: float, *, lookup: bool
) -> tuple[Vectors | None, Hit | None, bool]:
    """Embed once, search; fail open (no hit, no store) on error or past the deadline."""
    deadline = gw.settings.cache.lookup_deadline_ms / 1000
    settings = gw.settings.cache
    try:
        async with asyncio.timeout(deadline):
            vector = await gw.batcher.embed(key.text)
            if not lookup:
                return vector, None, False
            hit, rejected = await gw.cache.lookup_semantic(
                partition,
                key,
                vector,
                threshold=settings.threshold,
                top_k=settings.top_k,
                guard=settings.guard,
                now=now,
            )
    except Exception as exc:
        logger.warning("semantic lookup failed open: %s", exc or type(exc).__name__)
        return None, None, True
    for rejection in rejected:
        logger.info(
            "guard rejected entry %d at %.3f: %s",
            rejection.entry_id,
            rejection.similarity,
            rejection.reason,
        )
    return vector, hit, False


def _serve_hit(gw: Gateway, hit: Hit, key: RequestKey, outcome: Outcome, now: float) -> Response:
    outcome.kind = f"hit_{hit.tier}"
    outcome.similarity = hit.similarity
    outcome.entry_id = hit.entry_id
    outcome.prompt_tokens = hit.prompt_tokens
    outcome.completion_tokens = hit.completion_tokens
    outcome.cost_usd = hit.cost_usd  # what the hit saved
    sliding = gw.settings.cache.sliding_ttl
    gw.events.put(
        HitUpdate(hit.entry_id, now, now + gw.settings.cache.ttl_seconds if sliding else None)
    )
    return _reply_from_cache(gw, hit.response, key, outcome)


def _serve_shared(
    gw: Gateway, shared: dict[str, Any], key: RequestKey, model: ModelSettings, outcome: Outcome
) -> Response:
    """The answer of an identical request that was in flight, served like a hit."""
    outcome.kind = "hit_coalesced"
    outcome.similarity = 1.0
    account(outcome, model, shared.get("usage"))
    return _reply_from_cache(gw, shared, key, outcome)


def _reply_from_cache(
    gw: Gateway, stored: dict[str, Any], key: RequestKey, outcome: Outcome
) -> Response:
    outcome.model = ""  # no upstream answered
    body = hit_body(
        stored,
        model=key.model,
        prompt_tokens=outcome.prompt_tokens,
        completion_tokens=outcome.completion_tokens,
    )
    background = BackgroundTask(record, gw, outcome)
    if key.stream:
        return StreamingResponse(
            hit_stream(body, include_usage=key.include_usage),
            media_type="text/event-stream",
            headers=outcome.headers(),
            background=background,
        )
    return JSONResponse(body, headers=outcome.headers(), background=background)
