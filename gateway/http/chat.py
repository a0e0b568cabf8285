"""The chat-completions route: validation, the cache tiers, and serving hits."""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from categories.classifier import Classification, Classifier
from categories.load import Effective, LoadMonitor, acceptance, adapt
from categories.policy import DEFAULT, Policy, PolicySet
from embeddings.errors import QueueFullError
from embeddings.protocol import Vectors
from gateway.auth import Caller
from gateway.cache.examples import Example, ExampleLimits, choose, with_examples
from gateway.cache.keys import RequestKey, parse_chat
from gateway.cache.semantic import Hit, SemanticCache
from gateway.errors import GatewayError, InvalidRequest
from gateway.http.body import read_json
from gateway.http.misses import Storer, json_miss, stream_miss
from gateway.http.responses import JSONResponse
from gateway.http.sse import hit_body, hit_stream
from gateway.middleware import request_id
from gateway.outcome import Outcome, Recorder, account
from gateway.params import requested_model
from gateway.routing import ROUTE_HEADER, Route, decide, routed, wanted
from gateway.runtime import Gateway
from gateway.settings import ModelSettings
from gateway.store import StoreError
from gateway.store.events import HitUpdate
from gateway.store.queries import Partition

logger = logging.getLogger(__name__)

MAX_TTL_S = 10 * 366 * 86_400
# Lookups that failed open for load: the answer is still embedded (later) and stored.
STORED_LATER = ("lookup_timeout", "lookup_queue_full")


def _cache_control(request: Request) -> tuple[bool, bool, float | None]:
    directives = {d.strip().lower() for d in request.headers.get("cache-control", "").split(",")}
    ttl_header = request.headers.get("x-cache-ttl")
    ttl = None
    if ttl_header is not None:
        try:
            ttl = float(ttl_header)
        except ValueError:
            ttl = math.nan
        if not 0 < ttl <= MAX_TTL_S:  # also false for NaN
            raise InvalidRequest(
                f"x-cache-ttl must be a number of seconds from 0 to {MAX_TTL_S}",
                param="x-cache-ttl",
            )
    return "no-cache" in directives, "no-store" in directives, ttl


@dataclass
class Lookup:
    """The cache's side of one request: its category and policy, and what the tiers found."""

    classification: Classification
    policy: Policy
    effective: Effective | None = None
    vector: Vectors | None = None
    model_id: str = ""  # of the model that made `vector`
    hit: Hit | None = None
    bypass: str | None = None  # why the request is neither looked up nor stored
    nearest: float | None = None  # the best similarity the semantic tier saw
    near: list[Example] = field(default_factory=list)  # in-context example candidates


async def chat_completions(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    started = time.perf_counter()
    caller = gw.tenancy.identify(
        request.headers.get("authorization"), request.headers.get("x-cache-namespace")
    )
    no_cache, no_store, ttl = _cache_control(request)
    choice = wanted(request.headers.get(ROUTE_HEADER), allowed=caller.route_header)
    server = gw.settings.server
    body = await read_json(request, server.max_body_bytes, server.body_timeout_s)
    route = routed(gw.routes, body)
    model = route.large if route is not None else requested_model(gw.models, body)
    key = parse_chat(
        body,
        cache_tools=gw.settings.cache.cache_tools,
        extra_params=route.allow_params if route is not None else model.allow_params,
    )
    body = {"model": key.model, "messages": body["messages"], **key.params}  # all that goes on
    outcome = Outcome(
        caller,
        key.model,
        started,
        request_id=request_id(request),
        model=model.litellm_model,
        tier=model.tier,
    )
    now = time.time()
    classifier = gw.classifier  # one snapshot of the policies for the whole request
    found = await _lookup(
        gw,
        classifier,
        request,
        key,
        caller,
        model,
        now,
        lookup=not no_cache,
        examples=route is not None and choice != "large",
    )
    outcome.classification = found.classification
    outcome.threshold = found.effective.threshold if found.effective else None
    outcome.nearest = found.nearest
    if found.hit is not None:
        return _serve_hit(gw, classifier.policies, found.hit, key, outcome, now)
    if found.bypass is not None or no_cache:
        outcome.kind = "bypass"
        outcome.bypass_reason = found.bypass or "no_cache"
    upstream_body = body
    if route is not None:
        model, upstream_body = _route(
            gw.load, classifier.policies, route, choice, found, key, body, outcome
        )
    store = None
    late = found.bypass in STORED_LATER  # failed open under load: embedded after the answer
    if (found.vector is not None or late) and not no_store:
        partition = Partition(caller.tenant, caller.namespace, found.policy.name)
        effective = found.effective or adapt(found.policy, gw.load.load(model.name))
        store = Storer(
            gw,
            partition,
            key,
            body,
            found.vector,
            found.model_id,
            ttl or effective.ttl_seconds,
            found.policy,
            model.tier,
            reclassify=late and found.classification.step == "default",
            client_ttl=ttl is not None,
        )
        shared = await store.follow(model.timeout_s)
        if shared is not None:
            return _serve_shared(gw.recorder, shared, key, model, outcome)
    try:
        if key.stream:
            return await stream_miss(gw, model, upstream_body, key, outcome, store)
        return await json_miss(gw, model, upstream_body, key, outcome, store)
    except GatewayError:
        outcome.kind = "error"
        gw.recorder.record(outcome)
        raise


async def _lookup(
    gw: Gateway,
    classifier: Classifier,
    request: Request,
    key: RequestKey,
    caller: Caller,
    model: ModelSettings,
    now: float,
    *,
    lookup: bool,
    examples: bool,
) -> Lookup:
    """Classify, then the exact tier, then embed and the semantic tier. Fails open: an error
    or the deadline leaves the request a bypass (no hit, no store)."""
    policies = classifier.policies
    decided = classifier.cheap(key.text, request.headers.get("x-cache-category"))
    cheap = decided or Classification(DEFAULT, "default")
    if key.bypass is not None:
        return Lookup(cheap, policies[cheap.category], bypass=key.bypass)
    if decided is not None and (refused := policies[decided.category].refusal(key.temperature)):
        return Lookup(decided, policies[decided.category], bypass=refused)
    exact: asyncio.Future[Hit | None] | None = None  # the store, asked while embedding
    if lookup:
        cache, tenant, namespace = gw.cache, caller.tenant, caller.namespace
        try:
            hit = cache.held_exact(tenant, namespace, key, now)
            if hit is None and cache.knows_exact(tenant, namespace, key):
                hit = await cache.lookup_exact(tenant, namespace, key, now)
            elif hit is None:
                exact = asyncio.ensure_future(cache.lookup_exact(tenant, namespace, key, now))
            served = _exact(policies, hit, key, cheap, decided)
            if served is not None and await _pooled(cache, caller, key, now, served):
                return served
        except StoreError as exc:
            logger.warning("exact lookup failed open: %s", exc)
            return Lookup(cheap, policies[cheap.category], bypass="store_error")
    batcher = gw.batcher  # one model for the vector and the indexes it meets
    try:
        embedding: asyncio.Future[Vectors] | None = batcher.submit(key.text)
    except QueueFullError:  # load: fail open at once (after the exact tier), stored later
        embedding = None
    try:
        if exact is not None:
            served = _exact(policies, await exact, key, cheap, decided)
            if served is not None and await _pooled(gw.cache, caller, key, now, served):
                return served
        if embedding is None:
            return Lookup(cheap, policies[cheap.category], bypass="lookup_queue_full")
        async with asyncio.timeout(gw.settings.cache.lookup_deadline_ms / 1000):
            vector = await embedding
            classification = decided or classifier.nearest(vector)
            policy = policies[classification.category]
            if refused := policy.refusal(key.temperature):
                return Lookup(classification, policy, bypass=refused)
            effective = adapt(policy, gw.load.load(model.name))
            found = Lookup(classification, policy, effective, vector, batcher.model_id)
            if lookup or examples:
                await _semantic(
                    gw.cache, gw.settings.cache.top_k, policies, caller, key, found, now,
                    hits=lookup, examples=examples,
                )  # fmt: skip
            return found
    except Exception as exc:
        timeout = isinstance(exc, TimeoutError)
        # a timeout is load; anything else is a fault, and its traceback is wanted
        logger.warning(
            "semantic lookup failed open: %s", exc or type(exc).__name__, exc_info=not timeout
        )
        reason = "lookup_timeout" if timeout else "lookup_failed"
        if isinstance(exc, StoreError):
            reason = "store_error"
        return Lookup(cheap, policies[cheap.category], bypass=reason)
    finally:
        if embedding is not None:
            embedding.cancel()  # out of the queue if nobody awaits it (done: no effect)


def _exact(
    policies: PolicySet,
    hit: Hit | None,
    key: RequestKey,
    cheap: Classification,
    decided: Classification | None,
) -> Lookup | None:
    """The exact tier's hit, if its category serves at this temperature."""
    entry = policies.by_name.get(hit.category) if hit is not None else None
    if hit is None or entry is None or entry.refusal(key.temperature) is not None:
        return None
    return Lookup(Classification(hit.category, cheap.step if decided else "exact"), entry, hit=hit)


async def _pooled(
    cache: SemanticCache, caller: Caller, key: RequestKey, now: float, served: Lookup
) -> bool:
    """Whether an exact hit is served: always, unless its category keeps a pool of answers
    and the request is above temperature 0; then only once the pool is full, with a random
    answer of it (until then the request goes upstream, and its answer joins the pool)."""
    size = served.policy.pool
    if size <= 1 or key.temperature == 0:
        return True
    answers = await cache.pool(caller.tenant, caller.namespace, key, now, size)
    if len(answers) < size:
        return False
    served.hit = random.choice(answers)
    return True


async def _semantic(
    cache: SemanticCache,
    top_k: int,
    policies: PolicySet,
    caller: Caller,
    key: RequestKey,
    found: Lookup,
    now: float,
    *,
    hits: bool,
    examples: bool,
) -> None:
    """The semantic tier: a hit (when `hits`), and the in-context example candidates (when
    `examples` and the category gives them), from one search."""
    assert found.vector is not None and found.effective is not None
    policy = found.policy
    near = examples and policy.examples and policy.example_k_max > 0
    # A pool of answers gives variety above temperature 0; a semantic hit, one answer, would
    # not (nor, while the pool fills, would it let the pool fill): its exact tier only.
    hits = hits and policy.semantic and (policy.pool <= 1 or key.temperature == 0)
    if not near and not hits:
        return  # nothing to search for: no hit wanted, and no examples
    semantic = await cache.lookup_semantic(
        caller.tenant,
        caller.namespace,
        key,
        found.vector,
        accept=acceptance(policies, found.policy, found.effective.load, key.temperature),
        top_k=top_k,
        now=now,
        model_id=found.model_id,
        near_floor=policy.example_floor if near else None,
    )
    found.nearest, found.near = semantic.nearest, semantic.near
    if hits:
        found.hit = semantic.hit
    for rejection in semantic.rejected:
        logger.info(
            "guard rejected entry %d at %.3f: %s",
            rejection.entry_id,
            rejection.similarity,
            rejection.reason,
        )


def _route(
    load: LoadMonitor,
    policies: PolicySet,
    route: Route,
    choice: str,
    found: Lookup,
    key: RequestKey,
    body: dict[str, Any],
    outcome: Outcome,
) -> tuple[ModelSettings, dict[str, Any]]:
    """The member a route's miss goes to, and the body it is sent (with the examples)."""
    policy = found.policy
    threshold = found.effective.threshold if found.effective else policy.threshold
    limits = ExampleLimits(
        policy.examples, policy.example_floor, policy.example_budget_tokens, policy.example_k_max
    )
    lent = [e for e in found.near if policies.by_name.get(e.category, policy).examples]
    given = choose(lent, limits, threshold=threshold, query=key.text, guard=policy.guard)
    decision = decide(
        route, choice=choice, policy=policy, examples=given, threshold=threshold, load=load
    )
    model = route.member(decision.member)
    outcome.model, outcome.tier, outcome.route_reason = (
        model.litellm_model,
        model.tier,
        decision.reason,
    )
    outcome.examples = tuple(e.entry_id for e in decision.examples)
    outcome.example_tokens = sum(e.tokens for e in decision.examples)
    if decision.member == "small":
        outcome.baseline = route.large
    if not decision.examples:
        return model, body
    return model, {**body, "messages": with_examples(body["messages"], list(decision.examples))}


def _serve_hit(
    gw: Gateway, policies: PolicySet, hit: Hit, key: RequestKey, outcome: Outcome, now: float
) -> Response:
    outcome.kind = f"hit_{hit.tier}"
    outcome.similarity = hit.similarity
    outcome.entry_id = hit.entry_id
    outcome.prompt_tokens = hit.prompt_tokens
    outcome.completion_tokens = hit.completion_tokens
    outcome.cost_usd = hit.cost_usd  # what the hit saved
    if hit.tier == "semantic":
        outcome.prompt = key.text
    expires = None
    if gw.settings.cache.sliding_ttl:
        policy = policies[hit.category]
        expires = now + adapt(policy, gw.load.load(outcome.requested_model)).ttl_seconds
        gw.cache.extended(hit.entry_id, expires)
    gw.events.put(HitUpdate(hit.entry_id, now, expires))
    return _reply_from_cache(gw.recorder, hit.response, key, outcome)


def _serve_shared(
    recorder: Recorder,
    shared: dict[str, Any],
    key: RequestKey,
    model: ModelSettings,
    outcome: Outcome,
) -> Response:
    """The answer of an identical request that was in flight, served like a hit."""
    outcome.kind = "hit_coalesced"
    outcome.route_reason, outcome.examples, outcome.baseline = None, (), None  # not routed
    outcome.example_tokens = 0
    outcome.similarity = 1.0
    account(outcome, model, shared.get("usage"))
    return _reply_from_cache(recorder, shared, key, outcome)


def _reply_from_cache(
    recorder: Recorder, stored: dict[str, Any], key: RequestKey, outcome: Outcome
) -> Response:
    outcome.model = ""  # no upstream answered
    body = hit_body(
        stored,
        model=key.model,
        prompt_tokens=outcome.prompt_tokens,
        completion_tokens=outcome.completion_tokens,
    )
    outcome.response_id = body["id"]
    recorder.record(outcome)
    if key.stream:
        return StreamingResponse(
            hit_stream(body, include_usage=key.include_usage),
            media_type="text/event-stream",
            headers=outcome.headers(),
        )
    return JSONResponse(body, headers=outcome.headers())
