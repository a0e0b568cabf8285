"""Micro-batching: concurrent requests share one model call, and the queue always drains.

Continuous batching: when the model is idle a request runs at once, alone; requests that
arrive while it computes form the next batch (up to `max_batch`), so batches grow with load
and nobody waits for company. (`max_wait` above 0 restores a wait for company before a
batch that is not full, for hardware where batching pays more than it costs.)

The queue drains: a caller that gave up (cancelled, e.g. by the lookup's deadline) leaves
its text, and no batch computes it. The queue is bounded by `max_queue`: past it, `embed`
raises `QueueFullError` at once (the caller fails open without waiting), while
`embed_later` waits for room (backpressure) for work that may wait, such as storing an
answer. The model runs in a worker thread, so the event loop keeps serving meanwhile.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from embeddings.errors import EmbedderClosedError, QueueFullError
from embeddings.options import BatchLimits
from embeddings.protocol import Embedder, Vectors


@dataclass
class _Pending:
    text: str
    future: asyncio.Future[Vectors]


class MicroBatcher:
    """Async front of an `Embedder`. Use from one event loop; `aclose` when done."""

    def __init__(
        self,
        embedder: Embedder,
        limits: BatchLimits = BatchLimits(),
        *,
        executor: Executor | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._embedder = embedder
        self._limits = limits
        self._executor = executor
        self._on_batch = on_batch  # told each batch's size (metrics)
        self._queue: deque[_Pending] = deque()
        self._wake: asyncio.Event | None = None  # set while the queue holds work
        self._room: asyncio.Condition | None = None  # notified as the queue empties
        self._worker: asyncio.Task[None] | None = None
        self._closed = False
        self.batches = 0  # model calls made, for stats and tests

    @property
    def embedder(self) -> Embedder:
        return self._embedder

    @property
    def model_id(self) -> str:
        """The model of every vector this batcher returns."""
        return self._embedder.model_id

    @property
    def depth(self) -> int:
        """Texts waiting that someone still waits for."""
        return sum(1 for p in self._queue if not p.future.done())

    def _start(self) -> None:
        if self._closed:
            raise EmbedderClosedError("the embedding batcher is closed")
        if self._worker is None:
            self._wake, self._room = asyncio.Event(), asyncio.Condition()
            self._worker = asyncio.create_task(self._run(), name="embedding-batcher")

    def _full(self) -> bool:
        if len(self._queue) < self._limits.max_queue:
            return False
        self._prune()
        return len(self._queue) >= self._limits.max_queue

    def _prune(self) -> None:
        """Drop the texts nobody waits for any more."""
        if any(p.future.done() for p in self._queue):
            self._queue = deque(p for p in self._queue if not p.future.done())

    def _enqueue(self, text: str) -> asyncio.Future[Vectors]:
        future: asyncio.Future[Vectors] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(text, future))
        assert self._wake is not None
        self._wake.set()
        return future

    async def embed(self, text: str) -> Vectors:
        """The embedding of one text, a (dim,) float32 vector; `QueueFullError` at once
        when `max_queue` texts are waiting."""
        return await self.submit(text)

    def submit(self, text: str) -> asyncio.Future[Vectors]:
        """`embed` begun now, to await later: the future of the text's vector. Cancel it to
        take the text out of the queue. `QueueFullError` at once when the queue is full."""
        self._start()
        if self._full():
            raise QueueFullError(f"{self._limits.max_queue} texts are waiting to be embedded")
        return self._enqueue(text)

    async def embed_later(self, text: str) -> Vectors:
        """The embedding of one text, waiting for room in the queue first (backpressure)."""
        self._start()
        assert self._room is not None
        async with self._room:
            await self._room.wait_for(lambda: self._closed or not self._full())
        if self._closed:
            raise EmbedderClosedError("the embedding batcher is closed")
        return await self._enqueue(text)

    async def embed_many(self, texts: Sequence[str]) -> Vectors:
        rows = await asyncio.gather(*(self.embed_later(t) for t in texts))
        return np.stack(rows) if rows else np.zeros((0, self._embedder.dim), np.float32)

    async def aclose(self) -> None:
        self._closed = True
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        while self._queue:
            pending = self._queue.popleft()
            if not pending.future.done():
                pending.future.set_exception(EmbedderClosedError("the batcher closed"))
        if self._room is not None:
            async with self._room:
                self._room.notify_all()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather()
            if not batch:
                continue
            texts = [p.text for p in batch]
            try:
                vectors = await loop.run_in_executor(self._executor, self._embedder.embed, texts)
            except asyncio.CancelledError:
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(EmbedderClosedError("the batcher closed"))
                raise
            except Exception as exc:
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(exc)
                continue
            self.batches += 1
            if self._on_batch is not None:
                self._on_batch(len(batch))
            for p, row in zip(batch, vectors, strict=True):
                if not p.future.done():  # the caller may have been cancelled meanwhile
                    p.future.set_result(row)

    async def _gather(self) -> list[_Pending]:
        """The next batch: what waits now, up to `max_batch`, callers gone skipped."""
        assert self._wake is not None and self._room is not None
        await self._wake.wait()
        if self._limits.max_wait > 0 and self.depth < self._limits.max_batch:
            await asyncio.sleep(self._limits.max_wait)
        batch: list[_Pending] = []
        while self._queue and len(batch) < self._limits.max_batch:
            pending = self._queue.popleft()
            if not pending.future.done():
                batch.append(pending)
        if not self._queue:
            self._wake.clear()
        async with self._room:
            self._room.notify_all()
        return batch
