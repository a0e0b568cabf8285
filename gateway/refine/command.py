"""`gateway refine`: its arguments (cheap to import, for `gateway --help`) and the command.
What it does is in `gateway.refine.run`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from gateway.settings import Settings

JUDGES = ("similarity", "llm")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML configuration file")
    parser.add_argument("--route", help="the route whose small model is asked (default: first)")
    parser.add_argument("--sample", type=int, default=100, help="misses to replay (default 100)")
    parser.add_argument("--tenant", help="only this tenant's entries (its id in the store)")
    parser.add_argument("--judge", choices=JUDGES, default="similarity", help="how to judge")
    parser.add_argument(
        "--judge-threshold",
        type=float,
        default=0.8,
        help="answer similarity that counts as acceptable (similarity judge; default 0.8)",
    )
    parser.add_argument(
        "--budget-usd", type=float, default=1.0, help="most to spend on calls (default 1.0)"
    )
    parser.add_argument(
        "--retire-after",
        type=int,
        default=3,
        help="retire examples judged this many times that never helped (default 3; 0: never)",
    )
    parser.add_argument("--concurrency", type=int, default=4, help="calls at once (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--dry-run", action="store_true", help="show the plan; call nothing")
    parser.add_argument("--json", type=Path, help="also write the summary here")


def command(args: argparse.Namespace, settings: Settings) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from embeddings.runtime import load_serving
    from gateway.refine.run import RefineError, check_arguments, refine, report, route_of
    from gateway.store import open_store
    from gateway.upstream import SIMULATED_PROFILES, SimulatedUpstream, Upstreams

    try:
        check_arguments(args)
        route_of(settings, args.route)
    except RefineError as exc:
        print(f"gateway refine: {exc}", file=sys.stderr)
        return 2
    store = open_store(settings.store.url)
    embedder = load_serving(settings.embedding.options())
    upstreams = Upstreams(simulated=SimulatedUpstream(profiles=SIMULATED_PROFILES))
    with Progress(
        "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
        TimeRemainingColumn(), console=Console(stderr=True), transient=True,
        disable=args.dry_run,
    ) as bar:  # fmt: skip
        task = bar.add_task("refining", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        summary = asyncio.run(refine(settings, store, embedder, upstreams, args, progress=progress))
    store.engine.dispose()
    print(report(summary))
    if args.json is not None:
        args.json.write_text(json.dumps(summary.to_dict(), indent=2))
    return 0
