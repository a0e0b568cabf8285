"""The admin API's OpenAPI 3.1 document (`GET /admin/openapi.json`). A test checks that its
paths and methods are exactly the admin routes of the app."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.admin.common import admin

ERROR = {"$ref": "#/components/schemas/Error"}
OBJECT = {"type": "object"}


def _param(name: str, where: str, kind: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "schema": {"type": kind},
        "description": description,
    }


def _op(
    summary: str, *, params: list[dict[str, Any]] | None = None, body: bool = False, ok: str = "200"
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "security": [{"bearer": []}],
        "responses": {
            ok: {"description": "OK", "content": {"application/json": {"schema": OBJECT}}},
            "400": {"description": "invalid", "content": {"application/json": {"schema": ERROR}}},
            "401": {
                "description": "no valid token",
                "content": {"application/json": {"schema": ERROR}},
            },
        },
    }
    if params:
        op["parameters"] = params
    if body:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": OBJECT}}}
    return op


TIME = "Unix seconds or ISO 8601 (UTC unless a zone is given)"
FILTERS = [
    _param("tenant", "query", "string", "tenant id (salted key hash)"),
    _param("namespace", "query", "string", "namespace"),
    _param("category", "query", "string", "category"),
    _param("model", "query", "string", "model name clients asked for"),
    _param("older_than_s", "query", "number", "created at least this many seconds ago"),
    _param("newer_than_s", "query", "number", "created at most this many seconds ago"),
]
CATEGORY = _param("category", "path", "string", "category name")
ENTRY = _param("entry_id", "path", "integer", "entry id")

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "semantic-cache-gateway admin API", "version": "1"},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {
                "type": "object",
                "properties": {
                    "error": {
                        "type": "object",
                        "properties": {
                            "message": {"type": "string"},
                            "type": {"type": "string"},
                            "param": {"type": ["string", "null"]},
                            "code": {"type": ["string", "null"]},
                        },
                    }
                },
            }
        },
    },
    "paths": {
        "/admin/openapi.json": {"get": _op("This document")},
        "/admin/stats": {
            "get": _op(
                "Requests, hits, misses, bypasses, savings, added latency and false hits, "
                "in total and per category, tenant and model",
                params=[
                    _param("since", "query", "string", TIME),
                    _param("until", "query", "string", TIME),
                ],
            )
        },
        "/admin/policies": {"get": _op("Every category's policy in force")},
        "/admin/policies/{category}": {
            "get": _op("One policy", params=[CATEGORY]),
            "put": _op(
                "Replace (or create) a policy; unset fields come from the policy file",
                params=[CATEGORY],
                body=True,
            ),
            "patch": _op("Change some fields of a policy", params=[CATEGORY], body=True),
            "delete": _op("Drop the run-time change: back to the policy file", params=[CATEGORY]),
        },
        "/admin/entries": {
            "get": _op(
                "Cache entries, filtered and paginated by id, or the nearest to `q`",
                params=[
                    *FILTERS,
                    _param("q", "query", "string", "semantic search text"),
                    _param("limit", "query", "integer", "page size, 1 to 500 (default 50)"),
                    _param("after", "query", "integer", "the previous page's next_after"),
                ],
            )
        },
        "/admin/entries/{entry_id}": {
            "get": _op("One entry, with its request and response", params=[ENTRY]),
            "delete": _op("Delete one entry from the index and the store", params=[ENTRY]),
        },
        "/admin/purge": {
            "post": _op(
                "Delete entries by tenant, namespace, category, model, age, or all "
                '({"all": true}); returns how many',
                body=True,
            )
        },
        "/admin/feedback": {
            "post": _op(
                "Mark a served hit wrong or right by entry_id or response_id (admin token, "
                "or the tenant's own key); wrong demotes the entry",
                body=True,
                ok="201",
            )
        },
        "/admin/upstreams": {"get": _op("Per model load and the thresholds it produces")},
    },
}


@admin
async def openapi(request: Request) -> Response:
    return JSONResponse(DOCUMENT)
