"""`gateway refine`: learn which cached answers make good in-context examples, offline
(IC-Cache's cost-aware cache replay).

It samples past misses a large model answered, finds each one's in-context examples as the
gateway would (its own tenant's and namespace's neighbours, in the category's band, by
utility, under its budget; the entry itself excluded), asks the route's small model the
same request with those examples, and judges the small answer against the large one:

- `similarity` (the default, offline): the cosine of the two answers' embeddings reaches
  `--judge-threshold`;
- `llm`: the route's large model, asked whether the candidate answer is an acceptable
  replacement for the reference (YES or NO); it costs a call per judgement.

Each judgement is one use of each example given, that helped or did not: the utility the
router and the selection weigh. Examples judged `--retire-after` times that never helped are
retired. `--budget-usd` caps what the small model and the judge may cost (calls in flight
when it is reached finish); `--dry-run` shows what would be asked and what it would cost,
and calls and writes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from categories.policy import DEFAULT, PolicySet
from embeddings.protocol import Embedder
from gateway.cache.examples import (
    Example,
    ExampleLimits,
    answer_text,
    candidate,
    choose,
    estimate_tokens,
    with_examples,
)
from gateway.index.hnsw import HnswIndex
from gateway.index.sync import index_file, load_or_rebuild
from gateway.routing import Route, build_routes
from gateway.settings import Settings
from gateway.store.entries import (
    credit_examples,
    entries_by_id,
    large_answers,
    lookup_entries,
    retire_examples,
)
from gateway.store.models import CacheEntry
from gateway.store.queries import Partition, Store, decode_vectors
from gateway.upstream import Upstreams, price

JUDGE_PROMPT = (
    "You compare a candidate answer with a reference answer to the same question. Reply "
    "with one word: YES if the candidate is an acceptable replacement for the reference "
    "(correct, and as useful), otherwise NO."
)
SEARCH_K = 16  # neighbours looked at per sampled entry


class RefineError(ValueError):
    """The arguments or the configuration do not allow a refinement; the message says why."""


@dataclass
class Plan:
    """One sampled miss: the request, the large answer, and the examples it would get."""

    entry: CacheEntry
    reference: str
    examples: list[Example]
    body: dict[str, Any]


@dataclass
class Summary:
    sampled: int = 0
    without_examples: int = 0  # no neighbour in the band: nothing to learn from them
    judged: int = 0
    helped: int = 0
    credited: int = 0
    retired: int = 0
    spent_usd: float = 0.0
    estimated_usd: float = 0.0  # what the plan would cost (dry run)
    stopped_by_budget: bool = False
    dry_run: bool = False
    judge: str = "similarity"
    plans: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = dict(vars(self))
        data["helped_share"] = self.helped / self.judged if self.judged else 0.0
        return data


def route_of(settings: Settings, name: str | None) -> Route:
    from gateway.runtime import SIMULATED_MODELS, SIMULATED_ROUTES

    models = settings.models or SIMULATED_MODELS
    routes = build_routes(
        settings.routes if settings.models else SIMULATED_ROUTES, {m.name: m for m in models}
    )
    if not routes:
        raise RefineError("no [[routes]] configured: there is no small model to refine for")
    if name is None:
        return next(iter(routes.values()))
    if name not in routes:
        raise RefineError(f"no route {name!r} (configured: {', '.join(routes)})")
    return routes[name]


def check_arguments(args: argparse.Namespace) -> None:
    if args.sample < 1:
        raise RefineError("--sample must be at least 1")
    if not 0.0 < args.judge_threshold <= 1.0:
        raise RefineError("--judge-threshold must be in (0, 1]")
    if not args.budget_usd >= 0:
        raise RefineError("--budget-usd must not be negative")
    if args.retire_after < 0:
        raise RefineError("--retire-after must not be negative")
    if args.concurrency < 1:
        raise RefineError("--concurrency must be at least 1")


class Planner:
    """Finds each sampled entry's examples as the gateway would, from the saved indexes."""

    def __init__(self, settings: Settings, store: Store, embedder: Embedder) -> None:
        self.settings, self.store, self.embedder = settings, store, embedder
        self.policies: PolicySet = settings.policies
        self._indexes: dict[Partition, HnswIndex] = {}

    def _index(self, partition: Partition) -> HnswIndex:
        if partition not in self._indexes:
            directory = self.settings.store.resolved_index_dir()
            path = index_file(directory, partition) if directory else None
            index, _ = load_or_rebuild(
                self.store, partition, self.embedder, path=path, params=self.settings.index
            )
            self._indexes[partition] = index
        return self._indexes[partition]

    def plan(self, entry: CacheEntry, now: float) -> Plan | None:
        reference = answer_text(entry.response_json)
        if reference is None:
            return None
        policy = self.policies.by_name.get(entry.category) or self.policies[DEFAULT]
        partition = Partition(entry.tenant, entry.namespace, entry.category)
        if entry.embedding_model == self.embedder.model_id:
            vector = decode_vectors([entry.embedding], entry.embedding_dim)[0]
        else:
            vector = self.embedder.embed([entry.text])[0]
        found = [
            n for n in self._index(partition).search(vector, SEARCH_K) if n.entry_id != entry.id
        ]
        rows = lookup_entries(self.store, [n.entry_id for n in found])
        candidates = [
            example
            for neighbor in found
            if (row := rows.get(neighbor.entry_id)) is not None
            and (example := candidate(row, neighbor.similarity, now)) is not None
        ]
        limits = ExampleLimits(
            policy.examples, policy.example_floor, policy.example_budget_tokens,
            policy.example_k_max,
        )  # fmt: skip
        chosen = choose(
            candidates, limits, threshold=policy.threshold, query=entry.text, guard=policy.guard
        )
        request = json.loads(entry.request_json)
        body = {k: v for k, v in request.items() if k not in ("stream", "stream_options")}
        body["messages"] = with_examples(request["messages"], chosen)
        return Plan(entry, reference, chosen, body)


class Refiner:
    def __init__(
        self,
        route: Route,
        upstreams: Upstreams,
        embedder: Embedder,
        *,
        judge: str,
        judge_threshold: float,
        budget_usd: float,
    ) -> None:
        self.route, self.upstreams, self.embedder = route, upstreams, embedder
        self.judge, self.judge_threshold, self.budget = judge, judge_threshold, budget_usd
        self.spent = 0.0

    @property
    def exhausted(self) -> bool:
        return self.spent >= self.budget

    async def _ask(self, member: str, body: dict[str, Any]) -> str:
        model = self.route.member(member)
        completion = await self.upstreams.for_model(model).complete(model, body, None)
        usage = completion.get("usage") or {}
        self.spent += price(
            model.litellm_model,
            int(usage.get("prompt_tokens") or 0),
            int(usage.get("completion_tokens") or 0),
        )
        return str(completion["choices"][0]["message"].get("content") or "")

    async def acceptable(self, plan: Plan) -> bool:
        """Ask the small model with the examples, and judge its answer."""
        candidate = await self._ask("small", plan.body)
        if self.judge == "llm":
            question = (
                f"Question:\n{plan.entry.text}\n\nReference answer:\n{plan.reference}\n\n"
                f"Candidate answer:\n{candidate}"
            )
            body = {
                "messages": [
                    {"role": "system", "content": JUDGE_PROMPT},
                    {"role": "user", "content": question},
                ],
                "temperature": 0,
                "max_tokens": 3,
            }
            verdict = await self._ask("large", body)
            return verdict.strip().upper().startswith("YES")
        vectors = await asyncio.to_thread(self.embedder.embed, [candidate, plan.reference])
        return float(np.dot(vectors[0], vectors[1])) >= self.judge_threshold


def estimated_cost(route: Route, plan: Plan, judge: str) -> float:
    prompt = sum(estimate_tokens(str(m.get("content") or "")) + 4 for m in plan.body["messages"])
    answer = max(plan.entry.completion_tokens, estimate_tokens(plan.reference))
    cost = price(route.small.litellm_model, prompt, answer)
    if judge == "llm":
        judged = estimate_tokens(plan.entry.text) + 2 * answer + 60
        cost += price(route.large.litellm_model, judged, 1)
    return cost


async def refine(
    settings: Settings,
    store: Store,
    embedder: Embedder,
    upstreams: Upstreams,
    args: argparse.Namespace,
    *,
    progress: Callable[[int, int], Any] | None = None,
) -> Summary:
    """See the module. `progress(done, total)` follows the judgements."""
    check_arguments(args)
    route = route_of(settings, args.route)
    now = time.time()
    ids = await asyncio.to_thread(large_answers, store, now, args.tenant)
    sampled = random.Random(args.seed).sample(ids, min(args.sample, len(ids)))
    summary = Summary(sampled=len(sampled), dry_run=args.dry_run, judge=args.judge)
    planner = Planner(settings, store, embedder)
    rows = await asyncio.to_thread(entries_by_id, store, sampled)
    plans = []
    for entry_id in sampled:
        plan = await asyncio.to_thread(planner.plan, rows[entry_id], now)
        if plan is None or not plan.examples:
            summary.without_examples += 1
        else:
            plans.append(plan)
    if args.dry_run:
        for plan in plans:
            summary.estimated_usd += estimated_cost(route, plan, args.judge)
            summary.plans.append(
                {"entry_id": plan.entry.id, "examples": [e.entry_id for e in plan.examples]}
            )
        return summary
    refiner = Refiner(
        route,
        upstreams,
        embedder,
        judge=args.judge,
        judge_threshold=args.judge_threshold,
        budget_usd=args.budget_usd,
    )
    slots = asyncio.Semaphore(args.concurrency)

    async def judge_one(plan: Plan) -> None:
        async with slots:
            if refiner.exhausted:
                summary.stopped_by_budget = True
                return
            helped = await refiner.acceptable(plan)
            ids = [e.entry_id for e in plan.examples]
            credited = await asyncio.to_thread(
                lambda: credit_examples(store, plan.entry.tenant, ids, helped=helped)
            )
            summary.credited += credited  # after the await: judgements run concurrently
            summary.judged += 1
            summary.helped += int(helped)
            if progress is not None:
                progress(summary.judged, len(plans))

    await asyncio.gather(*(judge_one(plan) for plan in plans))
    summary.spent_usd = refiner.spent
    if args.retire_after > 0:
        summary.retired = await asyncio.to_thread(
            retire_examples, store, after_uses=args.retire_after
        )
    return summary


def report(summary: Summary) -> str:
    lines = [f"sampled {summary.sampled} large-model misses; {summary.without_examples} had "
             "no examples in their category's band"]  # fmt: skip
    if summary.dry_run:
        lines.append(
            f"dry run: would ask the small model {len(summary.plans)} times, about "
            f"${summary.estimated_usd:.4f} (judge: {summary.judge}); nothing was called or written"
        )
        return "\n".join(lines)
    share = summary.helped / summary.judged if summary.judged else 0.0
    lines.append(
        f"judged {summary.judged} ({summary.judge}): examples helped {summary.helped} "
        f"({share:.0%}); {summary.credited} example uses credited; {summary.retired} retired"
    )
    lines.append(f"spent ${summary.spent_usd:.4f}")
    if summary.stopped_by_budget:
        lines.append("stopped early: the budget was reached")
    return "\n".join(lines)
