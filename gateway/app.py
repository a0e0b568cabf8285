"""The ASGI application: the route table and the error handlers. `create_app(settings)`
builds everything in its lifespan (see `gateway.runtime`)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from embeddings.protocol import Embedder
from gateway.admin import routes as admin_routes
from gateway.errors import GatewayError
from gateway.http.chat import chat_completions
from gateway.http.health import get_model, healthz, list_models, readyz
from gateway.http.passthrough import completions, embeddings
from gateway.http.responses import not_allowed, not_found, on_gateway_error
from gateway.middleware import CatchErrors, RequestContext
from gateway.runtime import running
from gateway.settings import Settings
from gateway.ui import routes as ui_routes
from gateway.upstream import Upstream


def create_app(
    settings: Settings,
    *,
    embedder: Embedder | None = None,
    upstream: Upstream | None = None,
    simulated: Upstream | None = None,
    salt: bytes | None = None,
    worker: int = 0,
) -> Starlette:
    """The gateway. Tests pass their own embedder or upstream; the rest comes from settings.
    `worker` numbers this process among `server.workers`."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with running(
            settings,
            embedder=embedder,
            upstream=upstream,
            simulated=simulated,
            salt=salt,
            worker=worker,
        ) as gateway:
            app.state.gateway = gateway
            app.state.ready = True
            try:
                yield
            finally:
                app.state.ready = False

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
            *ui_routes(),
        ],
        lifespan=lifespan,
        middleware=[Middleware(RequestContext), Middleware(CatchErrors)],
        exception_handlers={GatewayError: on_gateway_error, 404: not_found, 405: not_allowed},
    )
    app.state.ready = False
    return app
