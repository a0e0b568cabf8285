"""`POST /admin/replay/report`: a `gateway replay --json` document in, the replay's HTML
report out, drawn by the same code as `gateway replay --html` (the dashboard's Replay view
shows it in a sandboxed frame)."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from gateway.admin.common import admin, gateway
from gateway.errors import InvalidRequest
from gateway.http.body import read_json
from gateway.replay.document import DocumentError, read_figures
from gateway.replay.html import page

MAX_REPORT_BYTES = 64 * 1_048_576  # a replay's series grow with its requests
# The report is a document to look at: no script runs in it, nothing is fetched for it.
REPORT_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox"


@admin
async def replay_report(request: Request) -> Response:
    server = gateway(request).settings.server
    limit = max(server.max_body_bytes, MAX_REPORT_BYTES)
    document = await read_json(request, limit, server.body_timeout_s)
    try:
        figures = await asyncio.to_thread(read_figures, document)
    except DocumentError as exc:
        raise InvalidRequest(str(exc), param=exc.where) from None
    html = await asyncio.to_thread(page, figures)
    return HTMLResponse(html, headers={"content-security-policy": REPORT_POLICY})
