"""`gateway replay`: load, (confirm a live run), replay with a progress bar, report."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from gateway.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "workload", nargs="?", help="JSONL file, or a bundled demo: qqp (default), multiturn"
    )
    parser.add_argument("--config", type=Path, help="use this configuration (and its store)")
    parser.add_argument("--model", default="gpt-4o-mini", help="price simulated answers as this")
    parser.add_argument(
        "--route-small",
        metavar="MODEL",
        help="route misses between --model (large) and this small model (simulated upstream)",
    )
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument("--html", type=Path, help="write a self-contained page with charts here")
    parser.add_argument("--threshold-sweep", action="store_true", help="also sweep one threshold")
    parser.add_argument("--upstream", choices=("simulated", "live"), default="simulated")
    parser.add_argument("--limit", type=int, default=0, help="replay at most N requests")
    parser.add_argument("--speed", type=float, default=0.0, help="pace by timestamps, X times")
    parser.add_argument(
        "--concurrency", type=int, default=1, help="requests in flight at once (default 1)"
    )
    parser.add_argument("--strict", action="store_true", help="stop at the first bad line")
    parser.add_argument("--yes", action="store_true", help="no confirmation for --upstream live")


def estimate_usd(requests: list[Any], settings: Settings) -> float:
    """What a live replay costs at most (every request a miss): prompt tokens as characters
    / 4, completions as `max_tokens` or 256, priced by LiteLLM's map."""
    from gateway.upstream import price

    models = {m.name: m.litellm_model for m in settings.models}
    total = 0.0
    for request in requests:
        body = request.body
        chars = sum(len(str(m.get("content", ""))) for m in body["messages"])
        completion = int(body.get("max_tokens") or body.get("max_completion_tokens") or 256)
        model = models.get(body.get("model", ""), "")
        total += price(model, max(1, chars // 4), completion)
    return total


def replay(args: argparse.Namespace, settings: Settings) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from embeddings.runtime import load_serving
    from gateway.replay.html import page
    from gateway.replay.report import figures
    from gateway.replay.run import replay_settings, run
    from gateway.replay.sweep import sweep
    from gateway.replay.terminal import show
    from gateway.replay.workload import WorkloadError, load

    err = Console(stderr=True)
    if args.limit < 0 or args.speed < 0:
        err.print("gateway: --limit and --speed must not be negative")
        return 2
    if args.concurrency < 1:
        err.print("gateway: --concurrency must be at least 1")
        return 2
    live = args.upstream == "live"
    if args.route_small and live:
        err.print("gateway: --route-small is for the simulated upstream; live runs use [[routes]]")
        return 2
    try:
        workload = load(args.workload, model=args.model, limit=args.limit, strict=args.strict)
    except WorkloadError as exc:
        err.print(f"gateway: {exc}", markup=False)
        return 2
    for number, reason in workload.malformed:
        err.print(f"line {number}: {reason} (skipped)", markup=False)
    if live:
        if not settings.models:
            err.print("gateway: --upstream live needs [[models]] in --config")
            return 2
        known = {m.name for m in settings.models}
        unknown = {str(r.body.get("model")) for r in workload.requests} - known
        if unknown:
            err.print(
                f"gateway: the workload names unconfigured models: {', '.join(sorted(unknown))}"
            )
            return 2
        cost = estimate_usd(workload.requests, settings)
        err.print(
            f"{len(workload.requests)} requests to the live upstream: at most about ${cost:,.4f} "
            "if nothing hits"
        )
        if not args.yes:
            if not sys.stdin.isatty():
                err.print("gateway: not confirmed; pass --yes to run it")
                return 1
            if input("run it? [y/N] ").strip().lower() not in ("y", "yes"):
                return 1
    config = settings if args.config else None
    models = {str(r.body.get("model")) for r in workload.requests}
    embedder = load_serving(settings.embedding.options())
    began = time.perf_counter()
    with replay_settings(config, models, args.model, live, args.route_small) as replayed, Progress(
        "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
        TimeRemainingColumn(), console=err, transient=True,
    ) as bar:  # fmt: skip
        task = bar.add_task("replaying", total=len(workload.requests))
        results, size = run(
            workload,
            replayed,
            live=live,
            speed=args.speed,
            concurrency=args.concurrency,
            embedder=embedder,
            progress=lambda done: bar.update(task, completed=done),
        )
    duration = time.perf_counter() - began
    rows = sweep(workload, results, embedder) if args.threshold_sweep else None
    report = figures(
        workload,
        results,
        cache_size=size,
        duration_s=duration,
        upstream=args.upstream,
        model=args.model,
        sweep=rows,
    )
    show(report, Console())
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    if args.html:
        args.html.write_text(page(report), encoding="utf-8")
    return 0
