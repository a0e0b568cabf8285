"""Changing the similarity model while serving.

An operator activates a model (`POST /admin/model`, or `gateway activate-model`). The
directory is checked first: one that does not validate is refused and the current model
keeps serving. Then, in the background:

1. the new model is loaded (exported to ONNX on first use);
2. every stored entry is embedded again from its stored text, a chunk at a time with a
   pause between chunks, and written back tagged with the new model; the indexes in service
   keep answering meanwhile;
3. the new model, its indexes, its category prototypes and its calibrated thresholds are
   put in service together; entries stored or deleted while the indexes were built are
   brought level;
4. the choice is kept in the store, so a restart serves it.

A request embeds with one model and searches that model's indexes only (`SemanticCache`
checks the vector's model), so no request is compared with a neighbour of another version.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from categories.classifier import Classifier
from embeddings.batcher import MicroBatcher
from embeddings.card import load_card
from embeddings.compress import load_projection
from embeddings.errors import ModelIntegrityError
from embeddings.model import bundled_minilm
from embeddings.runtime import load_serving
from embeddings.trained import model_dir
from gateway.errors import Conflict, InvalidRequest
from gateway.settings import SettingsError, calibration_of
from gateway.store.active_model import activate
from gateway.store.overrides import with_overrides

if TYPE_CHECKING:
    from gateway.runtime import Gateway

logger = logging.getLogger(__name__)

CHUNK = 256  # entries embedded again between pauses
PAUSE_S = 0.05  # between chunks: serving keeps the cores


@dataclass
class Change:
    choice: str
    state: str = "loading"  # loading, reembedding, switching, done, failed
    entries_done: int = 0
    started_at: float = 0.0
    finished_at: float | None = None
    model_id: str = ""
    error: str = ""

    def view(self) -> dict[str, Any]:
        return {
            "model": self.choice,
            "state": self.state,
            "model_id": self.model_id or None,
            "entries_reembedded": self.entries_done,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "error": self.error or None,
        }


def check_choice(choice: str, *, compressed: bool = False) -> None:
    """Refuse a model that cannot serve, with the reason; blocking (reads the files)."""
    base = bundled_minilm()
    try:
        directory = model_dir(choice)
        if directory is not None:
            load_card(directory, base_sha256=base.sha256, dim=base.dim)
            if compressed:
                load_projection(directory)
        calibration_of(choice, compressed=compressed)
    except (ModelIntegrityError, SettingsError) as exc:
        raise InvalidRequest(f"model refused: {exc}", param="model") from None
    except (OSError, ValueError, RuntimeError) as exc:  # a path the system cannot use
        raise InvalidRequest(
            f"model refused: {choice!r} is not a usable path ({exc})", param="model"
        ) from None


class ModelChanger:
    """Runs one model change at a time for a gateway."""

    def __init__(self, choice: str, executor: Executor | None) -> None:
        self.active = choice
        self.change: Change | None = None
        self._executor = executor
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self, gw: Gateway, choice: str) -> Change:
        if self.running:
            raise Conflict("a model change is already running: wait for it to finish")
        loop = asyncio.get_running_loop()
        compressed = gw.settings.embedding.compress
        await loop.run_in_executor(
            self._executor, lambda: check_choice(choice, compressed=compressed)
        )
        self.change = Change(choice, started_at=time.time())
        self._task = asyncio.create_task(self._run(gw, self.change))
        return self.change

    async def wait(self) -> None:
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def aclose(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
        await self.wait()

    async def _run(self, gw: Gateway, change: Change) -> None:
        loop = asyncio.get_running_loop()
        try:
            options = replace(gw.settings.embedding.options(), model=model_dir(change.choice))
            embedder = await loop.run_in_executor(self._executor, load_serving, options)
            change.model_id = embedder.model_id
            change.state = "reembedding"

            def progress(count: int) -> None:
                change.entries_done += count

            indexes = await gw.cache.prepare(
                embedder, chunk=CHUNK, pause_s=PAUSE_S, progress=progress
            )
            calibrated = gw.settings.policies_for(
                calibration_of(change.choice, compressed=gw.settings.embedding.compress)
            )
            policies, overridden = await loop.run_in_executor(
                self._executor, with_overrides, gw.store, calibrated
            )
            classifier = await loop.run_in_executor(
                self._executor, Classifier.build, policies, embedder, gw.category_model
            )
            change.state = "switching"
            old = gw.batcher
            async with gw.policy_lock:
                gw.embedder = embedder
                gw.batcher = MicroBatcher(
                    embedder,
                    gw.settings.embedding.batch,
                    executor=self._executor,
                    on_batch=gw.metrics.embedding_batch.observe,
                )
                gw.classifier = classifier
                gw.overridden = overridden
                gw.configured = calibrated
                caught = await gw.cache.switch(embedder, indexes)
            await loop.run_in_executor(
                self._executor, activate, gw.store, change.choice, embedder.model_id
            )
            self.active = change.choice
            await old.aclose()
            change.state = "done"
            logger.info(
                "now serving %s (%d entries embedded again, %d caught up)",
                embedder.model_id,
                change.entries_done,
                caught,
            )
        except asyncio.CancelledError:
            gw.cache.abandon()
            change.state, change.error = "failed", "the gateway stopped"
            raise
        except Exception as exc:
            gw.cache.abandon()
            logger.exception("the model change to %s failed; the old model serves", change.choice)
            change.state, change.error = "failed", str(exc) or type(exc).__name__
        finally:
            change.finished_at = time.time()
