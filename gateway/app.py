"""The ASGI application: `create_app(settings)` builds everything in its lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from categories.classifier import Classifier
from categories.load import LoadMonitor
from categories.policy import PolicySet
from embeddings.batcher import MicroBatcher
from embeddings.protocol import Embedder
from embeddings.runtime import load_embedder
from gateway.admin import routes as admin_routes
from gateway.admin.auth import AdminAuth
from gateway.admin.policies import with_overrides
from gateway.cache import SemanticCache
from gateway.errors import GatewayError, InvalidRequest, ModelNotFound
from gateway.events import EventWriter, journal_dir
from gateway.journal import Journal
from gateway.middleware import CatchErrors
from gateway.observe import Metrics
from gateway.passthrough import completions, embeddings
from gateway.proxy import chat_completions
from gateway.settings import ModelSettings, Settings
from gateway.state import Gateway
from gateway.store import open_store
from gateway.tenants import Tenancy, load_salt
from gateway.upstream import (
    SIMULATED_PREFIX,
    Router,
    SimulatedUpstream,
    Upstream,
    load_litellm,
)

logger = logging.getLogger(__name__)

SIMULATED_MODELS = (
    ModelSettings(name="gpt-4o-mini", litellm_model=f"{SIMULATED_PREFIX}gpt-4o-mini"),
    ModelSettings(name="gpt-4o", litellm_model=f"{SIMULATED_PREFIX}gpt-4o", tier="large"),
)


def create_app(
    settings: Settings,
    *,
    embedder: Embedder | None = None,
    upstream: Upstream | None = None,
    simulated: Upstream | None = None,
    salt: bytes | None = None,
) -> Starlette:
    """The gateway. Tests pass their own embedder or upstream; the rest comes from settings."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="gateway")
        loop = asyncio.get_running_loop()
        store = await loop.run_in_executor(executor, open_store, settings.store.url)
        await loop.run_in_executor(executor, load_litellm)  # not on the first request
        model: Embedder = (
            embedder
            if embedder is not None
            else await loop.run_in_executor(executor, load_embedder, settings.embedding.options())
        )
        models = settings.models or SIMULATED_MODELS
        if not settings.models:
            logger.warning(
                "no upstream models configured: serving the built-in simulated "
                "upstream (responses are named simulated/...)"
            )
        cache = SemanticCache(
            store,
            model,
            index_dir=settings.store.resolved_index_dir(),
            params=settings.index,
            executor=executor,
        )
        batcher = MicroBatcher(model, settings.embedding.batch, executor=executor)
        policies, overridden = await loop.run_in_executor(
            executor, with_overrides, store, settings.policies
        )
        classifier = await loop.run_in_executor(executor, _classifier, policies, model)
        metrics = Metrics()
        journal = journal_dir(settings.store.resolved_index_dir())
        events = EventWriter(
            store,
            executor=executor,
            capacity=settings.server.event_queue,
            on_drop=metrics.events_dropped.inc,
            journal=Journal(journal) if journal is not None else None,
        )
        if replayed := await events.replay():
            logger.warning("wrote %d request events a crash had left in the journal", replayed)
        app.state.gateway = Gateway(
            settings=settings,
            cache=cache,
            batcher=batcher,
            router=Router(simulated=simulated or SimulatedUpstream(), real=upstream),
            events=events,
            tenancy=Tenancy(settings.tenants, salt or load_salt(settings.tenants)),
            models={m.name: m for m in models},
            classifier=classifier,
            load=LoadMonitor(settings.adaptation),
            policies=policies,
            metrics=metrics,
            admin=AdminAuth(settings.admin),
            overridden=overridden,
        )
        sweeper = asyncio.create_task(_sweep(cache, settings.cache.sweep_interval_s))
        app.state.ready = True
        try:
            yield
        finally:
            app.state.ready = False
            sweeper.cancel()
            await asyncio.gather(sweeper, return_exceptions=True)
            await batcher.aclose()
            await events.aclose()
            await loop.run_in_executor(executor, cache.save_indexes)
            store.engine.dispose()
            executor.shutdown(wait=True)

    app = Starlette(
        routes=[
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/v1/embeddings", embeddings, methods=["POST"]),
            Route("/v1/models", list_models, methods=["GET"]),
            Route("/v1/models/{model:path}", get_model, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            *admin_routes(),
        ],
        lifespan=lifespan,
        middleware=[Middleware(CatchErrors)],
        exception_handlers={GatewayError: on_gateway_error, 404: not_found, 405: not_allowed},
    )
    app.state.ready = False
    return app


def _classifier(policies: PolicySet, model: Embedder) -> Classifier:
    """Prototypes embedded once; if the embedder fails, rules and headers still classify."""
    try:
        return Classifier.build(policies, model)
    except Exception:
        logger.exception("could not embed the category prototypes: classifying by rules only")
        return Classifier(policies, np.zeros((0, model.dim), np.float32), [])


async def _sweep(cache: SemanticCache, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            removed = await cache.sweep_expired()
            if removed:
                logger.info("swept %d expired entries", removed)
        except Exception:
            logger.exception("expiry sweep failed")


def _model_card(model: ModelSettings) -> dict[str, Any]:
    return {"id": model.name, "object": "model", "created": 0, "owned_by": "gateway"}


async def list_models(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    return JSONResponse({"object": "list", "data": [_model_card(m) for m in gw.models.values()]})


async def get_model(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    model = gw.models.get(request.path_params["model"])
    if model is None:
        return ModelNotFound(
            f"the model {request.path_params['model']!r} does not exist", param="model"
        ).response()
    return JSONResponse(_model_card(model))


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    ready = bool(getattr(request.app.state, "ready", False))
    return JSONResponse({"ready": ready}, status_code=200 if ready else 503)


async def on_gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    return exc.response()


async def not_found(request: Request, exc: Exception) -> Response:
    return GatewayError(
        f"no route {request.method} {request.url.path}", status=404, code="not_found"
    ).response()


async def not_allowed(request: Request, exc: Exception) -> Response:
    return InvalidRequest(
        f"method {request.method} is not allowed on {request.url.path}", status=405
    ).response()
