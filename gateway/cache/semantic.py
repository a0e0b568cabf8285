"""Lookup and store: the exact tier (a hash, in the store), then the semantic tier
(one HNSW index per partition, loaded lazily, kept in step with the store)."""

from __future__ import annotations

import asyncio
import fcntl
import functools
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import orjson

from categories.load import Acceptance
from embeddings.protocol import Embedder, Vectors, embed_all
from gateway.cache.examples import Example, candidate
from gateway.cache.guard import check
from gateway.cache.hot import ExactKey, HotEntries
from gateway.cache.keys import RequestKey
from gateway.index.hnsw import HnswIndex, Neighbor
from gateway.index.sync import index_file, load_or_rebuild, reconcile
from gateway.settings import IndexParams
from gateway.store.changes import ChangeReader, Removed
from gateway.store.entries import (
    EntryFilter,
    LookupEntry,
    demote_entry,
    exact_entries,
    exact_entry,
    lookup_entries,
    remove_entries,
)
from gateway.store.queries import NewEntry, Partition, Store, decode_vectors

logger = logging.getLogger(__name__)
T = TypeVar("T")
HELD_OVERHEAD = 512  # bytes a held answer costs beyond its texts (objects, the maps)


def _logged_failure(partition: Partition, done: asyncio.Future[HnswIndex]) -> None:
    """A load that failed is logged (and its exception retrieved), waited for or not."""
    if not done.cancelled() and (exc := done.exception()) is not None:
        logger.warning("could not load the index of %s: %s", partition, exc)


@dataclass
class Followed:
    """What following the change log did, and what it leaves to the gateway."""

    entries: int = 0  # entries added to or removed from the loaded indexes
    policies: bool = False  # policies were changed: read them again
    model: str | None = None  # a model was activated (its choice)


@dataclass(frozen=True)
class Hit:
    entry_id: int
    similarity: float  # 1.0 for the exact tier
    tier: str  # "exact" or "semantic"
    category: str
    response: dict[str, Any]
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


@dataclass(frozen=True)
class Semantic:
    """What the semantic tier found: the hit (if any), the candidates the guard turned down,
    the best similarity seen, and the near entries that may serve as in-context examples."""

    hit: Hit | None
    rejected: list[Rejection]
    nearest: float | None
    near: list[Example]


@dataclass(frozen=True)
class Rejection:
    """A candidate above the threshold that the guard turned down (for logs and stats)."""

    entry_id: int
    similarity: float
    reason: str


class SemanticCache:
    """Thread-safety: use from one event loop; blocking work runs in `executor`."""

    def __init__(
        self,
        store: Store,
        embedder: Embedder,
        *,
        index_dir: Path | None,
        params: IndexParams,
        executor: Executor | None = None,
        hot: HotEntries[Hit] | None = None,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.index_dir = index_dir
        self.params = params
        self._executor = executor
        self._indexes: dict[Partition, HnswIndex] = {}
        # Indexes being loaded, and what the change log said of their partitions meanwhile
        # (applied once each is loaded: its load read the store before those changes).
        self._loading: dict[Partition, asyncio.Future[HnswIndex]] = {}
        self._arrived: dict[Partition, tuple[set[int], set[int]]] = {}
        # Partitions holding entries: only their indexes are searched (and so created).
        self._known: set[Partition] | None = None
        # While a model change builds the next indexes, deletions reach them too.
        self._pending: dict[Partition, HnswIndex] | None = None
        # The exact tier's hot answers; a read from the store may keep its answer only if
        # nothing was forgotten meanwhile (`_forgotten` counts what was).
        self.hot: HotEntries[Hit] = hot if hot is not None else HotEntries(0, 0.0)
        self._forgotten = 0
        self._changes = ChangeReader(store)  # the change log, from when this cache began

    @property
    def model_id(self) -> str:
        """The model whose vectors the indexes hold; a vector of another is never compared."""
        return self.embedder.model_id

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def index(self, partition: Partition) -> HnswIndex:
        """The partition's index, loaded (from its saved file, caught up with the store) or
        built on first use. The load runs to its end even if the request that began it
        gives up (a lookup deadline): a large index is not begun again by every request."""
        found = self._indexes.get(partition)
        if found is not None:
            return found
        loading = self._loading.get(partition)
        if loading is None:
            loading = asyncio.ensure_future(self._load(partition))
            loading.add_done_callback(functools.partial(_logged_failure, partition))
            self._loading[partition] = loading
        return await asyncio.shield(loading)

    async def _load(self, partition: Partition) -> HnswIndex:
        arrived: tuple[set[int], set[int]] = (set(), set())
        self._arrived[partition] = arrived
        me = asyncio.current_task()
        try:
            path = index_file(self.index_dir, partition) if self.index_dir else None
            index, report = await self._run(
                lambda: load_or_rebuild(
                    self.store, partition, self.embedder, path=path, params=self.params
                )
            )
            added, removed = arrived
            if removed:
                index.delete(list(removed))
            if added - removed:
                await self._run(
                    self._index_logged, {partition: added - removed}, {partition: index}
                )
            logger.info("index for %s: %s (%d entries)", partition, report.action, report.entries)
            if self._loading.get(partition) is me:  # not dropped by a model switch
                self._indexes[partition] = index
            return index
        finally:
            if self._loading.get(partition) is me:
                del self._loading[partition]
            if self._arrived.get(partition) is arrived:
                del self._arrived[partition]

    async def lookup_exact(
        self, tenant: str, namespace: str, key: RequestKey, now: float
    ) -> Hit | None:
        """The newest live entry of this exact request, whatever its category: from memory
        when it is hot, else from the store (and then held)."""
        exact: ExactKey = (tenant, namespace, key.exact_hash, key.model)
        held = self.hot.get(exact, now)
        if held is not None:
            return held
        forgotten = self._forgotten
        row = await self._run(
            exact_entry, self.store, tenant, namespace, key.exact_hash, key.model, now
        )
        if row is None:
            return None
        hit = _hit(row, 1.0, "exact")
        if forgotten == self._forgotten:  # else the row read may be gone or replaced
            size = len(row.response_json) + len(row.text) + HELD_OVERHEAD
            self.hot.put(exact, row.id, hit, row.expires_at, size)
        return hit

    async def pool(
        self, tenant: str, namespace: str, key: RequestKey, now: float, size: int
    ) -> list[Hit]:
        """Up to `size` live answers of this exact request, newest first (from the store)."""
        rows = await self._run(
            exact_entries, self.store, tenant, namespace, key.exact_hash, key.model, now, size
        )
        return [_hit(row, 1.0, "exact") for row in rows]

    def held_exact(self, tenant: str, namespace: str, key: RequestKey, now: float) -> Hit | None:
        """The exact tier from memory only: the hit if it is hot."""
        return self.hot.get((tenant, namespace, key.exact_hash, key.model), now)

    def knows_exact(self, tenant: str, namespace: str, key: RequestKey) -> bool:
        """Whether this request had an entry when the store was last asked (so it likely
        has one still): then the store is asked before anything else is done."""
        return self.hot.known((tenant, namespace, key.exact_hash, key.model))

    def extended(self, entry_id: int, expires_at: float | None) -> None:
        """A hit moved the entry's expiry (sliding TTL)."""
        self.hot.extend(entry_id, expires_at)

    def _forget(self, entry_ids: list[int]) -> None:
        self._forgotten += 1
        self.hot.forget_entries(entry_ids)

    async def lookup_semantic(
        self,
        tenant: str,
        namespace: str,
        key: RequestKey,
        vector: Vectors,
        *,
        accept: Mapping[str, Acceptance],
        top_k: int,
        now: float,
        model_id: str,
        near_floor: float | None = None,
    ) -> Semantic:
        """Search the index of every category in `accept` (the query's own and the others
        it may be served from) and return the most similar candidate that clears its
        category's acceptance, matches model and context, is live and passes the guard;
        with the rejections and the best similarity seen (served or not). With `near_floor`,
        the candidates from it up to their category's threshold that may be in-context
        examples come too, fetched in the same trip. A vector of another model than the
        indexes' (the model changed while it was made) finds nothing."""
        if model_id != self.model_id:
            return Semantic(None, [], None, [])
        if self._known is None:
            self._known = set(await self._run(self.store.partitions))
        wanted = [(c, Partition(tenant, namespace, c)) for c in accept]
        indexes = [(c, await self.index(p)) for c, p in wanted if p in self._known]

        def candidates() -> tuple[list[tuple[str, Neighbor]], dict[int, LookupEntry], float | None]:
            # Search and row fetch in one trip to the worker thread.
            found = [(c, n) for c, index in indexes for n in index.search(vector, top_k)]
            nearest = max((n.similarity for _, n in found), default=None)
            floor = min((a.threshold for a in accept.values()), default=1.0)
            if near_floor is not None:
                floor = min(floor, near_floor)
            close = [(c, n) for c, n in found if n.similarity >= floor]
            close.sort(key=lambda pair: -pair[1].similarity)
            ids = [n.entry_id for _, n in close]
            return close, lookup_entries(self.store, ids) if close else {}, nearest

        close, rows, nearest = await self._run(candidates)
        above = [(c, n) for c, n in close if n.similarity >= accept[c].threshold]
        near = [] if near_floor is None else _examples(close, rows, accept, near_floor, now)
        rejected: list[Rejection] = []
        for category, neighbor in above:
            row = rows.get(neighbor.entry_id)
            if row is None or row.model_family != key.model:
                continue
            if row.context_hash != key.context_hash:
                continue
            if row.expires_at is not None and row.expires_at <= now:
                continue
            if accept[category].guard:
                verdict = check(key.text, row.text)
                if not verdict.ok:
                    rejected.append(Rejection(row.id, neighbor.similarity, verdict.reason))
                    continue
            return Semantic(_hit(row, neighbor.similarity, "semantic"), rejected, nearest, [])
        return Semantic(None, rejected, nearest, near)

    async def put(self, new: NewEntry) -> int:
        """Commit the entry, then index it: nothing is indexed that is not durable. An entry
        embedded by a model no longer served (the model changed while it was answered) is
        embedded again by the one in service."""
        await self.index(new.partition)  # loaded before the commit: `switch` reconciles it
        entry_id = await self._run(self.store.add_entry, new)
        if new.request_hash:  # the newest entry of a request answers it: held at once
            self._forgotten += 1  # a read of an older entry in flight must not replace it
            tenant, namespace = new.partition.tenant, new.partition.namespace
            hit = Hit(
                entry_id, 1.0, "exact", new.partition.category, orjson.loads(new.response_json),
                new.prompt_tokens, new.completion_tokens, new.cost_usd,
            )  # fmt: skip
            size = len(new.response_json) + len(new.text) + HELD_OVERHEAD
            exact: ExactKey = (tenant, namespace, new.request_hash, new.model_family)
            self.hot.put(exact, entry_id, hit, new.expires_at, size)
        if self._known is not None:
            self._known.add(new.partition)
        index = await self.index(new.partition)  # the one in service now
        if new.embedding_model == index.model_id:
            await self._run(index.add, [entry_id], new.embedding.reshape(1, -1))
        else:  # embedded by the model served before a change: embed it for this one
            await self._run(self._index_again, index, self.embedder, entry_id, new.text)
        return entry_id

    async def follow(self) -> Followed:
        """Apply what any process (another worker, another replica) logged since the last
        call: new entries join the loaded indexes, removed and demoted ones leave them and
        memory. Policy and model changes are returned for the gateway to apply."""
        logged = await self._run(self._changes.read)
        if not logged:
            return Followed()
        added: dict[Partition, set[int]] = {}
        gone: list[Removed] = []
        followed = Followed()
        for change in logged:
            partition = change.partition
            arrived = self._arrived.get(partition) if partition is not None else None
            if arrived is not None and change.kind in ("entry", "removed", "demoted"):
                arrived[0 if change.kind == "entry" else 1].update(change.entry_ids)
            if change.kind == "entry" and partition is not None:
                if self._known is not None:
                    self._known.add(partition)
                added.setdefault(partition, set()).update(change.entry_ids)
            elif change.kind in ("removed", "demoted") and partition is not None:
                tenant, namespace, category = (
                    partition.tenant,
                    partition.namespace,
                    partition.category,
                )
                gone += [(i, tenant, namespace, category) for i in change.entry_ids]
                for entry_id in change.entry_ids:
                    added.get(partition, set()).discard(entry_id)
            elif change.kind == "policy":
                followed.policies = True
            elif change.kind == "model" and change.detail:
                followed.model = change.detail
        if gone:
            self._unindex(gone)
        followed.entries = len(gone) + await self._run(self._index_logged, added)
        return followed

    def _index_logged(
        self, added: dict[Partition, set[int]], indexes: Mapping[Partition, HnswIndex] | None = None
    ) -> int:
        """Add logged entries (that are still there, and of the model served) to the
        loaded indexes, or to `indexes` (blocking)."""
        count = 0
        for partition, ids in added.items():
            index = (indexes if indexes is not None else self._indexes).get(partition)
            if index is None or index.model_id != self.model_id:
                continue  # not loaded (it reads the store when it is), or mid-change
            missing = [i for i in ids if i not in index]
            for found, _, blobs, models in self.store.embeddings(partition, ids=missing):
                keep = [k for k, model in enumerate(models) if model == index.model_id]
                if keep:
                    vectors = decode_vectors([blobs[k] for k in keep], index.dim)
                    index.add([found[k] for k in keep], vectors)
                    count += len(keep)
        return count

    async def reconcile_loaded(self) -> int:
        """Bring every loaded index level with the store (entries other processes deleted
        or stored); returns how many entries that removed or added."""
        changed = 0
        for partition, index in list(self._indexes.items()):
            added, removed, _ = await self._run(
                reconcile, index, self.store, partition, self.embedder
            )
            changed += added + removed
        return changed

    async def enforce_quota(
        self, tenant: str, category: str, quota: int, eviction: str, *, keep: int | None = None
    ) -> int:
        """Evict (tenant, category) down to `quota` entries, by the policy's `eviction`, from
        the store and the indexes together, sparing `keep`. Counted and trimmed in SQL, in
        one transaction: exact whatever other processes store meanwhile (the last to trim
        sees every entry committed before it). Returns how many were evicted."""
        victims = await self._run(
            lambda: self.store.trim(tenant, category, quota, eviction, keep=keep)
        )
        if not victims:
            return 0
        self._forget([entry_id for entry_id, _ in victims])
        for entry_id, namespace in victims:
            for index in self._loaded(Partition(tenant, namespace, category)):
                index.delete([entry_id])
        return len(victims)

    async def sweep_expired(self, now: float | None = None) -> int:
        """Delete expired entries from the store and every loaded index."""
        moment = time.time() if now is None else now
        return await self.remove(EntryFilter(expired_at=moment))

    async def remove(self, matching: EntryFilter) -> int:
        """Delete the matching entries from the store, then from the indexes."""
        removed = await self._run(remove_entries, self.store, matching)
        self._unindex(removed)
        return len(removed)

    async def demote(self, entry_id: int, now: float) -> bool:
        """Out of the index for good (a wrong hit): kept for its own exact request only."""
        marked = await self._run(demote_entry, self.store, entry_id, now)
        if marked is None:
            return False
        self._unindex([marked])
        return True

    def _unindex(self, rows: list[Removed]) -> None:
        self._forget([row[0] for row in rows])
        for entry_id, tenant, namespace, category in rows:
            for index in self._loaded(Partition(tenant, namespace, category)):
                index.delete([entry_id])

    def _loaded(self, partition: Partition) -> list[HnswIndex]:
        """The partition's index in service, and the next one while a model change runs."""
        found = [self._indexes.get(partition)]
        if self._pending is not None:
            found.append(self._pending.get(partition))
        return [index for index in found if index is not None]

    async def prepare(
        self,
        embedder: Embedder,
        *,
        chunk: int,
        pause_s: float,
        progress: Callable[[int], None] | None = None,
    ) -> dict[Partition, HnswIndex]:
        """The next model's indexes: every partition's stored texts embedded again, a chunk
        at a time with a pause between chunks so that serving keeps the cores, and written
        back tagged with the model. The indexes in service keep serving meanwhile."""
        self._pending = {}
        # the entries there are now: those stored meanwhile are caught up by `switch`, so
        # that steady traffic cannot keep the change chasing the newest entry
        ceiling = await self._run(self.store.last_entry_id)
        for partition in await self._run(self.store.partitions):
            index = HnswIndex(embedder.dim, model_id=embedder.model_id, params=self.params)
            self._pending[partition] = index
            chunks = self.store.embeddings(partition, chunk=chunk, up_to=ceiling)
            while (part := await self._run(next, chunks, None)) is not None:
                ids, texts, blobs, models = part
                await self._run(self._reembed, index, embedder, ids, texts, blobs, models)
                if progress is not None:
                    progress(len(ids))
                await asyncio.sleep(pause_s)
        return self._pending

    def _reembed(
        self,
        index: HnswIndex,
        embedder: Embedder,
        ids: list[int],
        texts: list[str],
        blobs: list[bytes],
        models: list[str],
    ) -> None:
        vectors = np.empty((len(ids), index.dim), dtype=np.float32)
        fresh = [i for i, model in enumerate(models) if model != embedder.model_id]
        kept = [i for i, model in enumerate(models) if model == embedder.model_id]
        if kept:
            vectors[kept] = decode_vectors([blobs[i] for i in kept], index.dim)
        if fresh:
            vectors[fresh] = embed_all(embedder, [texts[i] for i in fresh])
            self.store.replace_embeddings(
                [ids[i] for i in fresh], vectors[fresh], embedder.model_id
            )
        index.add(ids, vectors)

    def _index_again(self, index: HnswIndex, embedder: Embedder, entry_id: int, text: str) -> None:
        if embedder.model_id != index.model_id:  # changed once more: `switch` reconciles it
            return
        vector = embedder.embed([text])
        self.store.replace_embeddings([entry_id], vector, embedder.model_id)
        index.add([entry_id], vector)

    def abandon(self) -> None:
        """Forget the next indexes of a model change that did not finish."""
        self._pending = None

    async def switch(self, embedder: Embedder, indexes: dict[Partition, HnswIndex]) -> int:
        """Serve `embedder`'s indexes from now on (one assignment: a lookup sees the old set
        or the new one), then bring them level with the store: entries stored or deleted
        while they were built. Returns how many entries that caught up."""
        self.embedder = embedder
        self._indexes = dict(indexes)
        self._pending = None
        self._loading, self._arrived = {}, {}  # a load still running finishes for nobody
        self._known = None
        caught = 0
        for partition, index in list(self._indexes.items()):
            added, _, _ = await self._run(reconcile, index, self.store, partition, embedder)
            caught += added
        return caught

    async def nearest(
        self, partitions: list[Partition], vector: Vectors, k: int, model_id: str
    ) -> list[tuple[float, int]]:
        """(similarity, entry id) of the k nearest live entries across `partitions`."""
        if model_id != self.model_id:
            return []
        indexes = [await self.index(p) for p in partitions]

        def search() -> list[tuple[float, int]]:
            found = [(n.similarity, n.entry_id) for i in indexes for n in i.search(vector, k)]
            return sorted(found, reverse=True)[:k]

        return await self._run(search)

    def save_indexes(self) -> None:
        """Write the loaded indexes to `index_dir`, unless another process sharing the
        folder is writing them now (an exclusive lock on `index_dir/.lock`): one writer at
        a time; each file is replaced atomically, so readers see an old or a new one."""
        if self.index_dir is None:
            return
        self.index_dir.mkdir(parents=True, exist_ok=True)
        with (self.index_dir / ".lock").open("a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                logger.info("another process is saving the indexes in %s", self.index_dir)
                return
            for partition, index in self._indexes.items():
                index.save(index_file(self.index_dir, partition))


def _examples(
    close: list[tuple[str, Neighbor]],
    rows: Mapping[int, LookupEntry],
    accept: Mapping[str, Acceptance],
    floor: float,
    now: float,
) -> list[Example]:
    """The example candidates from `floor` up to their category's threshold."""
    near = []
    for category, neighbor in close:
        row = rows.get(neighbor.entry_id)
        if row is not None and floor <= neighbor.similarity < accept[category].threshold:
            found = candidate(row, neighbor.similarity, now)
            if found is not None:
                near.append(found)
    return near


def _hit(row: LookupEntry, similarity: float, tier: str) -> Hit:
    return Hit(
        row.id,
        similarity,
        tier,
        row.category,
        orjson.loads(row.response_json),
        row.prompt_tokens,
        row.completion_tokens,
        row.cost_usd,
    )
