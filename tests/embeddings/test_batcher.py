from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import numpy as np
import pytest

from embeddings.batcher import MicroBatcher
from embeddings.errors import EmbedderClosedError, QueueFullError
from embeddings.options import BatchLimits
from embeddings.protocol import Vectors
from embeddings.runtime import OnnxEmbedder
from tests.support.embedders import Wrapped


class Recording(Wrapped):
    """Records the size of every call; optionally held at a gate."""

    def __init__(self, inner: OnnxEmbedder, gate: threading.Event | None = None) -> None:
        super().__init__(inner)
        self.gate = gate
        self.calls: list[int] = []
        self.entered = threading.Event()

    def embed(self, texts: Sequence[str]) -> Vectors:
        self.calls.append(len(texts))
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(30)
        return self.inner.embed(texts)


class Failing(Recording):
    def embed(self, texts: Sequence[str]) -> Vectors:
        self.calls.append(len(texts))
        raise RuntimeError("model crashed")


def test_concurrent_callers_share_batches(embedder: OnnxEmbedder, prompts: list[str]) -> None:
    recording = Recording(embedder)

    async def scenario() -> Vectors:
        batcher = MicroBatcher(recording, BatchLimits(max_batch=16, max_wait=0.05))
        try:
            return await batcher.embed_many(prompts[:40])
        finally:
            await batcher.aclose()

    vectors = asyncio.run(scenario())
    assert recording.calls == [16, 16, 8]
    # Each caller gets its own text's embedding, whatever batch it rode in.
    expected = embedder.embed(prompts[:40])
    assert float(np.abs(vectors - expected).max()) < 1e-5


def test_an_idle_model_takes_a_lone_caller_at_once(embedder: OnnxEmbedder) -> None:
    recording = Recording(embedder)
    sizes: list[int] = []

    async def scenario() -> Vectors:
        batcher = MicroBatcher(recording, BatchLimits(max_batch=64), on_batch=sizes.append)
        try:
            return await asyncio.wait_for(batcher.embed("hello there"), timeout=30)
        finally:
            await batcher.aclose()

    vector = asyncio.run(scenario())
    assert recording.calls == [1] and sizes == [1]
    assert vector.shape == (384,)


def test_callers_that_gave_up_leave_the_queue(embedder: OnnxEmbedder, prompts: list[str]) -> None:
    gate = threading.Event()
    recording = Recording(embedder, gate)

    async def scenario() -> None:
        batcher = MicroBatcher(recording, BatchLimits(max_batch=32))
        first = asyncio.create_task(batcher.embed(prompts[0]))
        await asyncio.get_running_loop().run_in_executor(None, recording.entered.wait, 30)
        impatient = [asyncio.create_task(batcher.embed(p)) for p in prompts[1:9]]
        patient = [asyncio.create_task(batcher.embed(p)) for p in prompts[9:12]]
        await asyncio.sleep(0)
        assert batcher.depth == 11
        for task in impatient:  # as the lookup deadline does
            task.cancel()
        await asyncio.gather(*impatient, return_exceptions=True)
        assert batcher.depth == 3
        gate.set()
        await asyncio.gather(first, *patient)
        await batcher.aclose()

    asyncio.run(scenario())
    assert recording.calls == [1, 3]  # nobody's text was embedded for nobody


def test_a_full_queue_refuses_at_once_and_embed_later_waits_for_room(
    embedder: OnnxEmbedder, prompts: list[str]
) -> None:
    gate = threading.Event()
    recording = Recording(embedder, gate)

    async def scenario() -> None:
        batcher = MicroBatcher(recording, BatchLimits(max_batch=8, max_queue=2))
        running = asyncio.create_task(batcher.embed(prompts[0]))
        await asyncio.get_running_loop().run_in_executor(None, recording.entered.wait, 30)
        queued = [asyncio.create_task(batcher.embed(p)) for p in prompts[1:3]]
        await asyncio.sleep(0)
        with pytest.raises(QueueFullError):
            await batcher.embed(prompts[3])
        later = asyncio.create_task(batcher.embed_later(prompts[4]))
        await asyncio.sleep(0.01)
        assert not later.done() and batcher.depth == 2
        gate.set()
        vector = await asyncio.wait_for(later, 30)
        await asyncio.gather(running, *queued)
        assert vector.shape == (384,)
        await batcher.aclose()

    asyncio.run(scenario())
    assert sum(recording.calls) == 4


def test_event_loop_keeps_running_during_inference(embedder: OnnxEmbedder) -> None:
    gate = threading.Event()
    recording = Recording(embedder, gate)

    async def scenario() -> int:
        batcher = MicroBatcher(recording, BatchLimits(max_batch=8, max_wait=0.0))
        pending = asyncio.create_task(batcher.embed("held at the gate"))
        await asyncio.get_running_loop().run_in_executor(None, recording.entered.wait, 30)
        ticks = 0
        for _ in range(50):  # the loop is free while the model call is in progress
            await asyncio.sleep(0)
            ticks += 1
        assert not pending.done()
        gate.set()
        await pending
        await batcher.aclose()
        return ticks

    assert asyncio.run(scenario()) == 50


def test_requests_arriving_during_inference_form_the_next_batch(
    embedder: OnnxEmbedder, prompts: list[str]
) -> None:
    gate = threading.Event()
    recording = Recording(embedder, gate)

    async def scenario() -> None:
        batcher = MicroBatcher(recording, BatchLimits(max_batch=32, max_wait=0.0))
        first = asyncio.create_task(batcher.embed(prompts[0]))
        await asyncio.get_running_loop().run_in_executor(None, recording.entered.wait, 30)
        rest = [asyncio.create_task(batcher.embed(p)) for p in prompts[1:11]]
        await asyncio.sleep(0)
        gate.set()
        await asyncio.gather(first, *rest)
        await batcher.aclose()

    asyncio.run(scenario())
    assert recording.calls == [1, 10]


def test_model_errors_reach_every_caller_of_the_batch(embedder: OnnxEmbedder) -> None:
    failing = Failing(embedder)

    async def scenario() -> list[BaseException | Vectors]:
        batcher = MicroBatcher(failing, BatchLimits(max_batch=8, max_wait=0.05))
        try:
            return await asyncio.gather(
                *(batcher.embed(f"text {i}") for i in range(3)), return_exceptions=True
            )
        finally:
            await batcher.aclose()

    results = asyncio.run(scenario())
    assert failing.calls == [3]
    assert all(isinstance(r, RuntimeError) and "crashed" in str(r) for r in results)


def test_closed_batcher_refuses_work(embedder: OnnxEmbedder) -> None:
    async def scenario() -> None:
        batcher = MicroBatcher(embedder)
        await batcher.embed("warm")
        await batcher.aclose()
        with pytest.raises(EmbedderClosedError):
            await batcher.embed("after close")

    asyncio.run(scenario())


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        BatchLimits(max_batch=0)
    with pytest.raises(ValueError, match="max_wait"):
        BatchLimits(max_wait=-1)
    with pytest.raises(ValueError, match="max_queue"):
        BatchLimits(max_queue=0)
