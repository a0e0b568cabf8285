"""The OpenAI routes: chat completions through the cache, the rest passed through."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from embeddings.batcher import MicroBatcher
from embeddings.protocol import Vectors
from gateway.cache import Hit, SemanticCache
from gateway.errors import BodyTooLarge, GatewayError, InvalidRequest, ModelNotFound
from gateway.events import EventWriter, HitUpdate
from gateway.keys import RequestKey, parse_chat
from gateway.settings import ModelSettings, Settings
from gateway.sse import StreamCollector, event, hit_body, hit_stream
from gateway.store.queries import NewEntry, NewEvent, Partition
from gateway.tenants import Caller, Tenancy
from gateway.upstream import Router, price

logger = logging.getLogger(__name__)
DEFAULT_CATEGORY = "default"


@dataclass
class Gateway:
    """Everything the routes need, built in the app's lifespan."""

    settings: Settings
    cache: SemanticCache
    batcher: MicroBatcher
    router: Router
    tenancy: Tenancy
    models: dict[str, ModelSettings]
    events: EventWriter
    inflight: dict[tuple[str, str, str], asyncio.Future[dict[str, Any] | None]] = field(
        default_factory=dict
    )


@dataclass
class Outcome:
    """What happened to one request: becomes its event row and its headers."""

    caller: Caller
    key: RequestKey
    started: float
    kind: str = "miss"
    similarity: float | None = None
    entry_id: int | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    model: str = ""

    def headers(self) -> dict[str, str]:
        headers = {
            "x-cache": "hit" if self.kind.startswith("hit") else self.kind,
            "x-cache-category": DEFAULT_CATEGORY,
        }
        if self.kind.startswith("hit"):
            headers["x-cache-similarity"] = f"{self.similarity:.4f}"
            headers["x-cache-entry"] = str(self.entry_id)
            headers["x-cache-tier"] = self.kind.removeprefix("hit_")
        if self.model:
            headers["x-gateway-route"] = self.model
        return headers


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
        _Storer(gw, partition, key, body, vector, ttl) if storable and vector is not None else None
    )
    if store is not None:
        shared = await store.follow(model.timeout_s)
        if shared is not None:
            return _serve_shared(gw, shared, key, model, outcome)
    try:
        if key.stream:
            return await _stream_miss(gw, model, body, key, outcome, store)
        return await _json_miss(gw, model, body, key, outcome, store)
    except GatewayError as exc:
        outcome.kind = "error"
        response = exc.response()
        response.background = BackgroundTask(_record, gw, outcome)
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
    outcome.model = ""
    body = hit_body(
        hit.response,
        model=key.model,
        prompt_tokens=hit.prompt_tokens,
        completion_tokens=hit.completion_tokens,
    )
    sliding = gw.settings.cache.sliding_ttl
    expires = now + gw.settings.cache.ttl_seconds if sliding else None
    gw.events.put(HitUpdate(hit.entry_id, now, expires))
    background = BackgroundTask(_record, gw, outcome)
    if key.stream:
        return StreamingResponse(
            hit_stream(body, include_usage=key.include_usage),
            media_type="text/event-stream",
            headers=outcome.headers(),
            background=background,
        )
    return JSONResponse(body, headers=outcome.headers(), background=background)


def _serve_shared(
    gw: Gateway, shared: dict[str, Any], key: RequestKey, model: ModelSettings, outcome: Outcome
) -> Response:
    """The answer of an identical request that was in flight, served like a hit."""
    outcome.kind = "hit_coalesced"
    outcome.similarity = 1.0
    _account(outcome, model, shared.get("usage"))
    outcome.model = ""
    body = hit_body(
        shared,
        model=key.model,
        prompt_tokens=outcome.prompt_tokens,
        completion_tokens=outcome.completion_tokens,
    )
    headers = {k: v for k, v in outcome.headers().items() if k != "x-cache-entry"}
    background = BackgroundTask(_record, gw, outcome)
    if key.stream:
        return StreamingResponse(
            hit_stream(body, include_usage=key.include_usage),
            media_type="text/event-stream",
            headers=headers,
            background=background,
        )
    return JSONResponse(body, headers=headers, background=background)


@dataclass
class _Storer:
    gw: Gateway
    partition: Partition
    key: RequestKey
    body: dict[str, Any]
    vector: Vectors
    ttl: float | None
    _lead: asyncio.Future[dict[str, Any] | None] | None = None

    @property
    def _coalesce_key(self) -> tuple[str, str, str]:
        return (self.partition.tenant, self.partition.namespace, self.key.exact_hash)

    async def follow(self, patience: float) -> dict[str, Any] | None:
        """Wait (at most `patience` seconds) for an identical request already in flight and share
        its answer; else become the one others wait for."""
        leader = self.gw.inflight.get(self._coalesce_key)
        if leader is not None:
            try:
                shared = await asyncio.wait_for(asyncio.shield(leader), patience)
            except TimeoutError:  # a leader that never finished must not hold others
                shared = None
            if shared is not None:
                return shared
        self._lead = asyncio.get_running_loop().create_future()
        self.gw.inflight[self._coalesce_key] = self._lead
        return None

    def finish(self, completion: dict[str, Any] | None) -> None:
        """Release the requests waiting on this one (None: they go upstream themselves)."""
        if self._lead is not None and not self._lead.done():
            if self.gw.inflight.get(self._coalesce_key) is self._lead:
                del self.gw.inflight[self._coalesce_key]
            self._lead.set_result(completion)

    async def __call__(self, completion: dict[str, Any], outcome: Outcome) -> None:
        choices = completion.get("choices") or []
        finish = choices[0].get("finish_reason") if choices else None
        if finish not in self.gw.settings.cache.store_finish_reasons:
            return
        now = time.time()
        ttl = self.ttl or self.gw.settings.cache.ttl_seconds
        stored = {k: v for k, v in completion.items() if k not in ("id", "created", "usage")}
        outcome.entry_id = await self.gw.cache.put(
            NewEntry(
                partition=self.partition,
                model_family=self.key.model,
                text=self.key.text,
                context_hash=self.key.context_hash,
                request_hash=self.key.exact_hash,
                request_json=json.dumps(self.body, ensure_ascii=False),
                response_json=json.dumps(stored, ensure_ascii=False),
                embedding=np.asarray(self.vector, dtype=np.float32),
                embedding_model=self.gw.cache.embedder.model_id,
                created_at=now,
                expires_at=now + ttl,
                prompt_tokens=outcome.prompt_tokens,
                completion_tokens=outcome.completion_tokens,
                cost_usd=outcome.cost_usd,
                upstream_model=outcome.model,
            )
        )


def _account(outcome: Outcome, model: ModelSettings, usage: dict[str, Any] | None) -> None:
    usage = usage or {}
    outcome.prompt_tokens = int(usage.get("prompt_tokens") or 0)
    outcome.completion_tokens = int(usage.get("completion_tokens") or 0)
    outcome.cost_usd = price(model.litellm_model, outcome.prompt_tokens, outcome.completion_tokens)


async def _json_miss(
    gw: Gateway,
    model: ModelSettings,
    body: dict[str, Any],
    key: RequestKey,
    outcome: Outcome,
    store: _Storer | None,
) -> Response:
    completion: dict[str, Any] | None = None
    try:
        completion = await gw.router.for_model(model).complete(
            model, body, _upstream_key(gw, outcome)
        )
        _account(outcome, model, completion.get("usage"))
        if store is not None:
            await store(completion, outcome)
    finally:
        if store is not None:
            store.finish(completion)
    return JSONResponse(
        completion, headers=outcome.headers(), background=BackgroundTask(_record, gw, outcome)
    )


def _upstream_key(gw: Gateway, outcome: Outcome) -> str | None:
    return outcome.caller.key if gw.settings.tenants.pass_through_key else None


async def _stream_miss(
    gw: Gateway,
    model: ModelSettings,
    body: dict[str, Any],
    key: RequestKey,
    outcome: Outcome,
    store: _Storer | None,
) -> Response:
    upstream = gw.router.for_model(model).stream(model, body, _upstream_key(gw, outcome))
    # Pull the first chunk before answering, so upstream errors get a proper status code.
    try:
        first = await anext(upstream)
    except StopAsyncIteration:
        first = None
    except BaseException:
        if store is not None:
            store.finish(None)
        raise

    async def relay() -> AsyncIterator[bytes]:
        collector = StreamCollector()
        complete = False
        try:
            pending = [first] if first is not None else []
            for chunk in pending:
                collector.add(chunk)
                if chunk.get("choices") or key.include_usage:
                    yield event(chunk)
            async for chunk in upstream:
                collector.add(chunk)
                if chunk.get("choices") or key.include_usage:
                    yield event(chunk)
            complete = True
            yield event("[DONE]")
        except GatewayError as exc:
            outcome.kind = "error"
            yield event(exc.body())
        finally:
            await upstream.aclose()
            _account(outcome, model, collector.usage)
            if store is not None:
                completion = collector.completion() if complete else None
                try:
                    if completion is not None:
                        await store(completion, outcome)
                finally:
                    store.finish(completion)
            await _record(gw, outcome)

    return StreamingResponse(relay(), media_type="text/event-stream", headers=outcome.headers())


async def _record(gw: Gateway, outcome: Outcome) -> None:
    gw.events.put(
        NewEvent(
            ts=time.time(),
            tenant=outcome.caller.tenant,
            category=DEFAULT_CATEGORY,
            outcome=outcome.kind,
            latency_ms=(time.perf_counter() - outcome.started) * 1000,
            similarity=outcome.similarity,
            prompt_tokens=outcome.prompt_tokens,
            completion_tokens=outcome.completion_tokens,
            cost_usd=outcome.cost_usd,
            model=outcome.model,
            entry_id=outcome.entry_id,
        )
    )
