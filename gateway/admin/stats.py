"""`GET /admin/stats`: what the cache did in a time window, in total and per category,
tenant and model; `GET /admin/stats/series`: the same totals per time bucket (both
aggregated in SQL by `gateway.store.stats`)."""

from __future__ import annotations

import asyncio
import time

from starlette.requests import Request
from starlette.responses import Response

from gateway.admin.common import UrlParams, admin, gateway, integer, moment, query
from gateway.errors import InvalidRequest
from gateway.http.responses import JSONResponse
from gateway.store.stats import compute, series

MAX_BUCKETS = 10_000  # in one series: a window and a bucket that would give more are a 400
MAX_BUCKET_S = 31 * 86_400


def _window(params: UrlParams) -> tuple[float, float]:
    """`since` <= time < `until`, by default the last 24 hours."""
    until = moment(params, "until")
    until = until if until is not None else time.time()
    since = moment(params, "since")
    since = since if since is not None else until - 24 * 3600
    if since >= until:
        raise InvalidRequest("since must be before until", param="since")
    return since, until


@admin
async def stats(request: Request) -> Response:
    """Totals and breakdowns for `since` <= time < `until` (default: the last 24 hours)."""
    since, until = _window(query(request))
    gw = gateway(request)
    await gw.events.flush()  # what was answered is counted
    result = await asyncio.get_running_loop().run_in_executor(None, compute, gw.store, since, until)
    return JSONResponse(result)


@admin
async def stats_series(request: Request) -> Response:
    """The totals of `/admin/stats` per `bucket` seconds (default 3600) over the window."""
    params = query(request)
    since, until = _window(params)
    bucket = integer(params, "bucket", minimum=1, maximum=MAX_BUCKET_S) or 3600
    if (until - since) / bucket > MAX_BUCKETS:
        raise InvalidRequest(
            f"at most {MAX_BUCKETS} buckets: a larger bucket or a shorter window", param="bucket"
        )
    gw = gateway(request)
    await gw.events.flush()
    points = await asyncio.get_running_loop().run_in_executor(
        None, series, gw.store, since, until, bucket
    )
    return JSONResponse(
        {"object": "stats.series", "since": since, "until": until, "bucket": bucket,
         "data": points}
    )  # fmt: skip
