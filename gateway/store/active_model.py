"""Which similarity model the gateway serves, when an operator activated one."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import select

from gateway.store.changes import log_change
from gateway.store.models import ActiveModel, CacheEntry
from gateway.store.queries import Store


@dataclass(frozen=True)
class Activation:
    choice: str
    model_id: str
    activated_at: float


def active_model(store: Store) -> Activation | None:
    with store.session() as session:
        row = session.get(ActiveModel, 1)
        return Activation(row.choice, row.model_id, row.activated_at) if row else None


def activate(store: Store, choice: str, model_id: str) -> None:
    with store.session() as session, session.begin():
        row = session.get(ActiveModel, 1)
        if row is None:
            session.add(
                ActiveModel(id=1, choice=choice, model_id=model_id, activated_at=time.time())
            )
        else:
            row.choice, row.model_id, row.activated_at = choice, model_id, time.time()
        log_change(session, "model", choice)


def stale_ids(store: Store, model_id: str, *, batch: int = 1000) -> Iterator[list[int]]:
    """Ids of entries embedded by another model than `model_id`, a batch at a time."""
    after = 0
    while True:
        with store.session() as session:
            ids = list(
                session.scalars(
                    select(CacheEntry.id)
                    .where(CacheEntry.id > after, CacheEntry.embedding_model != model_id)
                    .order_by(CacheEntry.id)
                    .limit(batch)
                )
            )
        if not ids:
            return
        yield ids
        after = ids[-1]
