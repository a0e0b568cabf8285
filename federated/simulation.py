"""Federated training in one process, with Flower's simulation engine: the training pairs
are split by topic between N clients (non-IID), each trains on its own part, and only
adapter weights travel."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from embeddings.model import bundled_minilm
from federated.pairs import check_trainable, partition_by_topic, write_pairs
from federated.task import SimilarityModel, TrainOptions
from federated.train import Dataset

logger = logging.getLogger(__name__)


def train_federated(
    data: Dataset,
    options: TrainOptions,
    *,
    clients: int,
    rounds: int,
    strategy: str = "fedavg",
    progress: Callable[[str, int, int, float], None] | None = None,
) -> tuple[SimilarityModel, dict[str, Any]]:
    """Run the Flower apps for `rounds` rounds; returns the best round's model."""
    from flwr.simulation import run_simulation

    from federated.client_app import client_app
    from federated.server_app import load_result, server_app

    model = SimilarityModel(bundled_minilm(), options)
    parts = partition_by_topic(data.train, model.embed([p.a for p in data.train]), clients)
    for part in parts:
        check_trainable(part, "training set of a client")
    with tempfile.TemporaryDirectory(prefix="federated-") as scratch:
        root = Path(scratch)
        for i, part in enumerate(parts):
            write_pairs(root / f"client-{i}.jsonl", part)
        write_pairs(root / "validation.jsonl", data.validation)
        config = {
            "partitions-dir": str(root),
            "validation-file": str(root / "validation.jsonl"),
            "result-file": str(root / "result.npz"),
            "rounds": rounds,
            "strategy": strategy,
            "proximal-mu": options.proximal_mu or 0.01,
            "local-epochs": options.epochs,
            "batch": options.batch,
            "learning-rate": options.learning_rate,
            "max-tokens": options.max_tokens,
            "rank": options.rank,
            "seed": options.seed,
        }
        label = f"federated: {clients} clients, {rounds} rounds, validation F0.5"

        def on_round(done: int, total: int, f_beta: float) -> None:
            if progress is not None:
                progress(label, done, total, f_beta)

        on_round(0, rounds, 0.0)
        run_simulation(
            server_app=server_app(config, on_round),
            client_app=client_app(config),
            num_supernodes=clients,
            backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}},
        )
        arrays, history = load_result(root / "result.npz")
    model.load_adapter_arrays(arrays)
    training = {
        "mode": "federated",
        "engine": "simulation",
        "strategy": strategy,
        "clients": [len(p) for p in parts],
        "split": "k-means on the base model's vectors of each pair's first question",
        "rounds": history,
    }
    return model, training
