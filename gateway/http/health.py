"""The informational routes: models, liveness and readiness."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gateway.errors import ModelNotFound
from gateway.http.responses import JSONResponse
from gateway.runtime import Gateway


def _model_card(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "gateway"}


def _names(gw: Gateway) -> list[str]:
    """The models clients may name: configured models, then routes."""
    return [*gw.models, *gw.routes]


async def list_models(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    return JSONResponse({"object": "list", "data": [_model_card(n) for n in _names(gw)]})


async def get_model(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    model = request.path_params["model"]
    if model not in _names(gw):
        raise ModelNotFound(
            f"the model {request.path_params['model']!r} does not exist", param="model"
        )
    return JSONResponse(_model_card(model))


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    ready = bool(getattr(request.app.state, "ready", False))
    return JSONResponse({"ready": ready}, status_code=200 if ready else 503)
