"""The arguments of `gateway train` (kept apart so that `gateway --help` stays cheap)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--pairs", type=Path, action="append", required=True, help="labelled pairs")
    p.add_argument("--paraphrases", type=Path, action="append", default=[], help="all positives")
    p.add_argument("--strict", action="store_true", help="stop at the first malformed line")
    p.add_argument("--out", type=Path, default=Path("models"))
    p.add_argument("--name", default="minilm-pairs")
    p.add_argument("--version", default=None, help="default: the UTC time")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--learning-rate", type=float, default=2e-4)
    p.add_argument("--limit", type=int, default=0, help="train on this many pairs at most")
    p.add_argument("--contrast", type=int, default=8000, help="contrast pairs to add")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument(
        "--compress", type=int, default=0, help="also fit a PCA projection to this many dims"
    )
    p.add_argument("--federated", action="store_true", help="train with Flower (simulation)")
    p.add_argument("--clients", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--strategy", choices=("fedavg", "fedprox"), default="fedavg")
    p.add_argument("--proximal-mu", type=float, default=0.01, help="FedProx only")
    return p
