"""The durable store: SQLAlchemy models, queries, and migrations to apply at start."""

from sqlalchemy.exc import SQLAlchemyError as StoreError  # any failure of the database

from gateway.settings import sqlite_path
from gateway.store.database import open_engine
from gateway.store.migrate import upgrade
from gateway.store.models import Base, CacheEntry, RequestEvent
from gateway.store.queries import NewEntry, NewEvent, Partition, Store, decode_vectors

__all__ = [
    "Base",
    "CacheEntry",
    "NewEntry",
    "NewEvent",
    "Partition",
    "RequestEvent",
    "Store",
    "StoreError",
    "decode_vectors",
    "open_engine",
    "open_store",
    "sqlite_path",
    "upgrade",
]


def open_store(url: str, *, migrate: bool = True) -> Store:
    """Open the store at `url`, applying pending migrations first unless told not to."""
    engine = open_engine(url)
    if migrate:
        upgrade(engine)
    return Store(engine)
