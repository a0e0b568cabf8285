"""`POST /admin/feedback`: a served hit judged right or wrong, by an operator (admin token)
or by the tenant it was served to (their own key). A wrong hit demotes the entry: it leaves
the index, so no paraphrase is served it again; its own exact request still is. Either way
the pair (prompt, cached prompt, verdict) is kept as labelled data. A verdict on an answer a
route's small model made with in-context examples also counts as one use of each example
that helped (right) or did not (wrong): the utility the router and the selection weigh.
A verdict may also name the category the prompt should have had (`category`): `gateway
train-classifier` learns from it."""

from __future__ import annotations

import asyncio
import functools
import time

from starlette.requests import Request
from starlette.responses import Response

from categories.policy import MAX_NAME
from gateway.admin.common import gateway, integer, json_object, text
from gateway.auth import AdminAuth, Tenancy
from gateway.errors import InvalidRequest, NotFound, Unauthorized
from gateway.http.responses import JSONResponse
from gateway.store.entries import credit_examples
from gateway.store.feedback import add_feedback, find_served

MAX_NOTE = 4096
MAX_RESPONSE_ID = 128  # the column's width


def _judge(admin: AdminAuth, tenancy: Tenancy, request: Request) -> str | None:
    """Who is judging: None for an operator (the admin token), else the tenant of the key.
    A caller without a key is refused; an anonymous pool is shared, so no one owns it."""
    authorization = request.headers.get("authorization")
    if admin.valid(authorization):
        return None
    if not authorization:
        raise Unauthorized("feedback needs the admin token or the API key the hit was served to")
    return tenancy.identify(authorization, None).tenant


async def feedback(request: Request) -> Response:
    gw = gateway(request)
    tenant = _judge(gw.admin, gw.tenancy, request)  # before the body is read
    body = await json_object(request)
    verdict = text(body, "verdict")
    if verdict not in ("wrong", "right"):
        raise InvalidRequest('verdict must be "wrong" or "right"', param="verdict")
    entry_id = integer(body, "entry_id", minimum=1)
    response_id = text(body, "response_id", max_length=MAX_RESPONSE_ID)
    if entry_id is None and response_id is None:
        raise InvalidRequest("name the hit: entry_id or response_id", param="entry_id")
    note = text(body, "note", max_length=MAX_NOTE) or ""
    right_category = text(body, "category", max_length=MAX_NAME)
    if right_category is not None and right_category not in gw.policies:
        raise InvalidRequest(f"no category {right_category!r}", param="category")
    loop = asyncio.get_running_loop()
    store = gw.store
    await gw.events.flush()  # the hit being judged may have just been served
    served = await loop.run_in_executor(None, find_served, store, entry_id, response_id)
    # A tenant may judge only what it was served; others' entries look absent.
    if served is None or (tenant is not None and served.tenant != tenant):
        raise NotFound("no such served entry", param="response_id" if response_id else "entry_id")
    correct = verdict == "right"
    source = "admin" if tenant is None else "tenant"
    feedback_id = await loop.run_in_executor(
        None, add_feedback, store, served, correct, source, note, right_category
    )
    demoted = False
    if not correct:
        demoted = await gw.cache.demote(served.entry_id, time.time())
    credited = 0
    if served.examples:  # an answer made with in-context examples: their utility learns
        credited = await loop.run_in_executor(
            None,
            functools.partial(
                credit_examples, store, served.tenant, served.examples, helped=correct
            ),
        )
    return JSONResponse(
        {
            "object": "feedback",
            "id": feedback_id,
            "entry_id": served.entry_id,
            "verdict": verdict,
            "category": right_category,
            "demoted": demoted,
            "examples_credited": credited,
        },
        status_code=201,
    )
