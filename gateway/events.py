"""Writing request events and hit counters off the request path, in batches.

One transaction per batch instead of two per request: on SQLite with full sync, each
commit is an fsync, which would otherwise bound the hit rate. Events queued when the
process stops are flushed by `aclose`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass

from sqlalchemy import update

from gateway.store.models import CacheEntry, RequestEvent
from gateway.store.queries import NewEvent, Store

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HitUpdate:
    entry_id: int
    at: float
    expires_at: float | None  # a new expiry (sliding TTL), or None to keep it


class EventWriter:
    """Use from one event loop. `max_batch` bounds one transaction; `capacity` bounds what
    waits (while the store is down, say): past it, events are dropped and counted."""

    def __init__(
        self,
        store: Store,
        *,
        executor: Executor | None = None,
        max_batch: int = 500,
        capacity: int = 10_000,
        on_drop: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._executor = executor
        self._max_batch = max_batch
        self._queue: asyncio.Queue[NewEvent | HitUpdate] = asyncio.Queue(capacity)
        self._task: asyncio.Task[None] | None = None
        self._on_drop = on_drop
        self.written = 0
        self.dropped = 0

    def put(self, item: NewEvent | HitUpdate) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="event-writer")
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.dropped += 1
            if self._on_drop is not None:
                self._on_drop()

    async def flush(self) -> None:
        """Wait until everything queued so far is committed."""
        await self._queue.join()

    async def aclose(self) -> None:
        if self._task is not None:
            await self.flush()
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty() and len(batch) < self._max_batch:
                batch.append(self._queue.get_nowait())
            try:
                await loop.run_in_executor(self._executor, self._write, batch)
                self.written += len(batch)
            except Exception:
                logger.exception("could not write %d events", len(batch))
            finally:
                for _ in batch:
                    self._queue.task_done()

    def _write(self, batch: list[NewEvent | HitUpdate]) -> None:
        events = [item for item in batch if isinstance(item, NewEvent)]
        hits = [item for item in batch if isinstance(item, HitUpdate)]
        counts = Counter(h.entry_id for h in hits)
        last = {h.entry_id: h for h in hits}
        with self._store.session() as session, session.begin():
            session.add_all(RequestEvent(**vars(event)) for event in events)
            for entry_id, hit in last.items():
                values: dict[str, object] = {
                    "hit_count": CacheEntry.hit_count + counts[entry_id],
                    "last_hit_at": hit.at,
                }
                if hit.expires_at is not None:
                    values["expires_at"] = hit.expires_at
                session.execute(
                    update(CacheEntry).where(CacheEntry.id == entry_id).values(**values)
                )
