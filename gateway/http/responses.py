"""JSON responses rendered by orjson, and errors as responses: OpenAI-shaped JSON with the
error's status."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse as StarletteJSONResponse
from starlette.responses import Response

from gateway.errors import GatewayError, InvalidRequest, NotFound


class JSONResponse(StarletteJSONResponse):
    """Starlette's JSON response (compact, UTF-8) rendered by orjson: several times faster
    than the standard library on an answer's body."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


def error_response(exc: GatewayError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers={"x-cache": "bypass"})


async def on_gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)  # registered for GatewayError only
    return error_response(exc)


async def not_found(request: Request, exc: Exception) -> Response:
    return error_response(NotFound(f"no route {request.method} {request.url.path}"))


async def not_allowed(request: Request, exc: Exception) -> Response:
    message = f"method {request.method} is not allowed on {request.url.path}"
    return error_response(InvalidRequest(message, status=405))
