"""The store's tables. Change them only together with a revision in `migrations/`."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Dialect,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    false,
)
from sqlalchemy import String as _String
from sqlalchemy import Text as _Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class String(TypeDecorator[str]):
    """VARCHAR that takes any Python string, the same on both stores: PostgreSQL refuses NUL
    characters and values past the declared length, SQLite takes both. NUL is stored as
    U+FFFD, and a value past the length is cut to it (an upstream's response id, say),
    in writes and in the comparisons of queries alike."""

    impl = _String
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if not isinstance(value, str):
            return value
        length = getattr(self.impl, "length", None)
        return (
            value.replace("\x00", "\ufffd")[:length] if length else value.replace("\x00", "\ufffd")
        )


class Text(String):
    """TEXT, with the same NUL rule as `String`."""

    impl = _Text
    cache_ok = True


NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# Ids are 64-bit on every database (SQLite's INTEGER already is; PostgreSQL's is 32-bit): an
# events table outgrows 2^31 rows, and ids from a client are checked against 64 bits.
Id = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class CacheEntry(Base):
    """One cached answer. Times are Unix seconds (UTC), the same in SQLite and PostgreSQL."""

    __tablename__ = "cache_entries"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(64))
    namespace: Mapped[str] = mapped_column(String(128), default="")
    category: Mapped[str] = mapped_column(String(64))
    model_family: Mapped[str] = mapped_column(String(128))
    text: Mapped[str] = mapped_column(Text)  # what was embedded
    context_hash: Mapped[str] = mapped_column(String(64))
    # Hash of the whole normalised request: the exact-match tier, no embedding needed.
    request_hash: Mapped[str] = mapped_column(String(64), default="", server_default="")
    request_json: Mapped[str] = mapped_column(Text)
    response_json: Mapped[str] = mapped_column(Text)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)  # float32, little-endian
    embedding_model: Mapped[str] = mapped_column(String(128))
    embedding_dim: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_hit_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    hit_count: Mapped[int] = mapped_column(Integer, default=0)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    upstream_model: Mapped[str] = mapped_column(String(128), default="")
    # Marked wrong through feedback: out of the index (no semantic hits), exact hits only.
    demoted_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    # The tier of the model that answered: only large answers become in-context examples.
    answered_tier: Mapped[str] = mapped_column(String(8), default="", server_default="")
    # As an in-context example: judged uses that helped and did not (its utility), and
    # retired by `gateway refine` when it never helps.
    example_good: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    example_bad: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    example_retired: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    __table_args__ = (
        Index("ix_cache_entries_partition", "tenant", "namespace", "category", "id"),
        Index("ix_cache_entries_expires_at", "expires_at"),
        Index("ix_cache_entries_exact", "tenant", "namespace", "request_hash"),
        Index("ix_cache_entries_quota", "tenant", "category", "created_at"),
    )


class RequestEvent(Base):
    """One row per request the gateway answered, whatever the outcome."""

    __tablename__ = "request_events"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    ts: Mapped[float] = mapped_column(Float)
    tenant: Mapped[str] = mapped_column(String(64))
    category: Mapped[str] = mapped_column(String(64))
    # What decided the category: header, rule, prototype or default.
    category_step: Mapped[str] = mapped_column(String(16), default="", server_default="")
    # The effective (load-adapted) similarity threshold the lookup used.
    threshold: Mapped[float | None] = mapped_column(Float, nullable=True)
    outcome: Mapped[str] = mapped_column(String(16))  # hit_exact, hit_semantic, miss, bypass, error
    similarity: Mapped[float | None] = mapped_column(Float, nullable=True)
    latency_ms: Mapped[float] = mapped_column(Float)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    model: Mapped[str] = mapped_column(String(128), default="")
    # A plain column, not a foreign key: events are a log and outlive purged entries.
    entry_id: Mapped[int | None] = mapped_column(Id, nullable=True)
    requested_model: Mapped[str] = mapped_column(String(128), default="", server_default="")
    upstream_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    response_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    # The prompt of a semantic hit (kept like entry texts), so feedback on it is a labelled pair.
    prompt: Mapped[str | None] = mapped_column(Text, nullable=True)
    bypass_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    # Misses of a route: the member that answered (small or large), why, the in-context
    # examples given (entry ids, comma-separated) and what the small member saved.
    route: Mapped[str | None] = mapped_column(String(16), nullable=True)
    route_reason: Mapped[str | None] = mapped_column(String(16), nullable=True)
    examples: Mapped[str | None] = mapped_column(String(256), nullable=True)
    routing_saved_usd: Mapped[float | None] = mapped_column(Float, nullable=True)

    __table_args__ = (
        Index("ix_request_events_ts", "ts"),
        Index("ix_request_events_response_id", "response_id"),
        Index("ix_request_events_entry_id", "entry_id"),
    )


class Feedback(Base):
    """A served hit judged right or wrong: labelled data for calibration and training."""

    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    ts: Mapped[float] = mapped_column(Float)
    tenant: Mapped[str] = mapped_column(String(64))
    entry_id: Mapped[int] = mapped_column(Id)
    response_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    correct: Mapped[bool] = mapped_column(Boolean)
    category: Mapped[str] = mapped_column(String(64))
    similarity: Mapped[float | None] = mapped_column(Float, nullable=True)
    prompt: Mapped[str | None] = mapped_column(Text, nullable=True)
    entry_text: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(16))  # admin or tenant
    # The category the judged prompt should have had (`gateway train-classifier` learns it).
    right_category: Mapped[str | None] = mapped_column(String(64), nullable=True)
    note: Mapped[str] = mapped_column(Text, default="", server_default="")

    __table_args__ = (Index("ix_feedback_ts", "ts"),)


class PolicyOverride(Base):
    """A category policy changed through the admin API; wins over the policy files."""

    __tablename__ = "policy_overrides"

    category: Mapped[str] = mapped_column(String(64), primary_key=True)
    policy_json: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[float] = mapped_column(Float)


class ActiveModel(Base):
    """The similarity model activated through the admin API (one row): wins over the
    configuration at start, so that a restart serves the version last activated."""

    __tablename__ = "active_model"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    choice: Mapped[str] = mapped_column(Text)  # trained, base, or a model directory
    model_id: Mapped[str] = mapped_column(String(128))
    activated_at: Mapped[float] = mapped_column(Float)


class JournalSegment(Base):
    """A segment of the event journal whose events are committed: replaying the journal
    after a crash skips it, so no event is written twice."""

    __tablename__ = "journal_segments"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    written_at: Mapped[float] = mapped_column(Float)


class Change(Base):
    """The change log: every change to what the caches serve (entries stored, removed or
    demoted, policies changed, a model activated), written in the transaction that makes
    it. Every gateway process follows it from its own watermark, so what one replica does
    reaches the indexes, policies and model of the others; on PostgreSQL a NOTIFY at
    commit wakes them at once."""

    __tablename__ = "changes"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    ts: Mapped[float] = mapped_column(Float, index=True)
    kind: Mapped[str] = mapped_column(String(16))  # entry, removed, demoted, policy, model
    tenant: Mapped[str | None] = mapped_column(String(64), nullable=True)
    namespace: Mapped[str | None] = mapped_column(String(128), nullable=True)
    category: Mapped[str | None] = mapped_column(String(64), nullable=True)
    entry_ids: Mapped[str | None] = mapped_column(Text, nullable=True)  # comma-separated
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)  # a category, a model
