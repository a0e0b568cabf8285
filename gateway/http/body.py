"""Reading a request body: bounded in size and time, parsed as strict JSON.

Strict means what JSON says and nothing Python adds: no NaN or Infinity, no lone surrogates,
no numbers that overflow, integers within 64 bits, and nesting at most `MAX_DEPTH` deep, so
that nothing later (hashing, the store, LiteLLM) meets a value it cannot handle.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request

from gateway.errors import BodyTooLarge, InvalidRequest, RequestTimeout

MAX_DEPTH = 64
OFF_LOOP_BYTES = 64 * 1024
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


async def read_body(request: Request, limit: int, deadline_s: float) -> bytes:
    """The raw body: 413 past `limit` bytes, 408 when it has not arrived in `deadline_s`."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"the request body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(deadline_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise BodyTooLarge(f"the request body is larger than {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise RequestTimeout(f"the request body did not arrive within {deadline_s:g} s") from None
    except ClientDisconnect:
        raise InvalidRequest("the client closed the connection before sending the body") from None
    return b"".join(chunks)


def parse_json(raw: bytes) -> Any:
    """Strict JSON (see the module docstring); `InvalidRequest` says what is wrong."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}") from None
    check_value(value)
    return value


def check_value(value: Any) -> None:
    """Depth and integer range of a parsed JSON value, walked without recursion."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            if type(item) is int and not INT64_MIN <= item <= INT64_MAX:
                raise InvalidRequest("the request body has an integer outside 64 bits")
            continue
        if depth > MAX_DEPTH:
            raise InvalidRequest(f"the request body is nested deeper than {MAX_DEPTH} levels")
        stack.extend((child, depth + 1) for child in children)


async def read_json(request: Request, limit: int, deadline_s: float) -> Any:
    """The body, read and parsed; a large one is parsed in a worker thread, so that checking
    hundreds of thousands of values never holds the event loop (100-200 ms for 1 MB)."""
    raw = await read_body(request, limit, deadline_s)
    if len(raw) > OFF_LOOP_BYTES:
        return await asyncio.to_thread(parse_json, raw)
    return parse_json(raw)
