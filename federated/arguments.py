"""The arguments of `gateway train` (kept apart so that `gateway --help` stays cheap)."""

from __future__ import annotations

import argparse
from pathlib import Path


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, not {value}")
    return value


def _label(text: str) -> str:
    """A model name or version: it becomes a directory name."""
    if (
        not text
        or len(text) > 64
        or not all(c.isascii() and (c.isalnum() or c in "._-") for c in text)
    ):
        raise argparse.ArgumentTypeError("use 1-64 letters, digits, '.', '_' or '-'")
    if text.startswith("."):
        raise argparse.ArgumentTypeError("must not start with '.'")
    return text


def _dims(text: str) -> int:
    value = int(text)
    if not 0 <= value < 384:
        raise argparse.ArgumentTypeError(f"must be in [1, 383] (0: no projection), not {value}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--pairs", type=Path, action="append", required=True, help="labelled pairs")
    p.add_argument("--paraphrases", type=Path, action="append", default=[], help="all positives")
    p.add_argument("--strict", action="store_true", help="stop at the first malformed line")
    p.add_argument("--out", type=Path, default=Path("models"))
    p.add_argument("--name", type=_label, default="minilm-pairs")
    p.add_argument("--version", type=_label, default=None, help="default: the UTC time")
    p.add_argument("--epochs", type=_positive_float, default=1.0)
    p.add_argument("--batch", type=_positive_int, default=64)
    p.add_argument("--learning-rate", type=_positive_float, default=2e-4)
    p.add_argument("--limit", type=_count, default=0, help="train on this many pairs at most")
    p.add_argument("--contrast", type=_count, default=8000, help="contrast pairs to add")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument(
        "--compress", type=_dims, default=0, help="also fit a PCA projection to this many dims"
    )
    p.add_argument("--federated", action="store_true", help="train with Flower (simulation)")
    p.add_argument("--clients", type=_positive_int, default=3)
    p.add_argument("--rounds", type=_positive_int, default=3)
    p.add_argument("--strategy", choices=("fedavg", "fedprox"), default="fedavg")
    p.add_argument("--proximal-mu", type=_positive_float, default=0.01, help="FedProx only")
    return p
