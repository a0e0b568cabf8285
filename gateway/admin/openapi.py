"""The admin API's OpenAPI 3.1 document (`GET /admin/openapi.json`). A test checks that its
paths and methods are exactly the admin routes of the app."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from categories import policy as policies_module
from categories.policy import (
    EVICTIONS,
    MAX_EXAMPLE_TOKENS,
    MAX_NAME,
    NAME_PATTERN,
    ROUTE_PREFERENCES,
)
from gateway.admin.common import MAX_ID, MAX_PAGE, MAX_TEXT, admin
from gateway.admin.entries import MAX_Q
from gateway.admin.feedback import MAX_NOTE, MAX_RESPONSE_ID
from gateway.admin.policies import MAX_EXAMPLE_CHARS, MAX_EXAMPLES
from gateway.admin.stats import MAX_BUCKET_S, MAX_BUCKETS
from gateway.http.responses import JSONResponse
from gateway.replay.document import ReplayFigures

ERROR = {"$ref": "#/components/schemas/Error"}
OBJECT = {"type": "object"}
TEXT = {"type": "string", "maxLength": MAX_TEXT}
SECONDS = {"type": "number", "minimum": 0}
COSINE = {"type": "number", "exclusiveMinimum": -1, "maximum": 1}
EXAMPLES = {
    "type": "array",
    "maxItems": MAX_EXAMPLES,
    "items": {"type": "string", "maxLength": MAX_EXAMPLE_CHARS},
}
STATUS = {
    "200": "OK",
    "201": "created",
    "202": "accepted: runs in the background",
    "400": "invalid",
    "401": "no valid token",
    "404": "not found",
    "409": "conflicts with a change in progress",
    "408": "the body did not arrive in time",
    "413": "the body is too large",
}


def _param(name: str, where: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "schema": schema,
        "description": description,
    }


def _op(
    summary: str,
    *,
    params: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    ok: tuple[str, ...] = ("200",),
    errors: tuple[str, ...] = ("400",),
) -> dict[str, Any]:
    """One operation: its `ok` statuses answer an object, the rest (and 401) an Error."""
    statuses = [*ok, *errors, "401", *(("408", "413") if body else ())]
    op: dict[str, Any] = {
        "summary": summary,
        "security": [{"bearer": []}],
        "responses": {
            status: {
                "description": STATUS[status],
                "content": {"application/json": {"schema": OBJECT if status in ok else ERROR}},
            }
            for status in sorted(statuses)
        },
    }
    if params:
        op["parameters"] = params
    if body:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return op


TIME = {"anyOf": [{"type": "number"}, {"type": "string", "format": "date-time"}]}
TIME_TEXT = "Unix seconds or ISO 8601 (UTC unless a zone is given)"
FILTER_FIELDS = {
    "tenant": "tenant id (salted key hash)",
    "namespace": "namespace",
    "category": "category",
    "model": "model name clients asked for",
}
AGE_FIELDS = {
    "older_than_s": "created at least this many seconds ago",
    "newer_than_s": "created at most this many seconds ago",
}
FILTERS = [
    *(_param(name, "query", TEXT, text) for name, text in FILTER_FIELDS.items()),
    *(_param(name, "query", SECONDS, text) for name, text in AGE_FIELDS.items()),
]
CATEGORY = _param(
    "category",
    "path",
    {"type": "string", "pattern": NAME_PATTERN},
    "category name",
)
ENTRY = _param("entry_id", "path", {"type": "integer", "minimum": 1, "maximum": MAX_ID}, "entry id")
POLICY = {
    "type": "object",
    "description": "Fields of a policy (as GET shows it); `name` must match the path",
    "properties": {
        "object": {"const": "policy"},
        "name": CATEGORY["schema"],
        "overridden": {"type": "boolean"},
        "enabled": {"type": "boolean"},
        "threshold": COSINE,
        "threshold_floor": COSINE,
        "ttl_seconds": {"type": "number", "exclusiveMinimum": 0},
        "ttl_ceiling_seconds": {"type": "number", "exclusiveMinimum": 0},
        "quota": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
        "eviction": {"enum": list(EVICTIONS)},
        "max_temperature": {"type": "number", "minimum": 0},
        "guard": {"type": "boolean"},
        "examples": {"type": "boolean"},
        "example_floor": COSINE,
        "example_budget_tokens": {"type": "integer", "minimum": 0, "maximum": MAX_EXAMPLE_TOKENS},
        "example_k_max": {"type": "integer", "minimum": 0, "maximum": policies_module.MAX_EXAMPLES},
        "route": {"enum": list(ROUTE_PREFERENCES)},
        "rules": EXAMPLES,
        "prototypes": EXAMPLES,
        "description": {"type": "string", "maxLength": MAX_EXAMPLE_CHARS},
    },
    "additionalProperties": False,
}
PURGE = {
    "type": "object",
    "description": "At least one filter, or `all`",
    "properties": {
        **dict.fromkeys(FILTER_FIELDS, TEXT),
        **dict.fromkeys(AGE_FIELDS, SECONDS),
        "all": {"type": "boolean"},
    },
    "additionalProperties": False,
}
FEEDBACK = {
    "type": "object",
    "properties": {
        "verdict": {"enum": ["wrong", "right"]},
        "entry_id": ENTRY["schema"],
        "response_id": {"type": "string", "maxLength": MAX_RESPONSE_ID},
        "note": {"type": "string", "maxLength": MAX_NOTE},
        "category": {
            "type": "string",
            "maxLength": MAX_NAME,
            "description": "the category the prompt should have had (a configured one)",
        },
    },
    "required": ["verdict"],
    "anyOf": [{"required": ["entry_id"]}, {"required": ["response_id"]}],
}

MODEL = {
    "type": "object",
    "properties": {
        "model": {
            "type": "string",
            "minLength": 1,
            "maxLength": 4096,
            "description": "trained, base, or a model directory written by `gateway train`",
        }
    },
    "required": ["model"],
    "additionalProperties": False,
}

# The replay document's schema, from the pydantic model that checks it; its parts join the
# components, where its references point.
REPLAY = ReplayFigures.model_json_schema(ref_template="#/components/schemas/{model}")
REPLAY_PARTS = REPLAY.pop("$defs", {})


def _replay_report() -> dict[str, Any]:
    op = _op(
        "The HTML report of a `gateway replay --json` document, drawn as `gateway replay "
        "--html` draws it",
        body=REPLAY,
    )
    op["responses"]["200"]["content"] = {"text/html": {"schema": {"type": "string"}}}
    return op


WINDOW = [
    _param("since", "query", TIME, TIME_TEXT + "; default until - 24 h"),
    _param("until", "query", TIME, TIME_TEXT + "; default now"),
]

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "semantic-cache-gateway admin API", "version": "1"},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {
                        "type": "object",
                        "required": ["message", "type", "param", "code"],
                        "properties": {
                            "message": {"type": "string"},
                            "type": {"type": "string"},
                            "param": {"type": ["string", "null"]},
                            "code": {"type": ["string", "null"]},
                        },
                    }
                },
            },
            **REPLAY_PARTS,
        },
    },
    "paths": {
        "/admin/openapi.json": {"get": _op("This document", errors=())},
        "/admin/stats": {
            "get": _op(
                "Requests, hits, misses, bypasses, savings, added latency and false hits, "
                "in total and per category, tenant and model",
                params=WINDOW,
            )
        },
        "/admin/stats/series": {
            "get": _op(
                "The totals of /admin/stats per time bucket (aligned to multiples of it), "
                "oldest first; buckets without requests are left out",
                params=[
                    *WINDOW,
                    _param(
                        "bucket",
                        "query",
                        {"type": "integer", "minimum": 1, "maximum": MAX_BUCKET_S},
                        f"seconds per bucket; default 3600; at most {MAX_BUCKETS:,} buckets",
                    ),
                ],
            )
        },
        "/admin/policies": {"get": _op("Every category's policy in force", errors=())},
        "/admin/policies/{category}": {
            "get": _op("One policy", params=[CATEGORY], errors=("400", "404")),
            "put": _op(
                "Replace (or create: 201) a policy; unset fields come from the policy file",
                params=[CATEGORY],
                body=POLICY,
                ok=("200", "201"),
            ),
            "patch": _op(
                "Change some fields of a policy",
                params=[CATEGORY],
                body=POLICY,
                errors=("400", "404"),
            ),
            "delete": _op(
                "Drop the run-time change: back to the policy file",
                params=[CATEGORY],
                errors=("400", "404"),
            ),
        },
        "/admin/entries": {
            "get": _op(
                "Cache entries, filtered and paginated by id, or the nearest to `q`",
                params=[
                    *FILTERS,
                    _param(
                        "q",
                        "query",
                        {"type": "string", "pattern": "\\S", "maxLength": MAX_Q},
                        "semantic search text",
                    ),
                    _param(
                        "limit",
                        "query",
                        {"type": "integer", "minimum": 1, "maximum": MAX_PAGE},
                        f"page size, 1 to {MAX_PAGE} (default 50)",
                    ),
                    _param(
                        "after",
                        "query",
                        {"type": "integer", "minimum": 0, "maximum": MAX_ID},
                        "the previous page's next_after",
                    ),
                ],
            )
        },
        "/admin/entries/{entry_id}": {
            "get": _op(
                "One entry, with its request and response", params=[ENTRY], errors=("400", "404")
            ),
            "delete": _op(
                "Delete one entry from the index and the store",
                params=[ENTRY],
                errors=("400", "404"),
            ),
        },
        "/admin/purge": {
            "post": _op(
                "Delete entries by tenant, namespace, category, model, age, or all "
                '({"all": true}); returns how many',
                body=PURGE,
            )
        },
        "/admin/feedback": {
            "post": _op(
                "Mark a served hit wrong or right by entry_id or response_id (admin token, "
                "or the tenant's own key); wrong demotes the entry",
                body=FEEDBACK,
                ok=("201",),
                errors=("400", "404"),
            )
        },
        "/admin/upstreams": {
            "get": _op("Per model load and the thresholds it produces", errors=())
        },
        "/admin/replay/report": {"post": _replay_report()},
        "/admin/model": {
            "get": _op("The similarity model serving, and the change in progress", errors=()),
            "post": _op(
                "Activate a similarity model: entries are embedded again in the background "
                "and the new model serves once its indexes are complete",
                body=MODEL,
                ok=("200", "202"),
                errors=("400", "409"),
            ),
        },
    },
}


@admin
async def openapi(request: Request) -> Response:
    return JSONResponse(DOCUMENT)
