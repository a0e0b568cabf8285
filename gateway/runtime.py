"""Building and closing everything the routes need: the store, the embedder, the cache, the
upstreams, the policies, the event writer; the `Gateway` that holds them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from categories.classifier import Classifier
from categories.load import LoadMonitor, LoadSettings
from categories.model import CategoryModel, load_model
from categories.policy import PolicySet
from embeddings.batcher import MicroBatcher
from embeddings.protocol import Embedder
from embeddings.runtime import load_serving
from embeddings.trained import model_dir
from gateway.auth import AdminAuth, Tenancy, load_salt
from gateway.cache.hot import HotEntries
from gateway.cache.semantic import SemanticCache
from gateway.errors import GatewayError
from gateway.model_change import ModelChanger, check_choice
from gateway.observe import Metrics
from gateway.outcome import Recorder
from gateway.routing import Route, build_routes
from gateway.settings import (
    ModelSettings,
    RouteSettings,
    Settings,
    calibration_of,
    sqlite_path,
)
from gateway.store import open_store
from gateway.store.active_model import active_model
from gateway.store.changes import forget_changes
from gateway.store.events import EventWriter, journal_dir, orphan_journals, worker_journal
from gateway.store.journal import Journal
from gateway.store.notify import ChangeListener
from gateway.store.overrides import with_overrides
from gateway.store.queries import Store
from gateway.upstream import (
    SIMULATED_PREFIX,
    SIMULATED_PROFILES,
    SimulatedUpstream,
    Upstream,
    Upstreams,
    load_litellm,
)

logger = logging.getLogger(__name__)


def served_model(store: Store, settings: Settings) -> str:
    """The model activated through the admin API, if any and if it still checks out; else
    the configured one."""
    activated = active_model(store)
    if activated is None or activated.choice == settings.embedding.model:
        return settings.embedding.model
    try:
        check_choice(activated.choice, compressed=settings.embedding.compress)
    except GatewayError as exc:
        logger.error("the activated model cannot serve (%s); serving the configured one", exc)
        return settings.embedding.model
    return activated.choice


@dataclass
class Gateway:
    """Everything the routes need, built in the app's lifespan."""

    settings: Settings
    store: Store
    embedder: Embedder
    cache: SemanticCache
    batcher: MicroBatcher
    upstreams: Upstreams
    tenancy: Tenancy
    models: dict[str, ModelSettings]
    routes: dict[str, Route]  # names whose misses go to a small or a large model
    events: EventWriter
    # The classifier and the policies in force, replaced as one object when an operator
    # changes a policy: a request that reads it once sees one consistent snapshot.
    classifier: Classifier
    # The category model file in force (the classifier uses it while it fits the embedder).
    category_model: CategoryModel | None
    # The policies of the files, for the model served, before any run-time change.
    configured: PolicySet
    load: LoadMonitor
    metrics: Metrics
    admin: AdminAuth
    recorder: Recorder
    changer: ModelChanger
    overridden: set[str] = field(default_factory=set)  # categories changed through the API
    # Held by policy changes from reading the policies in force to replacing them.
    policy_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    inflight: dict[tuple[str, str, str], asyncio.Future[dict[str, Any] | None]] = field(
        default_factory=dict
    )
    # Work after the answer (storing a miss whose lookup failed open), finished at shutdown.
    background: set[asyncio.Task[None]] = field(default_factory=set)

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    @property
    def policies(self) -> PolicySet:
        return self.classifier.policies


BACKGROUND_GRACE_S = 30.0  # how long shutdown waits for answers still being stored
# How long the change log is kept: a process away longer reconciles each index with the
# store when it loads it instead.
CHANGE_RETENTION_S = 86_400.0

SIMULATED_MODELS = (
    ModelSettings(
        name="gpt-4o-mini",
        litellm_model=f"{SIMULATED_PREFIX}gpt-4o-mini",
        max_inflight=SIMULATED_PROFILES["gpt-4o-mini"].capacity,
        latency_slo_ms=1000,
    ),
    ModelSettings(
        name="gpt-4o",
        litellm_model=f"{SIMULATED_PREFIX}gpt-4o",
        tier="large",
        max_inflight=SIMULATED_PROFILES["gpt-4o"].capacity,
        latency_slo_ms=2000,
    ),
)
SIMULATED_ROUTES = (RouteSettings(name="auto", small="gpt-4o-mini", large="gpt-4o"),)


@contextlib.asynccontextmanager
async def running(
    settings: Settings,
    *,
    embedder: Embedder | None = None,
    upstream: Upstream | None = None,
    simulated: Upstream | None = None,
    salt: bytes | None = None,
    worker: int = 0,
) -> AsyncIterator[Gateway]:
    """Everything built, in worker threads where it is slow; closed in order on exit.
    `worker` numbers this process among `server.workers`: each journals its own events,
    and the first alone writes the indexes to disk at exit."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="gateway")
    loop = asyncio.get_running_loop()
    store = await loop.run_in_executor(executor, open_store, settings.store.url)
    await loop.run_in_executor(executor, load_litellm)  # not on the first request
    choice = await loop.run_in_executor(executor, served_model, store, settings)
    model: Embedder = (
        embedder
        if embedder is not None
        else await loop.run_in_executor(
            executor, load_serving, replace(settings.embedding.options(), model=model_dir(choice))
        )
    )
    configured = (
        settings.policies
        if choice == settings.embedding.model
        else settings.policies_for(calibration_of(choice, compressed=settings.embedding.compress))
    )
    models = settings.models or SIMULATED_MODELS
    routes = settings.routes if settings.models else SIMULATED_ROUTES
    if not settings.models:
        logger.warning(
            "no upstream models configured: serving the built-in simulated "
            "upstream (responses are named simulated/...)"
        )
    cache = SemanticCache(
        store,
        model,
        index_dir=settings.store.resolved_index_dir(),
        params=settings.index,
        executor=executor,
        hot=HotEntries(settings.cache.hot_bytes, _hot_max_age(settings)),
    )
    await cache.follow()  # the change log's watermark, before any index loads
    metrics = Metrics()
    batcher = MicroBatcher(
        model, settings.embedding.batch, executor=executor, on_batch=metrics.embedding_batch.observe
    )
    policies, overridden = await loop.run_in_executor(executor, with_overrides, store, configured)
    category_model = await loop.run_in_executor(
        executor, load_model, settings.policy_sources.model, settings.trained_category_model()
    )
    classifier = await loop.run_in_executor(executor, _classifier, policies, model, category_model)
    journal = worker_journal(journal_dir(settings.store.resolved_index_dir()), worker)
    events = EventWriter(
        store,
        executor=executor,
        capacity=settings.server.event_queue,
        on_drop=metrics.events_dropped.inc,
        journal=Journal(journal) if journal is not None else None,
    )
    if replayed := await events.replay():
        logger.warning("wrote %d request events a crash had left in the journal", replayed)
    if worker == 0 and journal is not None:  # journals of workers a smaller pool lacks
        for orphan in orphan_journals(journal, settings.server.workers):
            left = EventWriter(store, executor=executor, capacity=1, journal=Journal(orphan))
            if replayed := await left.replay():
                logger.warning("wrote %d request events left in %s", replayed, orphan.name)
    gateway = Gateway(
        settings=settings,
        store=store,
        embedder=model,
        cache=cache,
        batcher=batcher,
        upstreams=Upstreams(
            simulated=simulated or SimulatedUpstream(profiles=SIMULATED_PROFILES), real=upstream
        ),
        events=events,
        tenancy=Tenancy(
            settings.tenants,
            salt
            or load_salt(settings.tenants, shared_store=sqlite_path(settings.store.url) is None),
        ),
        models={m.name: m for m in models},
        routes=build_routes(routes, {m.name: m for m in models}),
        classifier=classifier,
        category_model=category_model,
        load=LoadMonitor(settings.adaptation, _capacities(settings.adaptation, models)),
        metrics=metrics,
        admin=AdminAuth(settings.admin),
        recorder=Recorder(events, metrics, log_prompts=settings.server.log_prompts),
        changer=ModelChanger(choice, executor),
        overridden=overridden,
        configured=configured,
    )
    metrics.embedding_queue.set_function(lambda: gateway.batcher.depth)
    several = settings.server.workers > 1
    listener = None
    if ChangeListener.supported(store.engine):
        listener = ChangeListener(store.engine, loop)
        listener.start()
    tasks = [
        asyncio.create_task(_sweep(gateway, settings.cache.sweep_interval_s, reconcile=several)),
        asyncio.create_task(
            _follow(gateway, settings.cache.follow_interval_s, listener.woken if listener else None)
        ),
    ]
    try:
        yield gateway
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if listener is not None:
            await loop.run_in_executor(executor, listener.stop)
        if gateway.background:  # answers being stored: give them their embedding and commit
            await asyncio.wait(set(gateway.background), timeout=BACKGROUND_GRACE_S)
        await gateway.changer.aclose()
        await gateway.batcher.aclose()
        await events.aclose()
        if worker == 0:  # one writer of the index files
            await loop.run_in_executor(executor, cache.save_indexes)
        store.engine.dispose()
        executor.shutdown(wait=True)


def _hot_max_age(settings: Settings) -> float:
    """How long an answer is held in memory before it is read from the store again."""
    if settings.cache.hot_max_age_s is not None:
        return settings.cache.hot_max_age_s
    return 60.0 if settings.server.workers == 1 else 2.0


async def _follow(gw: Gateway, interval: float, woken: asyncio.Event | None) -> None:
    """What every process logs (this one's and the others') reaches this one's indexes,
    memory, policies and model: at once when the database signals a change, else every
    `interval` seconds. A model activated elsewhere while this one is still changing
    models waits for that change to end."""
    wanted: str | None = None  # the model another gateway activated, not yet started here
    while True:
        try:
            followed = await gw.cache.follow()
            wanted = followed.model or wanted
            if followed.policies:
                await reload_policies(gw)
            if wanted == gw.changer.active:
                wanted = None
            elif wanted is not None and not gw.changer.running:
                model, wanted = wanted, None
                logger.info("another gateway activated %s: changing to it", model)
                await gw.changer.start(gw, model)
        except Exception:
            logger.exception("could not follow the changes other processes logged")
        if woken is None:
            await asyncio.sleep(interval)
            continue
        with contextlib.suppress(TimeoutError):  # no notification: read the log anyway
            async with asyncio.timeout(interval):
                await woken.wait()
        woken.clear()


async def reload_policies(gw: Gateway) -> None:
    """The configured policies with every override in the store (another process changed
    one), put in force."""
    loop = asyncio.get_running_loop()
    async with gw.policy_lock:
        policies, overridden = await loop.run_in_executor(
            None, with_overrides, gw.store, gw.configured
        )
        await apply_policies(gw, policies)
        gw.overridden = overridden


async def apply_policies(gw: Gateway, policies: PolicySet) -> None:
    """Put `policies` in force; the classifier is rebuilt when rules or prototypes changed
    (call with `gw.policy_lock` held)."""
    loop = asyncio.get_running_loop()
    examples = [(p.name, p.rules, p.prototypes) for p in policies.policies]
    if examples != [(p.name, p.rules, p.prototypes) for p in gw.policies.policies]:
        gw.classifier = await loop.run_in_executor(
            None, Classifier.build, policies, gw.embedder, gw.category_model
        )
    else:
        gw.classifier = gw.classifier.with_policies(policies)


def _capacities(
    adaptation: LoadSettings, models: tuple[ModelSettings, ...]
) -> dict[str, LoadSettings]:
    """Each model's load settings: `[adaptation]` with the model's own capacity and SLO."""
    own = {}
    for model in models:
        changes: dict[str, Any] = {}
        if model.max_inflight is not None:
            changes["max_inflight"] = model.max_inflight
        if model.latency_slo_ms is not None:
            changes["latency_slo_ms"] = model.latency_slo_ms
        if changes:
            own[model.name] = replace(adaptation, **changes)
    return own


def _classifier(
    policies: PolicySet, model: Embedder, category_model: CategoryModel | None
) -> Classifier:
    """Prototypes embedded once; if the embedder fails, rules and headers still classify."""
    try:
        return Classifier.build(policies, model, category_model)
    except Exception:
        logger.exception("could not embed the category prototypes: classifying by rules only")
        fits = category_model is not None and category_model.fits(model.model_id, model.dim)
        empty = np.zeros((0, model.dim), np.float32)
        return Classifier(policies, empty, [], category_model if fits else None)


async def _sweep(gw: Gateway, interval: float, *, reconcile: bool) -> None:
    """Expired entries out of the store and the indexes; every tenant's categories down to
    their quotas (what concurrent processes stored past it); the change log older than
    CHANGE_RETENTION_S; with other workers, also a reconcile of this one's indexes."""
    cache, loop = gw.cache, asyncio.get_running_loop()
    while True:
        await asyncio.sleep(interval)
        try:
            removed = await cache.sweep_expired()
            if removed:
                logger.info("swept %d expired entries", removed)
            policies = gw.policies
            quotas = {p.name: p.quota for p in policies.policies}
            for tenant, category in await loop.run_in_executor(None, gw.store.over_quota, quotas):
                policy = policies[category]
                await cache.enforce_quota(tenant, category, policy.quota, policy.eviction)
            await loop.run_in_executor(
                None, forget_changes, gw.store, time.time() - CHANGE_RETENTION_S
            )
            if reconcile:
                await cache.reconcile_loaded()
        except Exception:
            logger.exception("expiry sweep failed")
