"""The admin dashboard at `/admin/ui/`: static files in this package (HTML, CSS, plain
JavaScript modules and a vendored uPlot), no build step. The page holds no data and needs
no token to load; everything it shows comes from the admin API, called with the token the
operator enters (kept in `sessionStorage`, sent as a bearer header)."""

from __future__ import annotations

from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Scripts from the page's own origin only; no framing by other sites; the replay report's
# sandboxed frame (srcdoc) inherits this and runs no script either. Charts and the
# report set inline styles.
POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-src 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'none'"
)
HEADERS = [
    (b"content-security-policy", POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-cache"),  # revalidated (ETag): an upgrade shows at once
]


class _Guarded:
    """The static files with the page's security headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)


def routes() -> list[Mount]:
    files = StaticFiles(packages=[("gateway.ui", "static")], html=True)
    return [Mount("/admin/ui", app=_Guarded(files), name="ui")]
