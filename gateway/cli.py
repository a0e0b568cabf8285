"""The `gateway` command."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from gateway.settings import Settings, SettingsError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the OpenAI-compatible caching proxy")
    serve.add_argument("--config", type=Path, help="TOML configuration file")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8080)")

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
        settings = Settings.load(getattr(args, "config", None))
    except SettingsError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    if args.command == "serve":
        return _serve(settings, args.host, args.port)
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


def _serve(settings: Settings, host: str | None, port: int | None) -> int:
    import uvicorn

    from gateway.app import create_app

    server = replace(
        settings.server, host=host or settings.server.host, port=port or settings.server.port
    )
    settings = replace(settings, server=server)
    # One worker: a process holds its own in-memory index (see README, "Scaling").
    uvicorn.run(
        create_app(settings),
        host=server.host,
        port=server.port,
        workers=1,
        log_level="info",
        access_log=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
