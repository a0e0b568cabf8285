"""Micro-batching: concurrent requests share one model call.

A request waits at most `max_wait` for company; a batch closes at `max_batch` texts. The
model runs in a worker thread, so the event loop keeps serving while it computes, and the
next batch gathers during that time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from embeddings.errors import EmbedderClosedError
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
    ) -> None:
        self._embedder = embedder
        self._limits = limits
        self._executor = executor
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
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

    async def embed(self, text: str) -> Vectors:
        """The embedding of one text, a (dim,) float32 vector."""
        if self._closed:
            raise EmbedderClosedError("the embedding batcher is closed")
        if self._worker is None:
            self._worker = asyncio.create_task(self._run(), name="embedding-batcher")
        future: asyncio.Future[Vectors] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(text, future))
        return await future

    async def embed_many(self, texts: Sequence[str]) -> Vectors:
        rows = await asyncio.gather(*(self.embed(t) for t in texts))
        return np.stack(rows) if rows else np.zeros((0, self._embedder.dim), np.float32)

    async def aclose(self) -> None:
        self._closed = True
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        while not self._queue.empty():
            pending = self._queue.get_nowait()
            if not pending.future.done():
                pending.future.set_exception(EmbedderClosedError("the batcher closed"))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather()
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
            for p, row in zip(batch, vectors, strict=True):
                if not p.future.done():  # the caller may have been cancelled
                    p.future.set_result(row)

    async def _gather(self) -> list[_Pending]:
        batch = [await self._queue.get()]
        deadline = asyncio.get_running_loop().time() + self._limits.max_wait
        while len(batch) < self._limits.max_batch:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return batch
