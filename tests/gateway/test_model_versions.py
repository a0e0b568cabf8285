"""A vector is only ever compared with vectors of its own model, and a model change
carries every entry over: the cache's side of `gateway.model_change`, on a real store and
real indexes with two fast embedders that disagree."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from categories.load import Acceptance
from embeddings.protocol import Vectors
from gateway.cache.keys import RequestKey, parse_chat
from gateway.cache.semantic import SemanticCache
from gateway.settings import IndexParams
from gateway.store import NewEntry, Partition, open_store
from gateway.store.entries import EntryFilter
from tests.support.embedders import HashingEmbedder
from tests.support.stores import store_url

PARTITION = Partition("acme", "", "default")
ACCEPT = {"default": Acceptance(threshold=0.9, guard=False)}


class Reversed(HashingEmbedder):
    """Another model: the same texts land elsewhere (the coordinates reversed)."""

    model_id = "test-hashing-reversed"

    def embed(self, texts: Sequence[str]) -> Vectors:
        return np.ascontiguousarray(super().embed(texts)[:, ::-1])


def _key(text: str) -> RequestKey:
    return parse_chat({"model": "m", "messages": [{"role": "user", "content": text}]})


def _entry(text: str, vector: np.ndarray, model_id: str) -> NewEntry:
    key = _key(text)
    return NewEntry(
        partition=PARTITION,
        model_family="m",
        text=key.text,
        context_hash=key.context_hash,
        request_json=json.dumps({"q": text}),
        response_json=json.dumps({"choices": []}),
        embedding=vector,
        embedding_model=model_id,
        created_at=time.time(),
        request_hash=key.exact_hash,
    )


async def _lookup(cache: SemanticCache, text: str, vector: np.ndarray, model_id: str) -> int | None:
    found = await cache.lookup_semantic(
        "acme", "", _key(text), vector, accept=ACCEPT, top_k=4, now=time.time(), model_id=model_id
    )
    hit = found.hit
    return hit.entry_id if hit is not None else None


def test_vectors_meet_their_own_model_only_and_a_change_carries_entries_over(
    tmp_path: Path,
) -> None:
    old, new = HashingEmbedder(), Reversed()

    async def scenario() -> None:
        store = open_store(store_url(tmp_path / "g.db"))
        cache = SemanticCache(store, old, index_dir=None, params=IndexParams())
        texts = ["how do I reset my router", "what is the capital of peru", "who wrote emma"]
        ids = [await cache.put(_entry(t, old.embed([t])[0], old.model_id)) for t in texts]
        query = old.embed([texts[0]])[0]
        assert await _lookup(cache, texts[0], query, old.model_id) == ids[0]  # the control
        # the same numbers, said to come from another model, meet nothing
        assert await _lookup(cache, texts[0], query, new.model_id) is None

        indexes = await cache.prepare(new, chunk=2, pause_s=0)
        # deleted while the next indexes were being built: gone from them too
        assert await cache.remove(EntryFilter(entry_id=ids[2])) == 1
        # stored by the old model during the change, and once it is over
        during = await cache.put(
            _entry("where is lake titicaca", old.embed(["x"])[0], old.model_id)
        )
        await cache.switch(new, indexes)
        after = await cache.put(_entry("who painted guernica", old.embed(["y"])[0], old.model_id))

        models = {m for *_, chunk in store.embeddings(PARTITION) for m in chunk}
        assert models == {new.model_id}
        kept = [
            (ids[0], texts[0]),
            (ids[1], texts[1]),
            (during, "where is lake titicaca"),
            (after, "who painted guernica"),
        ]
        for entry_id, text in kept:
            vector = new.embed([text])[0]
            assert await _lookup(cache, text, vector, new.model_id) == entry_id
            assert await _lookup(cache, text, old.embed([text])[0], old.model_id) is None
        assert await _lookup(cache, texts[2], new.embed([texts[2]])[0], new.model_id) is None
        store.engine.dispose()

    asyncio.run(scenario())
