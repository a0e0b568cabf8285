"""`GET /admin/model` (what serves, and the change in progress) and `POST /admin/model`
(activate another similarity model: `gateway.model_change`)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gateway.admin.common import admin, gateway, json_object, text
from gateway.errors import InvalidRequest
from gateway.http.responses import JSONResponse
from gateway.runtime import Gateway

MAX_CHOICE = 4096  # characters of a model directory's path


def _view(gw: Gateway) -> dict[str, Any]:
    change = gw.changer.change
    return {
        "object": "model",
        "model": gw.changer.active,
        "model_id": gw.embedder.model_id,
        "change": change.view() if change is not None else None,
    }


@admin
async def model(request: Request) -> Response:
    gw = gateway(request)
    if request.method == "GET":
        return JSONResponse(_view(gw))
    body = await json_object(request)
    unknown = set(body) - {"model"}
    if unknown:
        raise InvalidRequest(f"unknown field {sorted(unknown)[0]!r}", param=sorted(unknown)[0])
    choice = text(body, "model", max_length=MAX_CHOICE)
    if not choice or not choice.strip():
        raise InvalidRequest("model must be trained, base or a model directory", param="model")
    if choice == gw.changer.active and not gw.changer.running:
        return JSONResponse(_view(gw))
    await gw.changer.start(gw, choice)
    return JSONResponse(_view(gw), status_code=202)
