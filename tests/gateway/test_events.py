"""Request events: journaled before they are batched, so a killed process loses none."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from gateway.store import open_store
from gateway.store.events import EventWriter, HitUpdate
from gateway.store.journal import Journal
from gateway.store.models import RequestEvent
from gateway.store.queries import NewEvent, Store
from tests.support.stores import store_url


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(store_url(tmp_path / "gateway.db"))
    yield opened
    opened.engine.dispose()


def _events(n: int, start: int = 0) -> list[NewEvent]:
    return [
        NewEvent(ts=float(i), tenant="t", category="default", outcome="miss", latency_ms=1.0)
        for i in range(start, start + n)
    ]


def _rows(store: Store) -> int:
    with store.session() as session:
        return int(session.scalar(select(func.count(RequestEvent.id))) or 0)


def test_events_of_a_killed_process_are_written_at_the_next_start(
    store: Store, tmp_path: Path
) -> None:
    journal_dir = tmp_path / "events"

    async def killed() -> None:
        writer = EventWriter(store, journal=Journal(journal_dir))
        for event in _events(50):
            writer.put(event)
        writer.put(HitUpdate(entry_id=1, at=1.0, expires_at=None))
        # killed before the writer ran: no flush, no close
        assert writer._task is not None
        writer._task.cancel()

    asyncio.run(killed())
    assert _rows(store) == 0
    (segment,) = Journal(journal_dir).leftover()
    with segment.open("ab") as cut:
        cut.write(b'{"kind": "NewEvent", "ts": 1')  # the last line, cut short by the kill

    async def restarted() -> int:
        writer = EventWriter(store, journal=Journal(journal_dir))
        replayed = await writer.replay()
        await writer.aclose()
        return replayed

    assert asyncio.run(restarted()) == 51
    assert _rows(store) == 50
    assert Journal(journal_dir).leftover() == []


def test_a_segment_committed_just_before_a_kill_is_not_written_twice(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal_dir = tmp_path / "events"

    async def committed_then_killed() -> None:
        writer = EventWriter(store, journal=Journal(journal_dir))
        # the kill lands between the commit and the deletion of the segment file
        monkeypatch.setattr(Journal, "remove", staticmethod(lambda path: None))
        for event in _events(20):
            writer.put(event)
        await writer.flush()

    asyncio.run(committed_then_killed())
    monkeypatch.undo()
    assert _rows(store) == 20 and len(Journal(journal_dir).leftover()) == 1

    async def restarted() -> None:
        writer = EventWriter(store, journal=Journal(journal_dir))
        await writer.replay()
        writer.put(_events(1, start=20)[0])
        await writer.aclose()

    asyncio.run(restarted())
    assert _rows(store) == 21
    assert Journal(journal_dir).leftover() == []


def test_a_full_queue_drops_and_counts_instead_of_growing(store: Store) -> None:
    dropped: list[None] = []

    async def burst() -> EventWriter:
        writer = EventWriter(store, capacity=3, on_drop=lambda: dropped.append(None))
        for event in _events(5):
            writer.put(event)
        await writer.aclose()
        return writer

    writer = asyncio.run(burst())
    assert writer.dropped == 2 and len(dropped) == 2
    assert _rows(store) == 3


def test_a_store_down_at_shutdown_leaves_the_events_journaled(store: Store, tmp_path: Path) -> None:
    journal_dir = tmp_path / "events"

    async def down_at_shutdown() -> None:
        down = open_store(store_url(tmp_path / "down.db", migrated=False), migrate=False)
        writer = EventWriter(down, journal=Journal(journal_dir))
        writer.put(_events(1)[0])
        await writer.aclose(grace_s=0.5)  # returns: shutdown goes on

    asyncio.run(down_at_shutdown())
    assert _rows(store) == 0
    assert len(Journal(journal_dir).leftover()) == 1
    restored = open_store(store_url(tmp_path / "restored.db"))
    try:

        async def restarted() -> int:
            writer = EventWriter(restored, journal=Journal(journal_dir))
            replayed = await writer.replay()
            await writer.aclose()
            return replayed

        assert asyncio.run(restarted()) == 1
        assert _rows(restored) == 1
    finally:
        restored.engine.dispose()
