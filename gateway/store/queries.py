"""Reading and writing the store. Every method is one short transaction, safe to call
from worker threads (each opens its own session)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import ColumnElement, Engine, case, delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from gateway.store.changes import log_entries
from gateway.store.models import CacheEntry, RequestEvent

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Partition:
    """Entries of different partitions never meet: one index each."""

    tenant: str
    namespace: str
    category: str


@dataclass(frozen=True)
class NewEntry:
    partition: Partition
    model_family: str
    text: str
    context_hash: str
    request_json: str
    response_json: str
    embedding: FloatArray
    embedding_model: str
    created_at: float
    expires_at: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    upstream_model: str = ""
    request_hash: str = ""
    answered_tier: str = ""  # small or large: the tier of the model that answered


@dataclass(frozen=True)
class NewEvent:
    ts: float
    tenant: str
    category: str
    outcome: str
    latency_ms: float
    similarity: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    model: str = ""
    entry_id: int | None = None
    category_step: str = ""
    threshold: float | None = None
    requested_model: str = ""
    upstream_ms: float | None = None
    response_id: str | None = None
    prompt: str | None = None
    bypass_reason: str | None = None
    request_id: str | None = None
    route: str | None = None
    route_reason: str | None = None
    examples: str | None = None
    routing_saved_usd: float | None = None


def encode_vector(vector: FloatArray) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def decode_vectors(blobs: Sequence[bytes], dim: int) -> FloatArray:
    joined = b"".join(blobs)
    return np.frombuffer(joined, dtype="<f4").reshape(len(blobs), dim).astype(np.float32)


class Store:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._session = sessionmaker(engine, expire_on_commit=False)

    def session(self) -> Session:
        return self._session()

    def add_entry(self, new: NewEntry) -> int:
        """Commit one entry and return its id. The commit is durable when this returns."""
        row = CacheEntry(
            tenant=new.partition.tenant,
            namespace=new.partition.namespace,
            category=new.partition.category,
            model_family=new.model_family,
            text=new.text,
            context_hash=new.context_hash,
            request_hash=new.request_hash,
            request_json=new.request_json,
            response_json=new.response_json,
            embedding=encode_vector(new.embedding),
            embedding_model=new.embedding_model,
            embedding_dim=int(new.embedding.shape[-1]),
            created_at=new.created_at,
            expires_at=new.expires_at,
            hit_count=0,
            prompt_tokens=new.prompt_tokens,
            completion_tokens=new.completion_tokens,
            cost_usd=new.cost_usd,
            upstream_model=new.upstream_model,
            answered_tier=new.answered_tier,
        )
        with self._session.begin() as session:
            session.add(row)
            session.flush()
            partition = new.partition
            log_entries(
                session,
                "entry",
                [(row.id, partition.tenant, partition.namespace, partition.category)],
            )
            return row.id

    def get_entry(self, entry_id: int) -> CacheEntry | None:
        with self._session() as session:
            return session.get(CacheEntry, entry_id)

    def delete_entries(self, entry_ids: Iterable[int]) -> int:
        ids = list(entry_ids)
        if not ids:
            return 0
        columns = (CacheEntry.id, CacheEntry.tenant, CacheEntry.namespace, CacheEntry.category)
        with self._session.begin() as session:
            rows = [
                tuple(r) for r in session.execute(select(*columns).where(CacheEntry.id.in_(ids)))
            ]
            result = session.execute(delete(CacheEntry).where(CacheEntry.id.in_(ids)))
            log_entries(session, "removed", rows)  # type: ignore[arg-type]
            return int(result.rowcount)  # type: ignore[attr-defined]

    def partitions(self) -> list[Partition]:
        query = select(CacheEntry.tenant, CacheEntry.namespace, CacheEntry.category).distinct()
        with self._session() as session:
            return [Partition(*row) for row in session.execute(query)]

    def entry_ids(self, partition: Partition) -> set[int]:
        query = select(CacheEntry.id).where(*_in_partition(partition))
        with self._session() as session:
            return set(session.scalars(query))

    def embeddings(
        self,
        partition: Partition,
        *,
        ids: Iterable[int] | None = None,
        chunk: int = 4096,
        up_to: int | None = None,
    ) -> Iterator[tuple[list[int], list[str], list[bytes], list[str]]]:
        """Chunks of (ids, texts, embedding blobs, embedding model ids) in id order (ids up
        to `up_to` only, when given)."""
        wanted = sorted(ids) if ids is not None else None
        last = 0
        while True:
            query = (
                select(
                    CacheEntry.id, CacheEntry.text, CacheEntry.embedding, CacheEntry.embedding_model
                )
                .where(*_in_partition(partition), CacheEntry.id > last)
                .order_by(CacheEntry.id)
                .limit(chunk)
            )
            if up_to is not None:
                query = query.where(CacheEntry.id <= up_to)
            if wanted is not None:
                batch = [i for i in wanted if i > last][:chunk]
                if not batch:
                    return
                query = query.where(CacheEntry.id.in_(batch))
            with self._session() as session:
                rows = session.execute(query).all()
            if not rows:
                return
            yield (
                [r[0] for r in rows],
                [r[1] for r in rows],
                [r[2] for r in rows],
                [r[3] for r in rows],
            )
            last = rows[-1][0]

    def replace_embeddings(
        self, entry_ids: Sequence[int], vectors: FloatArray, model_id: str
    ) -> None:
        """Store embeddings of another model for these entries (after a model change)."""
        with self._session.begin() as session:
            for entry_id, vector in zip(entry_ids, vectors, strict=True):
                session.execute(
                    update(CacheEntry)
                    .where(CacheEntry.id == entry_id)
                    .values(
                        embedding=encode_vector(vector),
                        embedding_model=model_id,
                        embedding_dim=int(vector.shape[-1]),
                    )
                )

    def event_costs(self) -> list[tuple[Any, ...]]:
        """(response id, entry id, upstream ms, cost, prompt and completion tokens, routing
        saved) of every event: what `gateway replay` joins its answers with."""
        columns = (
            RequestEvent.response_id,
            RequestEvent.entry_id,
            RequestEvent.upstream_ms,
            RequestEvent.cost_usd,
            RequestEvent.prompt_tokens,
            RequestEvent.completion_tokens,
            RequestEvent.routing_saved_usd,
        )
        with self._session() as session:
            return [tuple(r) for r in session.execute(select(*columns))]

    def last_entry_id(self) -> int:
        with self._session() as session:
            return int(session.scalar(select(func.max(CacheEntry.id))) or 0)

    def count_entries(self) -> int:
        with self._session() as session:
            return int(session.scalar(select(func.count(CacheEntry.id))) or 0)

    def over_quota(self, quotas: dict[str, int]) -> list[tuple[str, str]]:
        """(tenant, category) of every tenant past its category's quota, by GROUP BY (only
        the groups past the smallest quota come back)."""
        if not quotas:
            return []
        count = func.count(CacheEntry.id)
        query = (
            select(CacheEntry.tenant, CacheEntry.category, count)
            .group_by(CacheEntry.tenant, CacheEntry.category)
            .having(count > min(quotas.values()))
        )
        with self._session() as session:
            return [
                (tenant, category)
                for tenant, category, count in session.execute(query)
                if category in quotas and count > quotas[category]
            ]

    def trim(
        self, tenant: str, category: str, quota: int, eviction: str, *, keep: int | None = None
    ) -> list[tuple[int, str]]:
        """Delete the entries of (tenant, category) past `quota`, those `eviction` ranks
        first: lru least recently used (hit or stored), lfu fewest hits, fifo oldest; never
        `keep` (the entry just stored: under lfu it has no hits yet and would always go
        first). One statement keeps the `quota` best entries it sees and deletes the rest,
        so concurrent trims (each statement its own snapshot on PostgreSQL) never take the
        partition below its quota. Returns the (id, namespace) of each, for the indexes."""
        mine = (CacheEntry.tenant == tenant, CacheEntry.category == category)
        with self._session() as session:  # the common case: within quota, nothing to rank
            if int(session.scalar(select(func.count(CacheEntry.id)).where(*mine)) or 0) <= quota:
                return []
        used = func.coalesce(CacheEntry.last_hit_at, CacheEntry.created_at)
        kept_first = {
            "lru": (used.desc(), CacheEntry.id.desc()),
            "lfu": (CacheEntry.hit_count.desc(), used.desc(), CacheEntry.id.desc()),
            "fifo": (CacheEntry.created_at.desc(), CacheEntry.id.desc()),
        }[eviction]
        keep_it = case((CacheEntry.id == (keep if keep is not None else -1), 0), else_=1)
        past = select(CacheEntry.id).where(*mine).order_by(keep_it, *kept_first).offset(quota)
        statement = (
            delete(CacheEntry)
            .where(CacheEntry.id.in_(past))
            .returning(CacheEntry.id, CacheEntry.namespace)
            .execution_options(synchronize_session=False)
        )
        with self._session.begin() as session:
            victims = [(int(r[0]), str(r[1])) for r in session.execute(statement)]
            log_entries(session, "removed", [(i, tenant, ns, category) for i, ns in victims])
        return victims

    def record_event(self, new: NewEvent) -> int:
        row = RequestEvent(**vars(new))
        with self._session.begin() as session:
            session.add(row)
            session.flush()
            return row.id


def _in_partition(partition: Partition) -> tuple[ColumnElement[bool], ...]:
    """The entries of a partition's index: demoted entries are never indexed."""
    return (
        CacheEntry.tenant == partition.tenant,
        CacheEntry.namespace == partition.namespace,
        CacheEntry.category == partition.category,
        CacheEntry.demoted_at.is_(None),
    )
