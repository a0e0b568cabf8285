"""`/admin/policies`: read and change category policies at run time. A change is
validated, committed to `policy_overrides` (it wins over the policy files and survives a
restart), and in force for the next request; `DELETE` returns a category to its file
policy."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from categories.policy import Policy, PolicyError, PolicySet, parse_policy
from gateway.admin.common import admin, gateway, integer, json_object, text
from gateway.errors import InvalidRequest, NotFound
from gateway.http.responses import JSONResponse
from gateway.runtime import Gateway, apply_policies
from gateway.store.overrides import forget_override, new_policy_base, save_override

logger = logging.getLogger(__name__)
MAX_EXAMPLES = 1000  # rules, or prototypes, in one policy
MAX_EXAMPLE_CHARS = 4096  # of one rule, prototype or description


def _view(overridden: set[str], policy: Policy) -> dict[str, Any]:
    return {"object": "policy", **policy.to_dict(), "overridden": policy.name in overridden}


@admin
async def list_policies(request: Request) -> Response:
    gw = gateway(request)
    data = [_view(gw.overridden, p) for p in gw.policies.policies]
    return JSONResponse({"object": "list", "data": data, "has_more": False, "next_after": None})


@admin
async def policy(request: Request) -> Response:
    """GET reads, PUT replaces (unset fields from the file policy), PATCH changes the fields
    given, DELETE drops the run-time change."""
    gw = gateway(request)
    name = request.path_params["category"]
    if request.method == "GET":
        current = gw.policies.by_name.get(name)
        if current is None:
            raise NotFound(f"no category {name!r}", param="category")
        return JSONResponse(_view(gw.overridden, current))
    body = await json_object(request) if request.method != "DELETE" else {}
    async with gw.policy_lock:  # concurrent changes apply one after the other, none lost
        return await _change(gw, request.method, name, body)


async def _change(gw: Gateway, method: str, name: str, body: dict[str, Any]) -> Response:
    current = gw.policies.by_name.get(name)
    loop = asyncio.get_running_loop()
    store = gw.store
    if method == "DELETE":
        if not await loop.run_in_executor(None, forget_override, store, name):
            raise NotFound(f"category {name!r} has no run-time change", param="category")
        gw.overridden.discard(name)
        restored = gw.settings.policies.by_name.get(name)
        if restored is not None:  # in its place (`default`, which must exist, included)
            rebuilt = gw.policies.replace(restored)
        else:
            remaining = tuple(p for p in gw.policies.policies if p.name != name)
            rebuilt = PolicySet(remaining, gw.policies.classifier)
        await apply_policies(gw, rebuilt)
        return JSONResponse({"object": "policy.deleted", "name": name, "restored": bool(restored)})
    # What GET shows besides the fields: a policy read may be written back as it is.
    if body.pop("object", "policy") != "policy":
        raise InvalidRequest('object must be "policy"', param="object")
    if not isinstance(body.pop("overridden", False), bool):
        raise InvalidRequest("overridden must be true or false", param="overridden")
    if body.pop("name", name) != name:
        raise InvalidRequest("name cannot be changed", param="name")
    _check_bounds(body)
    if method == "PATCH" and current is None:
        raise NotFound(f"no category {name!r} (PUT creates one)", param="category")
    if method == "PUT":
        base = gw.settings.policies.by_name.get(name) or new_policy_base(gw.policies)
    else:
        assert current is not None
        base = current
    try:
        changed = parse_policy(name, body, base)
        policies = gw.policies.replace(changed)
    except PolicyError as exc:
        raise InvalidRequest(str(exc), param=_field(str(exc))) from None
    await loop.run_in_executor(None, save_override, store, changed)
    gw.overridden.add(name)
    await apply_policies(gw, policies)
    return JSONResponse(_view(gw.overridden, changed), status_code=201 if current is None else 200)


def _check_bounds(body: dict[str, Any]) -> None:
    """What `parse_policy` leaves open: how big a policy may be, and quota within 64 bits."""
    integer(body, "quota", minimum=1)
    text(body, "description", max_length=MAX_EXAMPLE_CHARS)
    for field in ("rules", "prototypes"):
        values = body.get(field)
        if not isinstance(values, list):
            continue  # parse_policy names the wrong type
        if len(values) > MAX_EXAMPLES:
            raise InvalidRequest(f"{field} must hold at most {MAX_EXAMPLES} items", param=field)
        for i, value in enumerate(values):
            if isinstance(value, str) and len(value) > MAX_EXAMPLE_CHARS:
                raise InvalidRequest(
                    f"{field}[{i}] must be at most {MAX_EXAMPLE_CHARS} characters", param=field
                )


def _field(message: str) -> str | None:
    """The field a policy error names (`categories.code.quota must ...` -> quota)."""
    head = message.split(" ", 1)[0].rstrip(":")
    parts = head.split(".")
    return parts[2] if len(parts) >= 3 else None
