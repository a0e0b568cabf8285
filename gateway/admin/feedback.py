"""`POST /admin/feedback`: a served hit judged right or wrong, by an operator (admin token)
or by the tenant it was served to (their own key). A wrong hit demotes the entry: it leaves
the index, so no paraphrase is served it again; its own exact request still is. Either way
the pair (prompt, cached prompt, verdict) is kept as labelled data."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.admin.common import gateway, integer, json_object, text
from gateway.errors import InvalidRequest, NotFound, Unauthorized
from gateway.runtime import Gateway
from gateway.store.models import CacheEntry, Feedback, RequestEvent
from gateway.store.queries import Store

MAX_NOTE = 4096
MAX_RESPONSE_ID = 128  # the column's width


@dataclass(frozen=True)
class Served:
    entry_id: int
    tenant: str
    category: str
    entry_text: str
    response_id: str | None
    prompt: str | None
    similarity: float | None


def _find(store: Store, entry_id: int | None, response_id: str | None) -> Served | None:
    with store.session() as session:
        event = None
        if response_id is not None:
            event = session.scalars(
                select(RequestEvent)
                .where(RequestEvent.response_id == response_id)
                .order_by(RequestEvent.id.desc())
                .limit(1)
            ).first()
            if event is None or event.entry_id is None:
                return None
            if entry_id is not None and entry_id != event.entry_id:
                return None
            entry_id = event.entry_id
        row = session.get(CacheEntry, entry_id)
        if row is None:
            return None
        return Served(
            row.id,
            row.tenant,
            row.category,
            row.text,
            response_id,
            event.prompt if event is not None else None,
            event.similarity if event is not None else None,
        )


def _record(store: Store, served: Served, correct: bool, source: str, note: str) -> int:
    row = Feedback(
        ts=time.time(),
        tenant=served.tenant,
        entry_id=served.entry_id,
        response_id=served.response_id,
        correct=correct,
        category=served.category,
        similarity=served.similarity,
        prompt=served.prompt,
        entry_text=served.entry_text,
        source=source,
        note=note,
    )
    with store.session() as session, session.begin():
        session.add(row)
        session.flush()
        return row.id


def _judge(gw: Gateway, request: Request) -> str | None:
    """Who is judging: None for an operator (the admin token), else the tenant of the key.
    A caller without a key is refused; an anonymous pool is shared, so no one owns it."""
    authorization = request.headers.get("authorization")
    if gw.admin.valid(authorization):
        return None
    if not authorization:
        raise Unauthorized("feedback needs the admin token or the API key the hit was served to")
    return gw.tenancy.identify(authorization, None).tenant


async def feedback(request: Request) -> Response:
    gw = gateway(request)
    tenant = _judge(gw, request)  # before the body is read
    body = await json_object(request)
    verdict = text(body, "verdict")
    if verdict not in ("wrong", "right"):
        raise InvalidRequest('verdict must be "wrong" or "right"', param="verdict")
    entry_id = integer(body, "entry_id", minimum=1)
    response_id = text(body, "response_id", max_length=MAX_RESPONSE_ID)
    if entry_id is None and response_id is None:
        raise InvalidRequest("name the hit: entry_id or response_id", param="entry_id")
    note = text(body, "note", max_length=MAX_NOTE) or ""
    loop = asyncio.get_running_loop()
    store = gw.cache.store
    await gw.events.flush()  # the hit being judged may have just been served
    served = await loop.run_in_executor(None, _find, store, entry_id, response_id)
    # A tenant may judge only what it was served; others' entries look absent.
    if served is None or (tenant is not None and served.tenant != tenant):
        raise NotFound("no such served entry", param="response_id" if response_id else "entry_id")
    correct = verdict == "right"
    source = "admin" if tenant is None else "tenant"
    feedback_id = await loop.run_in_executor(None, _record, store, served, correct, source, note)
    demoted = False
    if not correct:
        demoted = await gw.cache.demote(served.entry_id, time.time())
    return JSONResponse(
        {
            "object": "feedback",
            "id": feedback_id,
            "entry_id": served.entry_id,
            "verdict": verdict,
            "demoted": demoted,
        },
        status_code=201,
    )
