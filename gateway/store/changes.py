"""The change log (`changes`): written in the transaction of each change, read by every
process from its own watermark. Ids come from a sequence, so a transaction that began
earlier may commit a lower id later: readers re-read an overlap below their watermark and
skip the ids they applied (`ChangeReader`)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session

from gateway.store.models import Change

if TYPE_CHECKING:  # the store's queries log their changes here
    from gateway.store.queries import Partition, Store

CHANNEL = "gateway_changes"  # PostgreSQL NOTIFY channel, signalled at every commit of one
OVERLAP = 1024  # change ids re-read below the watermark
IDS_PER_ROW = 500
BATCH = 2000  # change ids, and rows, read at once

# (entry id, tenant, namespace, category): what the indexes need to forget a removed entry.
Removed = tuple[int, str, str, str]


@dataclass(frozen=True)
class Logged:
    id: int
    kind: str
    partition: Partition | None  # of entry changes
    entry_ids: tuple[int, ...]
    detail: str | None


def log_entries(session: Session, kind: str, rows: Iterable[Removed]) -> None:
    """One change row per partition (and per IDS_PER_ROW ids) of `rows`."""
    by_partition: dict[tuple[str, str, str], list[int]] = {}
    for entry_id, tenant, namespace, category in rows:
        by_partition.setdefault((tenant, namespace, category), []).append(entry_id)
    now = time.time()
    for (tenant, namespace, category), ids in by_partition.items():
        for start in range(0, len(ids), IDS_PER_ROW):
            chunk = ",".join(str(i) for i in ids[start : start + IDS_PER_ROW])
            session.add(Change(ts=now, kind=kind, tenant=tenant, namespace=namespace,
                               category=category, entry_ids=chunk))  # fmt: skip
    if by_partition:
        _notify(session)


def log_change(session: Session, kind: str, detail: str) -> None:
    session.add(Change(ts=time.time(), kind=kind, detail=detail))
    _notify(session)


def _notify(session: Session) -> None:
    """On PostgreSQL, wake the listeners when this transaction commits."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": CHANNEL})


def last_change_id(store: Store) -> int:
    with store.session() as session:
        return int(session.scalar(select(func.max(Change.id))) or 0)


def change_ids_after(store: Store, after_id: int, *, limit: int = BATCH) -> list[int]:
    """The ids logged after `after_id`, oldest first: what a reader compares with what it
    has applied, without reading the rows again."""
    query = select(Change.id).where(Change.id > after_id).order_by(Change.id).limit(limit)
    with store.session() as session:
        return [int(i) for i in session.scalars(query)]


def changes_by_id(store: Store, ids: list[int]) -> list[Logged]:
    """The changes `ids` (at most BATCH), in id order."""
    from gateway.store.queries import Partition

    if not ids:
        return []
    query = select(Change).where(Change.id.in_(ids)).order_by(Change.id)
    with store.session() as session:
        return [
            Logged(
                row.id,
                row.kind,
                Partition(row.tenant, row.namespace or "", row.category)
                if row.tenant is not None and row.category is not None
                else None,
                tuple(int(i) for i in (row.entry_ids or "").split(",") if i),
                row.detail,
            )
            for row in session.scalars(query)
        ]


def forget_changes(store: Store, before: float) -> int:
    """Drops the log older than `before` (a process that was away longer reconciles its
    indexes with the store at start instead)."""
    with store.session() as session, session.begin():
        result = session.execute(delete(Change).where(Change.ts < before))
        return int(result.rowcount)  # type: ignore[attr-defined]


class ChangeReader:
    """Reads the log from a watermark, each change once. Each read asks for the ids above
    the overlap below the watermark, and reads in full only the rows it has not applied."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.watermark: int | None = None
        self._applied: set[int] = set()

    def start(self) -> None:
        """From now: what is logged from here on (what is visible now counts as read)."""
        self.watermark = last_change_id(self.store)
        self._applied = set(change_ids_after(self.store, max(0, self.watermark - OVERLAP)))

    def read(self) -> list[Logged]:
        """The changes not read before, in id order (blocking)."""
        if self.watermark is None:
            self.start()
            return []
        low = max(0, self.watermark - OVERLAP)
        fresh: list[Logged] = []
        while True:
            ids = change_ids_after(self.store, low)
            fresh += changes_by_id(self.store, [i for i in ids if i not in self._applied])
            if len(ids) < BATCH:
                break
            low = ids[-1]
        for row in fresh:
            self._applied.add(row.id)
            self.watermark = max(self.watermark, row.id)
        floor = self.watermark - OVERLAP
        self._applied = {i for i in self._applied if i > floor}
        return fresh
