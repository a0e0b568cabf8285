"""The `gateway` command."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from gateway.settings import Settings, SettingsError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="run the engine on bundled QQP pairs")
    demo.add_argument("--pairs", type=int, default=500, help="how many pairs (max 6000)")
    demo.add_argument("--threshold", type=float, default=0.85, help="cosine threshold")

    commands.add_parser("migrate", help="apply pending schema migrations to the store")

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
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    if args.command == "demo":
        from gateway.demo import run_demo

        if not 0.0 < args.threshold <= 1.0:
            print("gateway: --threshold must be in (0, 1]", file=sys.stderr)
            return 2
        run_demo(settings, pairs=args.pairs, threshold=args.threshold, out=sys.stdout)
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


if __name__ == "__main__":
    sys.exit(main())
