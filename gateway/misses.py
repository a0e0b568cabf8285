"""Misses: the upstream call (JSON or a relayed stream), storing complete answers, and
coalescing identical requests in flight."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from starlette.background import BackgroundTask
from starlette.responses import JSONResponse, Response, StreamingResponse

from categories.policy import Policy
from embeddings.protocol import Vectors
from gateway.errors import GatewayError
from gateway.keys import RequestKey
from gateway.settings import ModelSettings
from gateway.sse import StreamCollector, event
from gateway.state import Gateway, Outcome, account, record
from gateway.store.queries import NewEntry, Partition

logger = logging.getLogger(__name__)


@dataclass
class Storer:
    gw: Gateway
    partition: Partition
    key: RequestKey
    body: dict[str, Any]
    vector: Vectors
    ttl: float
    policy: Policy
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
                expires_at=now + self.ttl,
                prompt_tokens=outcome.prompt_tokens,
                completion_tokens=outcome.completion_tokens,
                cost_usd=outcome.cost_usd,
                upstream_model=outcome.model,
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
        with _upstream_call(gw, model, outcome):
            completion = await gw.router.for_model(model).complete(
                model, body, upstream_key(gw, outcome)
            )
        outcome.response_id = completion.get("id")
        account(outcome, model, completion.get("usage"))
        if store is not None:
            await store(completion, outcome)
    finally:
        if store is not None:
            store.finish(completion)
    return JSONResponse(
        completion, headers=outcome.headers(), background=BackgroundTask(record, gw, outcome)
    )


@contextlib.contextmanager
def _upstream_call(gw: Gateway, model: ModelSettings, outcome: Outcome) -> Iterator[None]:
    """Time one upstream call for the outcome and the load monitor."""
    gw.load.started(model.name)
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
        gw.load.finished(model.name, elapsed, status=status)


def _status(exc: BaseException) -> int:
    """The status a failed upstream call counts as for load: 499 when the client left."""
    return exc.status if isinstance(exc, GatewayError) else 499


def upstream_key(gw: Gateway, outcome: Outcome) -> str | None:
    return outcome.caller.key if gw.settings.tenants.pass_through_key else None


async def stream_miss(
    gw: Gateway,
    model: ModelSettings,
    body: dict[str, Any],
    key: RequestKey,
    outcome: Outcome,
    store: Storer | None,
) -> Response:
    upstream = gw.router.for_model(model).stream(model, body, upstream_key(gw, outcome))
    gw.load.started(model.name)
    began = time.perf_counter()
    # Pull the first chunk before answering, so upstream errors get a proper status code.
    try:
        first = await anext(upstream)
    except StopAsyncIteration:
        first = None
    except BaseException as exc:
        gw.load.finished(model.name, time.perf_counter() - began, status=_status(exc))
        if store is not None:
            store.finish(None)
        raise
    first_token = time.perf_counter() - began  # streams load the model until the first token

    async def relay() -> AsyncIterator[bytes]:
        collector = StreamCollector()
        complete = False
        status: int | None = None
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
            status = exc.status
            yield event(exc.body())
        finally:
            outcome.upstream_ms = (time.perf_counter() - began) * 1000
            outcome.response_id = collector.id or None
            gw.load.finished(model.name, first_token, status=status)
            await upstream.aclose()
            account(outcome, model, collector.usage)
            if store is not None:
                completion = collector.completion() if complete else None
                try:
                    if completion is not None:
                        await store(completion, outcome)
                finally:
                    store.finish(completion)
            await record(gw, outcome)

    return StreamingResponse(relay(), media_type="text/event-stream", headers=outcome.headers())
