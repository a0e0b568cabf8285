"""`GET /admin/upstreams` and `GET /metrics`."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from categories.load import adapt
from gateway.admin.common import admin, gateway
from gateway.http.responses import JSONResponse
from gateway.routing import bar


@admin
async def upstreams(request: Request) -> Response:
    """Per configured model: its load signal and the thresholds and TTLs it produces; per
    route: its members, the load of the large one and the bar a small answer must reach now."""
    gw = gateway(request)
    seen = {load.model: load for load in gw.load.snapshot()}
    data = []
    for name, model in gw.models.items():
        load = seen.get(name)
        level = gw.load.load(name)
        data.append(
            {
                "object": "upstream",
                "model": name,
                "litellm_model": model.litellm_model,
                "tier": model.tier,
                "inflight": load.inflight if load else 0,
                "requests": load.requests if load else 0,
                "latency_ewma_ms": load.latency_ewma_ms if load else None,
                "recent_errors": load.recent_errors if load else 0,
                "load": level,
                "pressure": gw.load.pressure(name),
                "full": gw.load.full(name),
                "effective": {
                    policy.name: {
                        "threshold": adapt(policy, level).threshold,
                        "ttl_seconds": adapt(policy, level).ttl_seconds,
                    }
                    for policy in gw.policies.policies
                    if policy.enabled
                },
            }
        )
    routes = [
        {
            "object": "route",
            "name": route.name,
            "small": route.small.name,
            "large": route.large.name,
            "small_cheaper": route.small_cheaper,
            "large_pressure": gw.load.pressure(route.large.name),
            "bar": bar(route, gw.load.pressure(route.large.name)),
            "small_quality": route.settings.small_quality,
        }
        for route in gw.routes.values()
    ]
    return JSONResponse(
        {"object": "list", "data": data, "routes": routes, "has_more": False, "next_after": None}
    )


async def metrics(request: Request) -> Response:
    """Prometheus text format; unauthenticated, like most scrape targets (no tenant labels)."""
    return Response(
        gateway(request).metrics.render(),
        media_type="text/plain; version=0.0.4; charset=utf-8",
    )
