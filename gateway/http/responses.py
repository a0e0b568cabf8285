"""Errors as responses: OpenAI-shaped JSON with the error's status."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.errors import GatewayError, InvalidRequest, NotFound


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
