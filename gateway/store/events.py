"""Writing request events and hit counters off the request path, in batches.

One transaction per batch instead of two per request: on SQLite with full sync, each
commit is an fsync, which would otherwise bound the hit rate. Events queued when the
process stops are flushed by `aclose`; with a journal (see `gateway.store.journal`), those of a
process that was killed are written at the next start. While the store is down, batches
are retried; past `capacity` events waiting, new ones are dropped and counted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select, update

from gateway.store.journal import Journal
from gateway.store.models import CacheEntry, JournalSegment, RequestEvent
from gateway.store.queries import NewEvent, Store

logger = logging.getLogger(__name__)

RETRY_S = (0.5, 1.0, 2.0, 5.0, 10.0)


@dataclass(frozen=True)
class HitUpdate:
    entry_id: int
    at: float
    expires_at: float | None  # a new expiry (sliding TTL), or None to keep it


Item = NewEvent | HitUpdate
_KINDS: dict[str, type[Item]] = {"NewEvent": NewEvent, "HitUpdate": HitUpdate}


class EventWriter:
    """Use from one event loop. `capacity` bounds the events waiting to be written."""

    def __init__(
        self,
        store: Store,
        *,
        executor: Executor | None = None,
        capacity: int = 10_000,
        on_drop: Callable[[], None] | None = None,
        journal: Journal | None = None,
    ) -> None:
        self._store = store
        self._executor = executor
        self._capacity = capacity
        self._on_drop = on_drop
        self._journal = journal
        self._waiting: list[Item] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self.written = 0
        self.dropped = 0

    def put(self, item: Item) -> None:
        if len(self._waiting) >= self._capacity:
            self.dropped += 1
            if self._on_drop is not None:
                self._on_drop()
            return
        if self._journal is not None:
            try:
                self._journal.append(item)
            except OSError:
                logger.exception("could not journal an event; it is still written")
        self._waiting.append(item)
        self._idle.clear()
        self._wake.set()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="event-writer")

    async def flush(self) -> None:
        """Wait until everything put so far is committed."""
        await self._idle.wait()

    async def aclose(self, grace_s: float = 30.0) -> None:
        """Write what is waiting (for at most `grace_s` seconds: with the store down, what
        is left stays in the journal for the next start), then stop."""
        if self._task is not None:
            if self._waiting or not self._idle.is_set():
                try:
                    await asyncio.wait_for(self.flush(), grace_s)
                except TimeoutError:
                    logger.error("the store did not take the last events: they stay journaled")
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._journal is not None:
            self._journal.close()

    async def replay(self) -> int:
        """Write the events of journal segments a crash left behind; how many there were."""
        if self._journal is None:
            return 0
        loop = asyncio.get_running_loop()
        count = 0
        for path in self._journal.leftover():
            items = [_decode(record) for record in self._journal.read(path)]
            await loop.run_in_executor(self._executor, self._write, items, path.name)
            self._journal.remove(path)
            count += len(items)
        await loop.run_in_executor(self._executor, self._forget_segments)
        return count

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            # Take every waiting event and close the segment holding exactly those, with no
            # await in between: a segment and a batch are the same events.
            batch, self._waiting = self._waiting, []
            segment = self._journal.rotate() if self._journal is not None else None
            name = segment.name if segment is not None else None
            attempt = 0
            while True:
                try:
                    await loop.run_in_executor(self._executor, self._write, batch, name)
                    break
                except Exception:
                    logger.exception("could not write %d events (try %d)", len(batch), attempt)
                    await asyncio.sleep(RETRY_S[min(attempt, len(RETRY_S) - 1)])
                    attempt += 1
            if segment is not None:
                self._journal.remove(segment)  # type: ignore[union-attr]
            self.written += len(batch)
            if not self._waiting:
                self._idle.set()

    def _write(self, batch: Iterable[Item], segment: str | None) -> None:
        items = list(batch)
        events = [item for item in items if isinstance(item, NewEvent)]
        hits = [item for item in items if isinstance(item, HitUpdate)]
        counts = Counter(h.entry_id for h in hits)
        last = {h.entry_id: h for h in hits}
        with self._store.session() as session, session.begin():
            if segment is not None:
                if session.get(JournalSegment, segment) is not None:
                    return  # committed before the crash; only its file was left
                now = time.time()
                # a name matters only until its file is deleted, just after this commit
                session.execute(delete(JournalSegment).where(JournalSegment.written_at < now - 60))
                session.add(JournalSegment(name=segment, written_at=now))
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

    def _forget_segments(self) -> None:
        """Segment names matter only while their files may exist: none do after a replay."""
        with self._store.session() as session, session.begin():
            if session.scalar(select(JournalSegment.name).limit(1)) is not None:
                session.execute(delete(JournalSegment))


def _decode(record: dict[str, Any]) -> Item:
    kind = _KINDS[record.pop("kind")]
    return kind(**record)


def journal_dir(index_dir: Path | None) -> Path | None:
    """Where the journal lives: beside the saved indexes (so beside a SQLite file)."""
    return None if index_dir is None else index_dir.with_name(index_dir.name + ".events")


def worker_journal(directory: Path | None, worker: int) -> Path | None:
    """The journal of one worker process: the first worker's is `directory` itself, so
    a single process keeps the layout it always had."""
    if directory is None or worker == 0:
        return directory
    return directory / f"worker-{worker}"


def orphan_journals(directory: Path, workers: int) -> list[Path]:
    """Journals of workers numbered `workers` or above: left by a larger pool, they have no
    process of their own to replay them."""
    found = []
    for path in directory.glob("worker-*"):
        number = path.name.removeprefix("worker-")
        if path.is_dir() and number.isdigit() and int(number) >= workers:
            found.append(path)
    return sorted(found)
