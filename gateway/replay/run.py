"""Running a workload through the gateway in-process: the same app, cache, policies and
code path as `gateway serve`, against the simulated upstream (priced as `--model`) or the
configured one. What each request got is read back from the responses and the event log."""

from __future__ import annotations

import json
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from embeddings.protocol import Embedder
from gateway.app import create_app
from gateway.replay.workload import Request, Workload
from gateway.settings import ModelSettings, RouteSettings, Settings, StoreSettings
from gateway.upstream import SIMULATED_PREFIX, SimulatedUpstream, SimulationProfile

REPLAY_DEADLINE_MS = 60_000.0
# The simulated upstream answers at once; its latency is modelled, not slept.
MODELLED = SimulationProfile()


@dataclass
class Result:
    request: Request
    status: int
    outcome: str  # hit_exact, hit_semantic, hit_coalesced, miss, bypass, error
    category: str
    similarity: float | None  # hits: of the served entry; misses: of the nearest one
    threshold: float | None
    entry_id: int | None  # served (hits) or stored (misses)
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float  # misses: what the upstream cost; hits: what was saved
    latency_ms: float  # the gateway's, end to end
    upstream_ms: float | None  # misses: modelled (simulated) or measured (live)
    waited_ms: float = 0.0  # time the gateway actually waited on the upstream
    route: str | None = None  # misses of a route: the member that answered (small, large)
    examples: int = 0  # in-context examples the small member was given
    routing_saved_usd: float | None = None  # the large member's price less the small's
    bypass_reason: str | None = None  # bypasses: why the cache was not used


@contextmanager
def replay_settings(
    config: Settings | None, models: set[str], model: str, live: bool, small: str | None = None
) -> Iterator[Settings]:
    """The configured settings, or defaults with a temporary store; with the simulated
    upstream, every model the workload names is answered by it and priced as `model`. With
    `small`, every such name is a route instead: its large member priced as `model`, its small
    one as `small`, so the replay shows what routing misses would have saved."""
    settings = config or Settings.from_dict({}, {})
    with tempfile.TemporaryDirectory(prefix="gateway-replay-") as folder:
        if config is None:
            store = StoreSettings(url=f"sqlite:///{Path(folder) / 'replay.db'}")
            # No lookup fails open for time: a replay says what the cache would do, the same
            # on a busy machine as on an idle one.
            cache = replace(settings.cache, lookup_deadline_ms=REPLAY_DEADLINE_MS)
            settings = replace(settings, store=store, cache=cache)
        if not live and small is None:
            simulated = tuple(
                ModelSettings(name=name, litellm_model=f"{SIMULATED_PREFIX}{model}")
                for name in sorted(models)
            )
            settings = replace(settings, models=simulated, routes=())
        elif not live:
            members, routes = [], []
            for name in sorted(models):
                large, little = f"{name}@large", f"{name}@small"
                members.append(ModelSettings(large, f"{SIMULATED_PREFIX}{model}", tier="large"))
                members.append(ModelSettings(little, f"{SIMULATED_PREFIX}{small}"))
                routes.append(RouteSettings(name=name, small=little, large=large))
            settings = replace(settings, models=tuple(members), routes=tuple(routes))
        yield settings


def run(
    workload: Workload,
    settings: Settings,
    *,
    live: bool,
    speed: float = 0.0,
    concurrency: int = 1,
    embedder: Embedder | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[Result], int]:
    """Replay every request in order (paced by timestamps at `speed`x when > 0), with up to
    `concurrency` in flight, taken in workload order (requests in flight together may reach
    the gateway in either order, and identical ones coalesce, as in service).
    Returns the results, in workload order, and the cache size at the end."""
    app = create_app(
        settings,
        embedder=embedder,
        salt=b"gateway-replay",
        simulated=SimulatedUpstream(SimulationProfile(0.0, 0.0)),
    )
    by_response: dict[str, Result] = {}
    finished = 0
    lock = threading.Lock()
    with TestClient(app, raise_server_exceptions=False) as client:
        gateway = client.app.state.gateway  # type: ignore[attr-defined]

        def send(request: Request) -> Result:
            nonlocal finished
            headers = {"authorization": f"Bearer {request.tenant}"} if request.tenant else {}
            began = time.perf_counter()
            response = client.post("/v1/chat/completions", json=request.body, headers=headers)
            result = _result(request, response, (time.perf_counter() - began) * 1000)
            response_id = _response_id(response)
            with lock:
                if response_id is not None:
                    by_response[response_id] = result
                finished += 1
                if progress:
                    progress(finished)
            return result

        start_wall = time.monotonic()
        first = next((r.timestamp for r in workload.requests if r.timestamp is not None), None)
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="replay") as pool:
            sent = []
            for request in workload.requests:
                if speed > 0 and first is not None and request.timestamp is not None:
                    wait = (request.timestamp - first) / speed - (time.monotonic() - start_wall)
                    if wait > 0:
                        time.sleep(wait)
                sent.append(pool.submit(send, request))
                if concurrency == 1:
                    sent[-1].result()  # strictly one after the other
            results = [future.result() for future in sent]
        client.portal.call(gateway.events.flush)  # type: ignore[union-attr]
        store = gateway.cache.store
        rows = store.event_costs()
        size = store.count_entries()
    for response_id, entry_id, upstream_ms, cost, prompt_tokens, completion_tokens, saved in rows:
        matched = by_response.get(response_id) if response_id else None
        if matched is None:
            continue
        matched.routing_saved_usd = saved
        matched.entry_id = entry_id
        matched.cost_usd = cost
        matched.prompt_tokens, matched.completion_tokens = prompt_tokens, completion_tokens
        matched.waited_ms = upstream_ms or 0.0
        if matched.outcome == "miss":
            matched.upstream_ms = upstream_ms if live else _modelled(matched.completion_tokens)
    return results, size


def _response_id(response: Any) -> str | None:
    """The completion id, from a JSON body or the first chunk of a stream."""
    if response.status_code >= 400:
        return None
    if "text/event-stream" in response.headers.get("content-type", ""):
        for line in response.text.split("\n"):
            if line.startswith("data: {"):
                return _id_of(line.removeprefix("data: "))
        return None
    return _id_of(response.text)


def _id_of(text: str) -> str | None:
    try:
        value = json.loads(text).get("id")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def _modelled(completion_tokens: int) -> float:
    return (MODELLED.first_token_s + MODELLED.per_token_s * completion_tokens) * 1000


def _result(request: Request, response: Any, latency: float) -> Result:
    headers = response.headers
    outcome = headers.get("x-cache", "error")
    if response.status_code >= 400:
        outcome = "error"
    elif outcome == "hit":
        outcome = f"hit_{headers.get('x-cache-tier', 'semantic')}"
    similarity = headers.get("x-cache-similarity") or headers.get("x-cache-nearest")
    threshold = headers.get("x-cache-threshold")
    examples = headers.get("x-cache-examples", "")
    return Result(
        request=request,
        status=response.status_code,
        outcome=outcome,
        category=headers.get("x-cache-category", ""),
        similarity=float(similarity) if similarity else None,
        threshold=float(threshold) if threshold else None,
        entry_id=None,
        prompt_tokens=0,
        completion_tokens=0,
        cost_usd=0.0,
        latency_ms=latency,
        upstream_ms=None,
        route=headers.get("x-gateway-route") if headers.get("x-gateway-route-reason") else None,
        examples=int(examples.split(";")[0].removeprefix("count=")) if examples else 0,
        bypass_reason=headers.get("x-cache-bypass-reason") if outcome == "bypass" else None,
    )
