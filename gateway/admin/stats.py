"""`GET /admin/stats`: what the cache did in a time window, in total and per category,
tenant and model (computed by `gateway.store.stats`)."""

from __future__ import annotations

import asyncio
import time

from starlette.requests import Request
from starlette.responses import Response

from gateway.admin.common import admin, gateway, moment, query
from gateway.errors import InvalidRequest
from gateway.http.responses import JSONResponse
from gateway.store.stats import compute


@admin
async def stats(request: Request) -> Response:
    """Totals and breakdowns for `since` <= time < `until` (default: the last 24 hours)."""
    now = time.time()
    params = query(request)
    until = moment(params, "until")
    until = until if until is not None else now
    since = moment(params, "since")
    since = since if since is not None else until - 24 * 3600
    if since >= until:
        raise InvalidRequest("since must be before until", param="since")
    gw = gateway(request)
    await gw.events.flush()  # what was answered is counted
    result = await asyncio.get_running_loop().run_in_executor(None, compute, gw.store, since, until)
    return JSONResponse(result)
