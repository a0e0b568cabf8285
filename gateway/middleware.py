"""Pure ASGI middleware around every route."""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import GatewayError
from gateway.http.responses import error_response

logger = logging.getLogger(__name__)


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
