"""What every admin route shares: the token check, strict parameters, pagination.

Every value a client sends is checked here before it reaches the store: text must be
valid UTF-8 and of bounded length, numbers finite and in range, integers within SQLite's
64 bits. A parameter left out is None; in a JSON body, null is not a way to leave one out.
Anything else is a 400 that names the parameter, never a 500."""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.requests import Request
from starlette.responses import Response

from gateway.errors import InvalidRequest
from gateway.http.body import INT64_MAX, read_json
from gateway.runtime import Gateway

Handler = Callable[[Request], Awaitable[Response]]
MAX_PAGE = 500
MAX_ID = INT64_MAX  # an id is an SQLite INTEGER
MAX_TEXT = 256  # a filter value, an id, a name
MAX_NUMBER_CHARS = 64
_INTEGER = re.compile(r"-?[0-9]+")  # ASCII digits only: str.isdigit() takes "²"
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def admin(handler: Handler) -> Handler:
    """An admin route: the token is checked before the handler runs; errors are OpenAI-shaped."""

    async def route(request: Request) -> Response:
        gateway(request).admin.check(request)
        _check_path(request)
        return await handler(request)

    route.__name__ = handler.__name__
    route.__doc__ = handler.__doc__
    return route


def gateway(request: Request) -> Gateway:
    gw: Gateway = request.app.state.gateway
    return gw


class UrlParams(dict[str, str]):
    """Parameters from the URL (query string or path): every value is text, so numbers in
    them are parsed (strictly: ASCII digits), where a JSON body's must already be numbers."""


def query(request: Request) -> UrlParams:
    """The query string, strictly decoded: a percent-escape that is not UTF-8 is a 400
    (Starlette's own parser turns it into U+FFFD and carries on)."""
    params = UrlParams()
    for pair in request.scope.get("query_string", b"").split(b"&"):
        if not pair:
            continue
        raw_name, _, raw_value = pair.partition(b"=")
        name = _utf8(raw_name, None)
        params[name] = _utf8(raw_value, name)  # the last one wins, as in Starlette
    return params


def _utf8(raw: bytes, name: str | None) -> str:
    try:
        return unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8")
    except UnicodeDecodeError:
        what = name if name is not None else "a query parameter's name"
        raise InvalidRequest(f"{what} is not valid UTF-8", param=name) from None


def _check_path(request: Request) -> None:
    raw = request.scope.get("raw_path")
    if not isinstance(raw, bytes):
        return
    try:
        unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        name = next(iter(request.path_params), None)
        raise InvalidRequest(f"{name or 'the path'} is not valid UTF-8", param=name) from None


async def json_object(request: Request) -> dict[str, Any]:
    """The body: strict JSON (`gateway.http.body`), bounded in size and time, and an object."""
    server = gateway(request).settings.server
    body = await read_json(request, server.max_body_bytes, server.body_timeout_s)
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    return body


def _bounds(minimum: float | None, maximum: float | None) -> str:
    if minimum is not None and maximum is not None:
        return f"from {minimum:g} to {maximum:g}"
    if minimum is not None:
        return f"at least {minimum:g}"
    return "" if maximum is None else f"at most {maximum:g}"


def number(
    source: Mapping[str, Any],
    name: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
) -> float | None:
    """An optional finite number: a JSON number in a body, a decimal in a query string."""
    if name not in source:
        return None
    raw = source[name]
    value: float | None = None
    if isinstance(source, UrlParams):
        if len(raw) <= MAX_NUMBER_CHARS and _DECIMAL.fullmatch(raw):
            value = float(raw)
    elif isinstance(raw, int | float) and not isinstance(raw, bool):
        try:
            value = float(raw)
        except OverflowError:
            value = math.inf
    if value is None:
        raise InvalidRequest(f"{name} must be a number, not {_show(raw)}", param=name)
    too_low = minimum is not None and value < minimum
    too_high = maximum is not None and value > maximum
    if not math.isfinite(value) or too_low or too_high:
        raise InvalidRequest(
            f"{name} must be a finite number {_bounds(minimum, maximum)}".rstrip(), param=name
        )
    return value


def integer(
    source: Mapping[str, Any], name: str, *, minimum: int = 0, maximum: int = MAX_ID
) -> int | None:
    """An optional integer in [minimum, maximum]: a JSON integer in a body (1.0 counts),
    ASCII digits in the URL."""
    if name not in source:
        return None
    raw = source[name]
    value: int | None = None
    if isinstance(raw, str) and isinstance(source, UrlParams):
        if _INTEGER.fullmatch(raw):
            # Past this many digits it is out of range whatever it says (int() refuses 4300).
            value = int(raw) if len(raw.lstrip("-0")) <= 20 else maximum + 1
    elif isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    elif isinstance(raw, float) and raw.is_integer():
        value = int(raw)
    if value is None:
        raise InvalidRequest(f"{name} must be an integer, not {_show(raw)}", param=name)
    if not minimum <= value <= maximum:
        raise InvalidRequest(f"{name} must be an integer from {minimum} to {maximum}", param=name)
    return value


def path_integer(request: Request, name: str, *, minimum: int = 1) -> int:
    value = integer(UrlParams(request.path_params), name, minimum=minimum)
    if value is None:
        raise InvalidRequest(f"{name} must be an integer", param=name)
    return value


def text(source: Mapping[str, Any], name: str, *, max_length: int = MAX_TEXT) -> str | None:
    """An optional string of at most max_length characters that encodes as UTF-8."""
    if name not in source:
        return None
    raw = source[name]
    if not isinstance(raw, str):
        raise InvalidRequest(f"{name} must be a string", param=name)
    if len(raw) > max_length:
        raise InvalidRequest(f"{name} must be at most {max_length} characters", param=name)
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest(f"{name} is not valid UTF-8 (a lone surrogate?)", param=name) from None
    return raw


def moment(source: UrlParams, name: str) -> float | None:
    """A time parameter: Unix seconds or ISO 8601 (UTC when no zone is given)."""
    raw = text(source, name, max_length=MAX_NUMBER_CHARS)
    if raw is None:
        return None
    if _DECIMAL.fullmatch(raw):
        seconds = float(raw)
        if not math.isfinite(seconds):
            raise InvalidRequest(f"{name} must be a finite time", param=name)
        return seconds
    try:
        if not raw.isascii():
            raise ValueError(raw)
        parsed = datetime.fromisoformat(raw)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    except (ValueError, OverflowError):
        raise InvalidRequest(
            f"{name} must be Unix seconds or an ISO 8601 time, not {_show(raw)}", param=name
        ) from None


def _show(raw: Any) -> str:
    """A bad value for an error message: short, and escaped if it holds a lone surrogate."""
    if raw is None:
        return "null"
    shown = repr(raw)
    if not shown.isascii():
        try:
            shown.encode("utf-8")
        except UnicodeEncodeError:
            shown = ascii(raw)
    return shown if len(shown) <= 40 else shown[:37] + "..."


def page_limit(params: UrlParams, default: int = 50) -> int:
    limit = integer(params, "limit", minimum=1, maximum=MAX_PAGE)
    return default if limit is None else limit


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
