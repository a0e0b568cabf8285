"""Verdicts on served hits: which entry a response came from, and the labelled pair kept."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import select

from gateway.store.models import CacheEntry, Feedback, RequestEvent
from gateway.store.queries import Store


@dataclass(frozen=True)
class Served:
    entry_id: int
    tenant: str
    category: str
    entry_text: str
    response_id: str | None
    prompt: str | None
    similarity: float | None
    examples: tuple[int, ...] = ()  # the in-context examples the answer was made with


def find_served(store: Store, entry_id: int | None, response_id: str | None) -> Served | None:
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
        # The examples the entry's answer was made with: on the miss that stored it.
        examples = session.scalars(
            select(RequestEvent.examples)
            .where(RequestEvent.entry_id == row.id, RequestEvent.examples.is_not(None))
            .order_by(RequestEvent.id)
            .limit(1)
        ).first()
        return Served(
            row.id,
            row.tenant,
            row.category,
            row.text,
            response_id,
            event.prompt if event is not None else None,
            event.similarity if event is not None else None,
            _ids(examples),
        )


def _ids(examples: str | None) -> tuple[int, ...]:
    return tuple(int(i) for i in (examples or "").split(",") if i.strip().isdigit())


def add_feedback(
    store: Store,
    served: Served,
    correct: bool,
    source: str,
    note: str,
    right_category: str | None = None,
) -> int:
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
        right_category=right_category,
    )
    with store.session() as session, session.begin():
        session.add(row)
        session.flush()
        return row.id


def feedback_pairs(
    store: Store, tenant: str | None = None
) -> dict[str, list[tuple[str, str, int]]]:
    """Verdicts as labelled pairs, per tenant: (cached prompt, prompt, 1 if right else 0).
    Verdicts without a second text (an exact repeat) teach nothing and are left out."""
    query = select(Feedback.tenant, Feedback.entry_text, Feedback.prompt, Feedback.correct)
    if tenant is not None:
        query = query.where(Feedback.tenant == tenant)
    pairs: dict[str, list[tuple[str, str, int]]] = {}
    with store.session() as session:
        for owner, cached, prompt, correct in session.execute(query.order_by(Feedback.id)):
            if prompt and prompt != cached:
                pairs.setdefault(owner, []).append((cached, prompt, int(correct)))
    return pairs


def category_labels(store: Store) -> list[tuple[str, str]]:
    """(prompt, category) for every verdict that named the category a prompt should have
    had, oldest first: the judged prompt, or the entry's when the prompt was not logged."""
    with store.session() as session:
        rows = session.execute(
            select(Feedback.prompt, Feedback.entry_text, Feedback.right_category)
            .where(Feedback.right_category.is_not(None))
            .order_by(Feedback.id)
        )
        return [(prompt or text, str(category)) for prompt, text, category in rows]
