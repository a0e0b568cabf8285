"""`/admin/entries` and `/admin/purge`: look into the cache and take things out of it.
Everything removed leaves the store and the index together."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gateway.admin.common import (
    admin,
    gateway,
    integer,
    json_object,
    number,
    page,
    page_limit,
    path_integer,
    query,
    text,
)
from gateway.cache.examples import utility
from gateway.errors import InvalidRequest, NotFound
from gateway.http.responses import JSONResponse
from gateway.store.entries import EntryFilter, entries_by_id, page_of_entries
from gateway.store.models import CacheEntry

FILTERS = ("tenant", "namespace", "category", "model")
MAX_Q = 4096  # characters of a semantic search


def _view(row: CacheEntry, *, full: bool = False) -> dict[str, Any]:
    view: dict[str, Any] = {
        "object": "cache.entry",
        "id": row.id,
        "tenant": row.tenant,
        "namespace": row.namespace,
        "category": row.category,
        "model": row.model_family,
        "text": row.text,
        "created_at": row.created_at,
        "expires_at": row.expires_at,
        "hit_count": row.hit_count,
        "last_hit_at": row.last_hit_at,
        "prompt_tokens": row.prompt_tokens,
        "completion_tokens": row.completion_tokens,
        "cost_usd": row.cost_usd,
        "upstream_model": row.upstream_model,
        "demoted": row.demoted_at is not None,
        "embedding_model": row.embedding_model,
        "answered_tier": row.answered_tier,
        "example": {  # as an in-context example: judged uses and the utility they give
            "helped": row.example_good,
            "did_not_help": row.example_bad,
            "utility": utility(row.example_good, row.example_bad),
            "retired": row.example_retired,
        },
    }
    if full:
        view["request"] = json.loads(row.request_json)
        view["response"] = json.loads(row.response_json)
    return view


def _filters(source: Mapping[str, Any]) -> dict[str, str]:
    """The text filters given: tenant, namespace, category, model."""
    values = {name: text(source, name) for name in FILTERS}
    return {name: value for name, value in values.items() if value is not None}


def _matching(source: Mapping[str, Any], now: float) -> EntryFilter:
    """Filters shared by listing and purging: tenant, namespace, category, model, and age."""
    given = _filters(source)
    older = number(source, "older_than_s", minimum=0)
    newer = number(source, "newer_than_s", minimum=0)
    return EntryFilter(
        tenant=given.get("tenant"),
        namespace=given.get("namespace"),
        category=given.get("category"),
        model=given.get("model"),
        created_before=None if older is None else now - older,
        created_after=None if newer is None else now - newer,
    )


@admin
async def list_entries(request: Request) -> Response:
    """Filtered, paginated by id (`after`); with `q`, the nearest entries to that text."""
    gw = gateway(request)
    params = query(request)
    matching = _matching(params, time.time())
    limit = page_limit(params)
    search = text(params, "q", max_length=MAX_Q)
    after = integer(params, "after", minimum=0) or 0
    loop = asyncio.get_running_loop()
    store = gw.store
    if search is not None:
        if not search.strip():
            raise InvalidRequest("q must not be empty", param="q")
        batcher = gw.batcher  # the vector and the indexes of one model
        vector = await batcher.embed(search)
        filters = _filters(params)
        partitions = [
            p
            for p in await loop.run_in_executor(None, store.partitions)
            if all(
                getattr(p, f) == filters[f]
                for f in ("tenant", "namespace", "category")
                if f in filters
            )
        ]
        nearest = await gw.cache.nearest(partitions, vector, limit * 4, batcher.model_id)
        order = {entry_id: similarity for similarity, entry_id in nearest}

        def rows_near() -> list[CacheEntry]:
            found = entries_by_id(store, order, matching).values()
            return sorted(found, key=lambda row: -order[row.id])[:limit]

        data = [
            {**_view(row), "similarity": round(order[row.id], 4)}
            for row in await loop.run_in_executor(None, rows_near)
        ]
        return JSONResponse({"object": "list", "data": data, "has_more": False, "next_after": None})

    rows = await loop.run_in_executor(
        None, lambda: page_of_entries(store, matching, after=after, limit=limit + 1)
    )
    return JSONResponse(page([_view(row) for row in rows], limit))


@admin
async def entry(request: Request) -> Response:
    """GET one entry with its request and response; DELETE it from store and index."""
    gw = gateway(request)
    entry_id = path_integer(request, "entry_id")
    loop = asyncio.get_running_loop()
    if request.method == "DELETE":
        removed = await gw.cache.remove(EntryFilter(entry_id=entry_id))
        if not removed:
            raise NotFound(f"no entry {entry_id}", param="entry_id")
        return JSONResponse({"object": "cache.entry.deleted", "id": entry_id, "deleted": True})
    row = await loop.run_in_executor(None, gw.store.get_entry, entry_id)
    if row is None:
        raise NotFound(f"no entry {entry_id}", param="entry_id")
    return JSONResponse(_view(row, full=True))


@admin
async def purge(request: Request) -> Response:
    """Remove every entry matching the filters (or all, with `"all": true`)."""
    gw = gateway(request)
    body = await json_object(request)
    unknown = set(body) - {*FILTERS, "older_than_s", "newer_than_s", "all"}
    if unknown:
        raise InvalidRequest(
            f"unknown field(s): {', '.join(sorted(unknown))}", param=sorted(unknown)[0]
        )
    everything = body.get("all", False)
    if not isinstance(everything, bool):
        raise InvalidRequest("all must be true or false", param="all")
    matching = _matching(body, time.time())
    if matching == EntryFilter() and not everything:
        raise InvalidRequest(
            "name at least one filter (tenant, namespace, category, model, older_than_s, "
            'newer_than_s), or purge everything with "all": true'
        )
    if matching != EntryFilter() and everything:
        raise InvalidRequest('"all": true cannot be combined with filters', param="all")
    removed = await gw.cache.remove(matching)
    return JSONResponse({"object": "cache.purge", "deleted": removed})
