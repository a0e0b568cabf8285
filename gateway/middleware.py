"""Pure ASGI middleware around every route."""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import GatewayError
from gateway.http.responses import error_response

logger = logging.getLogger(__name__)

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def request_id(request: Request) -> str:
    """The id `RequestContext` gave the request ("" outside it, as in some tests)."""
    return str(getattr(request.state, "request_id", ""))


class RequestContext:
    """Gives each request an id (the client's `x-request-id` when it is a plain token of at
    most 128 characters, else a new one) and a start time, in the request's state for the
    routes, and echoes the id in the `x-request-id` response header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"")
        text = given.decode("latin-1")
        request_id = text if _REQUEST_ID.match(text) else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["started"] = time.perf_counter()
        header = (b"x-request-id", request_id.encode())

        async def with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), header]}
            await send(message)

        await self.app(scope, receive, with_id)


class CatchErrors:
    """Turns an unhandled exception into an OpenAI-shaped 500 and keeps the connection open.

    Starlette's own last-resort handler re-raises after answering, and the server then
    resets the connection: a keep-alive client would lose its next request as well. An
    exception after the response has started can only end that response; it is logged."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception:
            logger.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if not started:
                await error_response(GatewayError("internal error"))(scope, receive, send)
