"""Misses: the upstream call (JSON or a relayed stream), storing complete answers, and
coalescing identical requests in flight."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import numpy as np
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from categories.load import LoadMonitor
from categories.policy import Policy
from embeddings.protocol import Vectors
from gateway.cache.keys import RequestKey
from gateway.errors import GatewayError, UpstreamError
from gateway.http.responses import JSONResponse
from gateway.http.sse import StreamCollector, event
from gateway.outcome import Outcome, account
from gateway.runtime import Gateway
from gateway.settings import ModelSettings
from gateway.store.queries import NewEntry, Partition

logger = logging.getLogger(__name__)


@dataclass
class Storer:
    gw: Gateway
    partition: Partition
    key: RequestKey
    body: dict[str, Any]
    # None when the lookup failed open: the answer is then embedded after it is sent, off
    # the request path, and stored (so that the cache keeps learning under load)
    vector: Vectors | None
    model_id: str  # of the model that made `vector`
    ttl: float
    policy: Policy
    tier: str  # of the model answering: only large answers become in-context examples
    # Late: the category came from no rule or header; the vector's nearest prototype decides
    # it, and its TTL unless the client set one.
    reclassify: bool = False
    client_ttl: bool = False
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

    async def save(self, completion: dict[str, Any], outcome: Outcome) -> None:
        """Commit a complete answer as an entry. A failure is logged, not raised: the client
        still gets the answer it paid for, only the cache does not learn it."""
        if not storable(completion, self.gw.settings.cache.store_finish_reasons):
            logger.info("not stored: the answer is incomplete or empty")
            return
        if self.vector is None:
            self.gw.spawn(self._save_later(completion, outcome))
            return
        try:
            await self._save(completion, outcome)
        except Exception:
            logger.exception("could not store the answer of a miss; it was served")
            outcome.entry_id = None

    async def _save_later(self, completion: dict[str, Any], outcome: Outcome) -> None:
        """Embed the prompt (waiting for room in the batcher's queue), then store."""
        try:
            batcher = self.gw.batcher
            self.vector, self.model_id = await batcher.embed_later(self.key.text), batcher.model_id
            if self.reclassify:
                classifier = self.gw.classifier
                category = classifier.nearest(self.vector).category
                policy = classifier.policies[category]
                if policy.refusal(self.key.temperature) is not None:
                    return
                self.policy = policy
                self.partition = Partition(
                    self.partition.tenant, self.partition.namespace, category
                )
                if not self.client_ttl:
                    self.ttl = policy.ttl_seconds
            await self._save(completion, outcome)
            self.gw.metrics.stored_later.inc()
        except Exception:
            logger.exception("could not store the answer of a miss whose lookup failed open")

    async def _save(self, completion: dict[str, Any], outcome: Outcome) -> None:
        assert self.vector is not None
        now = time.time()
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
                embedding_model=self.model_id,
                created_at=now,
                expires_at=now + self.ttl,
                prompt_tokens=outcome.prompt_tokens,
                completion_tokens=outcome.completion_tokens,
                cost_usd=outcome.cost_usd,
                upstream_model=outcome.model,
                answered_tier=self.tier,
            )
        )
        evicted = await self.gw.cache.enforce_quota(
            self.partition.tenant,
            self.partition.category,
            self.policy.quota,
            self.policy.eviction,
            keep=outcome.entry_id,
        )
        if evicted:
            logger.info(
                "quota of %s reached: evicted %d entries (%s)",
                self.partition.category,
                evicted,
                self.policy.eviction,
            )


def storable(completion: dict[str, Any], finish_reasons: tuple[str, ...]) -> bool:
    """A complete answer with something in it: content or tool calls."""
    choices = completion.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return False
    message = choices[0].get("message")
    if choices[0].get("finish_reason") not in finish_reasons or not isinstance(message, dict):
        return False
    content = message.get("content")
    return bool(isinstance(content, str) and content.strip()) or bool(message.get("tool_calls"))


async def json_miss(
    gw: Gateway,
    model: ModelSettings,
    body: dict[str, Any],
    key: RequestKey,
    outcome: Outcome,
    store: Storer | None,
) -> Response:
    completion: dict[str, Any] | None = None
    try:
        with _upstream_call(gw.load, model, outcome):
            completion = await gw.upstreams.for_model(model).complete(
                model, body, outcome.caller.upstream_key
            )
        outcome.response_id = completion.get("id")
        account(outcome, model, completion.get("usage"))
        if store is not None:
            await store.save(completion, outcome)
    finally:
        if store is not None:
            store.finish(completion)
    gw.recorder.record(outcome)
    return JSONResponse(completion, headers=outcome.headers())


@contextlib.contextmanager
def _upstream_call(load: LoadMonitor, model: ModelSettings, outcome: Outcome) -> Iterator[None]:
    """Time one upstream call for the outcome and the load monitor."""
    load.started(model.name)
    began = time.perf_counter()
    status = None
    try:
        yield
    except BaseException as exc:
        status = _status(exc)
        raise
    finally:
        elapsed = time.perf_counter() - began
        outcome.upstream_ms = elapsed * 1000
        load.finished(model.name, elapsed, status=status)


def _status(exc: BaseException) -> int:
    """The status a failed upstream call counts as for load: 499 when the client left."""
    return exc.status if isinstance(exc, GatewayError) else 499


async def stream_miss(
    gw: Gateway,
    model: ModelSettings,
    body: dict[str, Any],
    key: RequestKey,
    outcome: Outcome,
    store: Storer | None,
) -> Response:
    """Relay a stream. Chunks are held until the first one with content, so that an upstream
    error or an empty answer (an HTML page parsed as a stream ends that way) is a proper 502.
    A stored answer is committed before `[DONE]` is sent. Whatever ends the request (the
    end, an error, the client leaving, even before the first byte), `_Relay.close` runs once
    and releases the load count, the upstream stream and the coalescing leadership."""
    upstream = gw.upstreams.for_model(model).stream(model, body, outcome.caller.upstream_key)
    relay = _Relay(gw, model, key, outcome, store, upstream)
    try:
        await relay.start()
    except BaseException as exc:
        # a GatewayError becomes the route's error response, which records the request
        await relay.close(status=_status(exc), record=not isinstance(exc, GatewayError))
        raise
    return _RelayResponse(relay, headers=outcome.headers())


class _Relay:
    def __init__(
        self,
        gw: Gateway,
        model: ModelSettings,
        key: RequestKey,
        outcome: Outcome,
        store: Storer | None,
        upstream: AsyncGenerator[dict[str, Any], None],
    ) -> None:
        self.gw, self.model, self.key, self.outcome = gw, model, key, outcome
        self.store, self.upstream = store, upstream
        self.collector = StreamCollector()
        self.pending: list[dict[str, Any]] = []
        self.began = time.perf_counter()
        self.first_token: float | None = None
        self.completion: dict[str, Any] | None = None
        self.closed = False
        self.recorded = False
        gw.load.started(model.name)

    async def start(self) -> None:
        async for chunk in self.upstream:
            self._add(chunk)
            if self.collector.substantive:
                break
        else:
            raise UpstreamError("the upstream's stream ended without an answer")
        self.first_token = time.perf_counter() - self.began

    def _add(self, chunk: dict[str, Any]) -> None:
        self.collector.add(chunk)
        if chunk.get("choices") or self.key.include_usage:
            self.pending.append(chunk)

    async def events(self) -> AsyncIterator[bytes]:
        status: int | None = None
        try:
            for chunk in self.pending:
                yield event(chunk)
            self.pending.clear()
            async for chunk in self.upstream:
                self._add(chunk)
                for held in self.pending:
                    yield event(held)
                self.pending.clear()
            completion = self.collector.completion()
            account(self.outcome, self.model, self.collector.usage)
            self.completion = completion
            if self.store is not None:
                await self.store.save(completion, self.outcome)  # durable before [DONE]
            self._record()
            yield event("[DONE]")
        except GatewayError as exc:
            self.outcome.kind = "error"
            status = exc.status
            yield event(exc.body())
        finally:
            await self.close(status=status)

    async def close(self, *, status: int | None, record: bool = True) -> None:
        """Release everything the request holds; runs once, shielded from cancellation."""
        if self.closed:
            return
        self.closed = True
        with anyio.CancelScope(shield=True):
            elapsed = time.perf_counter() - self.began
            self.gw.load.finished(self.model.name, self.first_token or elapsed, status=status)
            try:
                await self.upstream.aclose()
            finally:
                if self.completion is None:
                    account(self.outcome, self.model, self.collector.usage)
                if self.store is not None:
                    self.store.finish(self.completion)
                if record:
                    self._record()

    def _record(self) -> None:
        if not self.recorded:
            self.recorded = True
            self.outcome.upstream_ms = (time.perf_counter() - self.began) * 1000
            self.outcome.response_id = self.collector.id or None
            self.gw.recorder.record(self.outcome)


class _RelayResponse(StreamingResponse):
    """A stream whose relay is closed however the response ends."""

    def __init__(self, relay: _Relay, *, headers: dict[str, str]) -> None:
        super().__init__(relay.events(), media_type="text/event-stream", headers=headers)
        self._relay = relay

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._relay.close(status=None)  # no-op unless the client left early
