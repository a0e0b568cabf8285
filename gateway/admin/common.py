"""What every admin route shares: the token check, parameters, pagination."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gateway.errors import GatewayError, InvalidRequest
from gateway.proxy import read_json
from gateway.state import Gateway

Handler = Callable[[Request], Awaitable[Response]]
MAX_PAGE = 500


def admin(handler: Handler) -> Handler:
    """An admin route: the token is checked before the handler runs; errors are OpenAI-shaped."""

    async def route(request: Request) -> Response:
        try:
            gateway(request).admin.check(request)
            return await handler(request)
        except GatewayError as exc:
            return exc.response()

    route.__name__ = handler.__name__
    route.__doc__ = handler.__doc__
    return route


def gateway(request: Request) -> Gateway:
    gw: Gateway = request.app.state.gateway
    return gw


async def json_object(request: Request) -> dict[str, Any]:
    body = await read_json(request, gateway(request).settings.server.max_body_bytes)
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    return body


def moment(request: Request, name: str) -> float | None:
    """A time parameter: Unix seconds or ISO 8601 (UTC when no zone is given)."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        seconds = float(raw)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds):
            raise InvalidRequest(f"{name} must be a finite time", param=name)
        return seconds
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidRequest(
            f"{name} must be Unix seconds or an ISO 8601 time, not {raw!r}", param=name
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def number(
    source: Mapping[str, Any], name: str, *, kind: type = float, minimum: float | None = None
) -> Any:
    """An optional number from query parameters or a JSON body, checked."""
    raw = source.get(name)
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool):
        raise InvalidRequest(f"{name} must be a number", param=name)
    try:
        value = kind(raw)
    except (TypeError, ValueError):
        what = "an integer" if kind is int else "a number"
        raise InvalidRequest(f"{name} must be {what}, not {raw!r}", param=name) from None
    if minimum is not None and value < minimum:
        raise InvalidRequest(f"{name} must be at least {minimum:g}", param=name)
    return value


def text(source: Mapping[str, Any], name: str) -> str | None:
    raw = source.get(name)
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise InvalidRequest(f"{name} must be a string", param=name)
    return raw


def page_limit(request: Request, default: int = 50) -> int:
    limit = number(request.query_params, "limit", kind=int, minimum=1)
    if limit is None:
        return default
    if limit > MAX_PAGE:
        raise InvalidRequest(f"limit must be at most {MAX_PAGE}", param="limit")
    return int(limit)


def page(data: list[dict[str, Any]], limit: int, cursor: str = "id") -> dict[str, Any]:
    """A list page: `data` holds up to limit + 1 rows; the extra one says there is more."""
    more = len(data) > limit
    rows = data[:limit]
    return {
        "object": "list",
        "data": rows,
        "has_more": more,
        "next_after": rows[-1][cursor] if more and rows else None,
    }
