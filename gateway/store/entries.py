"""Finding, listing and removing cache entries by domain values: callers say which entries
(an `EntryFilter`), never how to query for them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields

from sqlalchemy import ColumnElement, delete, select, update

from gateway.store.changes import Removed, log_entries
from gateway.store.models import CacheEntry
from gateway.store.queries import Store


@dataclass(frozen=True)
class EntryFilter:
    """Which entries: every field given must match; none given means every entry."""

    tenant: str | None = None
    namespace: str | None = None
    category: str | None = None
    model: str | None = None
    created_before: float | None = None
    created_after: float | None = None
    expired_at: float | None = None  # entries whose expiry is at or before this moment
    entry_id: int | None = None

    def where(self) -> list[ColumnElement[bool]]:
        where: list[ColumnElement[bool]] = []
        for value, column in (
            (self.tenant, CacheEntry.tenant),
            (self.namespace, CacheEntry.namespace),
            (self.category, CacheEntry.category),
            (self.model, CacheEntry.model_family),
        ):
            if value is not None:
                where.append(column == value)
        if self.created_before is not None:
            where.append(CacheEntry.created_at <= self.created_before)
        if self.created_after is not None:
            where.append(CacheEntry.created_at >= self.created_after)
        if self.expired_at is not None:
            where += [CacheEntry.expires_at.is_not(None), CacheEntry.expires_at <= self.expired_at]
        if self.entry_id is not None:
            where.append(CacheEntry.id == self.entry_id)
        return where


@dataclass(frozen=True, slots=True)
class LookupEntry:
    """What a lookup reads of an entry (not its vector or request): read with SQLAlchemy
    Core, no ORM objects on the request path."""

    id: int
    category: str
    model_family: str
    text: str
    context_hash: str
    response_json: str
    expires_at: float | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    answered_tier: str
    example_good: float
    example_bad: float
    example_retired: bool


_LOOKUP_COLUMNS = [CacheEntry.__table__.c[f.name] for f in fields(LookupEntry)]


def exact_entry(
    store: Store, tenant: str, namespace: str, request_hash: str, model: str, now: float
) -> LookupEntry | None:
    """The newest live entry of this exact request (demoted or not)."""
    found = exact_entries(store, tenant, namespace, request_hash, model, now, 1)
    return found[0] if found else None


def exact_entries(
    store: Store,
    tenant: str,
    namespace: str,
    request_hash: str,
    model: str,
    now: float,
    limit: int,
) -> list[LookupEntry]:
    """The newest `limit` live entries of this exact request (demoted or not), newest
    first: a category's pool of answers."""
    query = (
        select(*_LOOKUP_COLUMNS)
        .where(
            CacheEntry.tenant == tenant,
            CacheEntry.namespace == namespace,
            CacheEntry.request_hash == request_hash,
            CacheEntry.model_family == model,
            (CacheEntry.expires_at.is_(None)) | (CacheEntry.expires_at > now),
        )
        .order_by(CacheEntry.id.desc())
        .limit(limit)
    )
    with store.engine.connect() as connection:
        return [LookupEntry(*row) for row in connection.execute(query)]


def lookup_entries(store: Store, ids: Iterable[int]) -> dict[int, LookupEntry]:
    """The undemoted entries of `ids`, by id: what a semantic lookup may serve or lend as
    an example (an index of another process may still hold a demoted one)."""
    query = select(*_LOOKUP_COLUMNS).where(
        CacheEntry.id.in_(list(ids)), CacheEntry.demoted_at.is_(None)
    )
    with store.engine.connect() as connection:
        return {row[0]: LookupEntry(*row) for row in connection.execute(query)}


def entries_by_id(
    store: Store, ids: Iterable[int], matching: EntryFilter | None = None
) -> dict[int, CacheEntry]:
    """The entries of `ids` (that match the filter), by id."""
    where = matching.where() if matching is not None else []
    with store.session() as session:
        rows = session.scalars(select(CacheEntry).where(CacheEntry.id.in_(list(ids)), *where))
        return {row.id: row for row in rows}


def page_of_entries(
    store: Store, matching: EntryFilter, *, after: int, limit: int
) -> list[CacheEntry]:
    """A page of matching entries in id order, after the id `after`."""
    query = (
        select(CacheEntry)
        .where(CacheEntry.id > after, *matching.where())
        .order_by(CacheEntry.id)
        .limit(limit)
    )
    with store.session() as session:
        return list(session.scalars(query))


def remove_entries(store: Store, matching: EntryFilter) -> list[Removed]:
    """Delete the matching entries in one transaction; what was deleted."""
    columns = (CacheEntry.id, CacheEntry.tenant, CacheEntry.namespace, CacheEntry.category)
    with store.session() as session, session.begin():
        rows = [
            (r[0], r[1], r[2], r[3])
            for r in session.execute(select(*columns).where(*matching.where()))
        ]
        ids = [row[0] for row in rows]
        for start in range(0, len(ids), 500):
            session.execute(delete(CacheEntry).where(CacheEntry.id.in_(ids[start : start + 500])))
        log_entries(session, "removed", rows)
        return rows


def demote_entry(store: Store, entry_id: int, now: float) -> Removed | None:
    """Mark an entry demoted (kept for its own exact request only); None if there is none."""
    with store.session() as session, session.begin():
        row = session.get(CacheEntry, entry_id)
        if row is None:
            return None
        row.demoted_at = row.demoted_at or now
        demoted = (row.id, row.tenant, row.namespace, row.category)
        log_entries(session, "demoted", [demoted])
        return demoted


def credit_examples(
    store: Store, tenant: str, ids: Iterable[int], *, helped: bool, weight: float = 1.0
) -> int:
    """One judged use of in-context examples (the tenant's own): `weight` more uses that
    helped, or that did not. Returns how many entries it reached."""
    column = CacheEntry.example_good if helped else CacheEntry.example_bad
    query = (
        update(CacheEntry)
        .where(CacheEntry.id.in_(list(ids)), CacheEntry.tenant == tenant)
        .values({column: column + weight})
    )
    with store.session() as session, session.begin():
        result = session.execute(query)
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


def large_answers(store: Store, now: float, tenant: str | None = None) -> list[int]:
    """Ids of the live, undemoted entries a large model answered: `gateway refine` samples
    them."""
    query = select(CacheEntry.id).where(
        CacheEntry.answered_tier == "large",
        CacheEntry.demoted_at.is_(None),
        (CacheEntry.expires_at.is_(None)) | (CacheEntry.expires_at > now),
    )
    if tenant is not None:
        query = query.where(CacheEntry.tenant == tenant)
    with store.session() as session:
        return list(session.scalars(query.order_by(CacheEntry.id)))


def retire_examples(store: Store, *, after_uses: float) -> int:
    """Retire the examples judged at least `after_uses` times that never helped."""
    query = (
        update(CacheEntry)
        .where(
            CacheEntry.example_retired.is_(False),
            CacheEntry.example_good == 0,
            CacheEntry.example_bad >= after_uses,
        )
        .values(example_retired=True)
    )
    with store.session() as session, session.begin():
        result = session.execute(query)
        return int(result.rowcount or 0)  # type: ignore[attr-defined]
