"""The exact tier in memory (`HotEntries`) and what keeps it true to the store; and a cache
of another process (`follow`, `reconcile_loaded`): on a real store and real indexes with
the fast test embedder."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from pathlib import Path

import pytest

from categories.load import Acceptance
from gateway.cache.hot import HotEntries
from gateway.cache.keys import RequestKey, parse_chat
from gateway.cache.semantic import Hit, SemanticCache
from gateway.settings import IndexParams
from gateway.store import NewEntry, Partition, open_store
from gateway.store.entries import EntryFilter
from tests.support.embedders import HashingEmbedder
from tests.support.stores import store_url

PARTITION = Partition("acme", "", "default")
ACCEPT = {"default": Acceptance(threshold=0.9, guard=False)}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_held_answers_are_bounded_by_bytes_least_recently_used_first_out() -> None:
    hot: HotEntries[str] = HotEntries(max_bytes=300, max_age_s=10)
    for number in range(3):
        hot.put(("t", "", f"h{number}", "m"), number, f"answer {number}", None, 100)
    assert hot.get(("t", "", "h0", "m"), now=0) == "answer 0"  # h0 is now the most recent
    hot.put(("t", "", "h3", "m"), 3, "answer 3", None, 100)
    assert hot.get(("t", "", "h1", "m"), now=0) is None  # the least recently used left
    assert hot.get(("t", "", "h0", "m"), now=0) == "answer 0"
    assert (len(hot), hot.bytes) == (3, 300)
    hot.put(("t", "", "big", "m"), 9, "too big", None, 301)
    assert hot.get(("t", "", "big", "m"), now=0) is None and len(hot) == 3


def test_held_answers_expire_and_are_read_again_after_their_age() -> None:
    clock = Clock()
    hot: HotEntries[str] = HotEntries(max_bytes=10_000, max_age_s=2.0, clock=clock)
    key = ("t", "", "h", "m")
    hot.put(key, 1, "answer", expires_at=100.0, size=10)
    assert hot.get(key, now=99.0) == "answer"
    clock.now = 2.5  # held longer than max_age_s: not served, but known to the store
    assert hot.get(key, now=99.0) is None and hot.known(key)
    hot.put(key, 1, "answer", expires_at=100.0, size=10)  # read again
    assert hot.get(key, now=99.0) == "answer"
    assert hot.get(key, now=100.0) is None and not hot.known(key)  # expired: gone


def test_forgotten_entries_and_replaced_answers_leave_memory() -> None:
    hot: HotEntries[str] = HotEntries(max_bytes=10_000, max_age_s=10)
    first, second = ("t", "", "a", "m"), ("t", "", "b", "m")
    hot.put(first, 1, "one", None, 10)
    hot.put(second, 2, "two", None, 10)
    hot.forget_entries([1, 99])
    assert hot.get(first, now=0) is None and hot.get(second, now=0) == "two"
    hot.put(second, 3, "newer", None, 10)  # another entry answers the request now
    hot.forget_entries([2])
    assert hot.get(second, now=0) == "newer"
    hot.extend(3, expires_at=5.0)  # a sliding TTL
    assert hot.get(second, now=5.0) is None
    assert hot.bytes == 0


def _key(text: str) -> RequestKey:
    return parse_chat({"model": "m", "messages": [{"role": "user", "content": text}]})


def _entry(embedder: HashingEmbedder, text: str, answer: str) -> NewEntry:
    key = _key(text)
    return NewEntry(
        partition=PARTITION,
        model_family="m",
        text=key.text,
        context_hash=key.context_hash,
        request_json=json.dumps({"q": text}),
        response_json=json.dumps({"choices": [{"message": {"content": answer}}]}),
        embedding=embedder.embed([key.text])[0],
        embedding_model=embedder.model_id,
        created_at=time.time(),
        request_hash=key.exact_hash,
    )


def _cache(store_url: str, embedder: HashingEmbedder) -> SemanticCache:
    hot: HotEntries[Hit] = HotEntries(1 << 20, 60.0)
    return SemanticCache(
        open_store(store_url), embedder, index_dir=None, params=IndexParams(), hot=hot
    )


def _answer(hit: Hit | None) -> str | None:
    return None if hit is None else str(hit.response["choices"][0]["message"]["content"])


def test_the_exact_tier_in_memory_follows_the_store_of_its_own_cache(tmp_path: Path) -> None:
    embedder = HashingEmbedder()
    cache = _cache(store_url(tmp_path / "g.db"), embedder)
    text = "how do I reset my router"

    async def scenario() -> None:
        first = await cache.put(_entry(embedder, text, "first"))
        now = time.time()
        assert _answer(cache.held_exact("acme", "", _key(text), now)) == "first"  # held at once
        cache.hot.clear()
        assert cache.held_exact("acme", "", _key(text), now) is None
        assert _answer(await cache.lookup_exact("acme", "", _key(text), now)) == "first"
        assert _answer(cache.held_exact("acme", "", _key(text), now)) == "first"  # read, held
        await cache.put(_entry(embedder, text, "second"))  # the newest entry answers
        assert _answer(cache.held_exact("acme", "", _key(text), now)) == "second"
        assert _answer(await cache.lookup_exact("acme", "", _key(text), now)) == "second"
        assert await cache.remove(EntryFilter(created_after=0)) == 2
        assert cache.held_exact("acme", "", _key(text), now) is None
        assert await cache.lookup_exact("acme", "", _key(text), now) is None
        assert first > 0

    asyncio.run(scenario())


def test_a_cache_follows_what_another_process_stored_and_deleted(tmp_path: Path) -> None:
    embedder = HashingEmbedder()
    url = store_url(tmp_path / "g.db")
    writer, reader = _cache(url, embedder), _cache(url, embedder)
    earlier, later = "what is the capital of peru", "who wrote the novel emma"

    async def found(cache: SemanticCache, text: str) -> str | None:
        vector = embedder.embed([_key(text).text])[0]
        result = await cache.lookup_semantic(
            "acme", "", _key(text), vector, accept=ACCEPT, top_k=4, now=time.time(),
            model_id=embedder.model_id,
        )  # fmt: skip
        return _answer(result.hit)

    async def scenario() -> None:
        first = await writer.put(_entry(embedder, earlier, "lima"))
        assert (await reader.follow()).entries == 0  # the first call marks where it starts
        assert await found(reader, earlier) == "lima"  # the reader's index is loaded now
        entry = await writer.put(_entry(embedder, later, "austen"))
        assert await found(reader, later) is None  # the control: not followed yet
        assert (await reader.follow()).entries == 1
        assert (await reader.follow()).entries == 0  # once only
        assert await found(reader, later) == "austen"
        await writer.remove(EntryFilter(entry_id=entry))
        assert await found(reader, later) is None  # its row is gone: never served
        index = await reader.index(PARTITION)
        assert entry in index
        assert (await reader.follow()).entries == 1  # the log says it was removed
        assert entry not in index
        assert await writer.demote(first, time.time())
        assert first in index
        assert (await reader.follow()).entries == 1
        assert first not in index and await found(reader, earlier) is None
        assert await reader.reconcile_loaded() == 0  # nothing left to reconcile

    asyncio.run(scenario())


def test_an_index_load_outlives_the_request_that_began_it_and_misses_no_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large index takes longer to load than a lookup's deadline: the load goes on after
    that request gives up (the next request finds it loaded), and what the change log says
    of its partition while it loads reaches it."""
    from gateway.index.sync import load_or_rebuild

    embedder = HashingEmbedder()
    url = store_url(tmp_path / "g.db")
    writer, reader = _cache(url, embedder), _cache(url, embedder)
    gate = threading.Event()
    loads: list[int] = []

    def slow(*args: object, **kwargs: object) -> object:
        loads.append(1)
        loaded = load_or_rebuild(*args, **kwargs)  # type: ignore[arg-type]
        assert gate.wait(10)  # held until the test has changed the store meanwhile
        return loaded

    async def scenario() -> None:
        kept = await writer.put(_entry(embedder, "what is the capital of peru", "lima"))
        gone = await writer.put(_entry(embedder, "who wrote the novel emma", "austen"))
        await reader.follow()  # the log's watermark
        monkeypatch.setattr("gateway.cache.semantic.load_or_rebuild", slow)  # the reader's
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.05):  # a lookup deadline: the request gives up
                await reader.index(PARTITION)
        later = await writer.put(_entry(embedder, "how tall is mount fuji", "3776 m"))
        await writer.remove(EntryFilter(entry_id=gone))
        await reader.follow()  # while the load is held: kept for it
        gate.set()
        index = await reader.index(PARTITION)  # the same load, finished
        assert kept in index and later in index and gone not in index
        assert len(loads) == 1  # begun once, by the request that gave up

    asyncio.run(scenario())
