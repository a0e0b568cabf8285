"""Shared bits of the benchmarks: finding data, printing a table, writing JSON."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embeddings.protocol import Embedder, Vectors, embed_all

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"


def add_cache_dir(parser: argparse.ArgumentParser) -> None:
    """`--cache-dir`: where the exported model is cached (as `gateway serve` would)."""
    from gateway.settings import default_model_cache

    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(os.environ.get("GATEWAY_EMBEDDING_CACHE_DIR", default_model_cache())),
    )


def shared_data() -> Path:
    """The public data folder (`../shared/data` beside the checkout, or $GATEWAY_SHARED_DATA)."""
    path = Path(os.environ.get("GATEWAY_SHARED_DATA", REPO.parent / "shared" / "data"))
    if not path.is_dir():
        raise SystemExit(f"public data not found at {path}; set GATEWAY_SHARED_DATA")
    return path


def read_pairs(path: Path) -> list[dict[str, Any]]:
    """Labelled pairs, one JSON object per line (split on newlines only: prompts may hold
    other line separators)."""
    return [json.loads(line) for line in path.read_text().split("\n") if line.strip()]


def duplicate_pairs(pairs: Sequence[dict[str, Any]]) -> set[tuple[str, str]]:
    """(a, b) and (b, a) for every pair labelled the same question."""
    same = {(str(p["a"]), str(p["b"])) for p in pairs if p["label"] == 1}
    return same | {(b, a) for a, b in same}


def machine() -> dict[str, Any]:
    import onnxruntime as ort

    return {
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "onnxruntime": ort.__version__,
        "providers": ort.get_available_providers(),
        "date": time.strftime("%Y-%m-%d"),
    }


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print("  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)))


def write_json(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2))
    print(f"\nwrote {path}")
    return path


def percentiles(samples_ms: Sequence[float]) -> dict[str, float]:
    data = np.asarray(samples_ms)
    return {
        "p50": float(np.percentile(data, 50)),
        "p95": float(np.percentile(data, 95)),
        "mean": float(data.mean()),
    }


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1 else f"{value:.2f}"
    return str(value)


def embed_cached(embedder: Embedder, texts: Sequence[str], name: str) -> Vectors:
    """Embed `texts` once per model: later runs read the vectors from bench/results/vectors."""
    digest = hashlib.sha256("\x00".join([embedder.model_id, *texts]).encode()).hexdigest()[:16]
    path = RESULTS / "vectors" / f"{name}-{digest}.npy"
    if path.exists():
        vectors: Vectors = np.load(path)
        return vectors
    vectors = embed_all(embedder, texts)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors
