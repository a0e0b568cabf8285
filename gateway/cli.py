"""The `gateway` command."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from federated.arguments import add_arguments as add_train_arguments
from gateway.refine.command import add_arguments as add_refine_arguments
from gateway.replay.command import add_arguments as add_replay_arguments
from gateway.settings import Settings, SettingsError, sqlite_path
from gateway.train_classifier import add_arguments as add_train_classifier_arguments


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the OpenAI-compatible caching proxy")
    serve.add_argument("--config", type=Path, help="TOML configuration file")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8080)")
    serve.add_argument(
        "--workers", type=int, help="processes serving the port (default server.workers, 1)"
    )

    demo = commands.add_parser("demo", help="run the engine on bundled QQP pairs")
    demo.add_argument("--pairs", type=int, default=500, help="how many pairs (max 6000)")
    demo.add_argument("--threshold", type=float, default=0.85, help="cosine threshold")

    calibrate = commands.add_parser(
        "calibrate", help="choose thresholds from labelled pairs ({a, b, label} JSONL)"
    )
    calibrate.add_argument("pairs", type=Path, help="JSONL file of {a, b, label} pairs")
    calibrate.add_argument("--config", type=Path, help="TOML configuration file")
    calibrate.add_argument("--category", help="only pairs of this category")
    calibrate.add_argument(
        "--target-precision", type=float, default=0.9, help="precision to reach (default 0.9)"
    )
    calibrate.add_argument("--limit", type=int, default=0, help="read at most N pairs")
    calibrate.add_argument("--json", type=Path, help="also write the curves here as JSON")

    replay = commands.add_parser(
        "replay", help="what the cache would save on a workload (and get wrong)"
    )
    add_replay_arguments(replay)

    commands.add_parser("migrate", help="apply pending schema migrations to the store")

    refine = commands.add_parser(
        "refine", help="replay large-model misses on the small model to learn example utility"
    )
    add_refine_arguments(refine)

    export_pairs = commands.add_parser(
        "export-pairs", help="feedback verdicts as labelled pairs, one file per tenant"
    )
    export_pairs.add_argument("--config", type=Path, help="TOML configuration file")
    export_pairs.add_argument("--out", type=Path, required=True, help="directory to write")
    export_pairs.add_argument("--tenant", help="only this tenant (its id in the store)")

    activate = commands.add_parser(
        "activate-model", help="switch a running gateway to another similarity model"
    )
    activate.add_argument("model", help="trained, base, or a model directory")
    activate.add_argument("--url", default="http://127.0.0.1:8080", help="the gateway")
    activate.add_argument(
        "--token-env", default="GATEWAY_ADMIN_TOKEN", help="variable holding the admin token"
    )
    activate.add_argument("--no-wait", action="store_true", help="return once it has started")

    train = commands.add_parser(
        "train", help="train a similarity model on labelled pairs (central or federated)"
    )
    add_train_arguments(train)

    train_classifier = commands.add_parser(
        "train-classifier", help="train the category model on labelled prompts and feedback"
    )
    add_train_classifier_arguments(train_classifier)

    export = commands.add_parser("export-model", help="export the embedding model to ONNX")
    export.add_argument("--int8", action="store_true", help="also build the int8 model")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        settings = Settings.load(getattr(args, "config", None))
    except SettingsError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    if args.command == "serve":
        return _serve(settings, args.host, args.port, args.workers)
    if args.command == "export-pairs":
        from gateway.export_pairs import export_pairs

        written = export_pairs(settings, args.out, args.tenant)
        for owner, path in written.items():
            print(f"{owner}: {path}")
        if not written:
            print("no verdicts with two texts to export", file=sys.stderr)
        return 0
    if args.command == "activate-model":
        from gateway.model_client import activate_model

        return activate_model(
            args.url, args.model, os.environ.get(args.token_env, ""), wait=not args.no_wait
        )
    if args.command == "train":
        from federated.train import command

        return command(args)
    if args.command == "train-classifier":
        from gateway.train_classifier import command as train_classifier

        return train_classifier(args, settings)
    if args.command == "refine":
        from gateway.refine.command import command as refine_command

        return refine_command(args, settings)
    if args.command == "demo":
        from gateway.demo import run_demo

        if not 0.0 < args.threshold <= 1.0:
            print("gateway: --threshold must be in (0, 1]", file=sys.stderr)
            return 2
        run_demo(settings, pairs=args.pairs, threshold=args.threshold, out=sys.stdout)
    elif args.command == "replay":
        from gateway.replay.command import replay

        return replay(args, settings)
    elif args.command == "calibrate":
        return _calibrate(settings, args)
    elif args.command == "migrate":
        from gateway.store import open_store

        open_store(settings.store.url).engine.dispose()
        print(f"store {settings.store.url} is at the latest schema")
    elif args.command == "export-model":
        from embeddings.runtime import load_embedder

        for int8 in (False, True) if args.int8 else (False,):
            options = settings.embedding.options()
            embedder = load_embedder(type(options)(**{**options.__dict__, "int8": int8}))
            print(f"{embedder.model_id} ready on {embedder.provider}")
    return 0


def _calibrate(settings: Settings, args: argparse.Namespace) -> int:
    import json

    from categories.calibrate import PairsError, calibrate, read_pairs, report, to_json
    from categories.classifier import Classifier
    from categories.model import load_model
    from embeddings.runtime import load_embedder

    target = args.target_precision
    if not 0.0 < target <= 1.0:
        print("gateway: --target-precision must be in (0, 1]", file=sys.stderr)
        return 2
    if args.category is not None and args.category not in settings.policies:
        known = ", ".join(p.name for p in settings.policies.policies)
        print(f"gateway: no category {args.category!r} (known: {known})", file=sys.stderr)
        return 2
    try:
        pairs = read_pairs(args.pairs, limit=args.limit)
    except PairsError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    embedder = load_embedder(settings.embedding.options())
    model = load_model(settings.policy_sources.model, settings.trained_category_model())
    classifier = Classifier.build(settings.policies, embedder, model)
    results = calibrate(
        pairs,
        embedder,
        classifier,
        target=target,
        category=args.category,
        progress=lambda message: print(message, file=sys.stderr),
    )
    print(report(results, target))
    if args.json is not None:
        args.json.write_text(json.dumps(to_json(results, target), indent=2))
    return 0


def _serve(settings: Settings, host: str | None, port: int | None, workers: int | None) -> int:
    import uvicorn

    from gateway.app import create_app
    from gateway.auth import SaltError, load_salt
    from gateway.observe import ACCESS_LOGGER
    from gateway.serving import serve_workers, uvicorn_config
    from gateway.store import open_store

    server = replace(
        settings.server,
        host=host or settings.server.host,
        port=port or settings.server.port,
        workers=workers or settings.server.workers,
    )
    settings = replace(settings, server=server)
    access = logging.getLogger(ACCESS_LOGGER)
    access.propagate = False  # JSON lines only, whatever the root format
    if settings.server.access_log:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        access.addHandler(handler)
        access.setLevel(logging.INFO)
    try:  # what every worker and replica must share: a missing one is named before serving
        salt = load_salt(settings.tenants, shared_store=sqlite_path(settings.store.url) is None)
    except SaltError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    if server.workers == 1:
        app = create_app(settings, salt=salt)
        uvicorn.Server(uvicorn_config(app, server, log_level="info", access_log=False)).run()
        return 0
    # Made once, before the workers fork: the schema.
    open_store(settings.store.url).engine.dispose()
    serve_workers(
        lambda number: create_app(settings, salt=salt, worker=number),
        server,
        log_level="info",
        access_log=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
