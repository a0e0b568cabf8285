"""The settings a federated run shares between its server and its clients.

They travel as Flower's run config (string keys, plain values), so that the same apps run in
the simulation engine, where `federated.simulation` passes them in, and under the deployment
engine, where `flwr run` reads them from `[tool.flwr.app.config]`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from federated.task import TrainOptions

DEFAULTS: dict[str, Any] = {
    "partitions-dir": "",  # client-<partition-id>.jsonl, one file per client
    "validation-file": "",  # the server's validation pairs
    "result-file": "",  # where the server writes the chosen adapter and the history (.npz)
    "out-dir": "",  # where the server writes the model directory (the deployment engine)
    "name": "minilm-federated",
    "version": "",  # default: the UTC time
    "rounds": 3,
    "strategy": "fedavg",  # or fedprox
    "proximal-mu": 0.01,
    "local-epochs": 1.0,
    "batch": 64,
    "learning-rate": 2e-4,
    "max-tokens": 64,
    "rank": 8,
    "seed": 0,
}


def merged(run_config: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """Flower's run config over the caller's values over the defaults."""
    return {**DEFAULTS, **defaults, **dict(run_config)}


def train_options(config: Mapping[str, Any], *, proximal_mu: float = 0.0) -> TrainOptions:
    return TrainOptions(
        epochs=float(config["local-epochs"]),
        batch=int(config["batch"]),
        learning_rate=float(config["learning-rate"]),
        max_tokens=int(config["max-tokens"]),
        rank=int(config["rank"]),
        seed=int(config["seed"]),
        proximal_mu=proximal_mu,
    )
