"""The Flower server: aggregates the clients' adapters (FedAvg, or FedProx), evaluates each
round's global adapter on the validation pairs, and keeps the best round.

It writes the chosen adapter and the history to the run's `result-file` (a NumPy `.npz`),
from which `federated.simulation` (or an operator, after `flwr run`) writes a model
directory.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg, FedProx

from embeddings.model import bundled_minilm
from federated.config import merged, train_options
from federated.pairs import check_trainable, read_pairs
from federated.task import SimilarityModel

logger = logging.getLogger(__name__)


def save_result(path: Path, arrays: list[np.ndarray], history: list[dict[str, Any]]) -> None:
    payload = {f"array_{i:04d}": a for i, a in enumerate(arrays)}
    with path.open("wb") as handle:
        np.savez(handle, history=np.array(json.dumps(history)), **payload)  # type: ignore[arg-type]


def load_result(path: Path) -> tuple[list[np.ndarray], list[dict[str, Any]]]:
    with np.load(path) as data:
        names = sorted(n for n in data.files if n.startswith("array_"))
        return [data[n] for n in names], json.loads(str(data["history"]))


def server_app(
    defaults: Mapping[str, Any] | None = None,
    on_round: Callable[[int, int, float], None] | None = None,
) -> ServerApp:
    """The server; `on_round(round, rounds, f_beta)` follows progress in the simulation."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        from federated.train import Dataset, finish, measure, summary

        config = merged(context.run_config, defaults or {})
        validation = read_pairs(Path(str(config["validation-file"]))).pairs
        check_trainable(validation, "validation set")
        model = SimilarityModel(bundled_minilm(), train_options(config))
        initial = model.adapter_arrays()
        update_bytes = int(sum(a.nbytes for a in initial))
        history: list[dict[str, Any]] = []
        best: dict[str, Any] = {"f": -1.0, "arrays": initial}
        began = [time.perf_counter()]

        def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
            weights = arrays.to_numpy_ndarrays()
            model.load_adapter_arrays(weights)
            scores = summary(measure(model, validation))
            f = float(scores["best"]["f_beta"])
            history.append(
                {
                    "round": server_round,
                    "seconds": round(time.perf_counter() - began[0], 1),
                    "bytes_per_client_update": update_bytes,
                    **scores,
                }
            )
            began[0] = time.perf_counter()
            if f > best["f"]:
                best.update(f=f, arrays=weights)
            if on_round is not None:
                on_round(server_round, int(config["rounds"]), f)
            return MetricRecord({"f-beta": f, "threshold": float(scores["best"]["threshold"])})

        strategy: FedAvg
        if config["strategy"] == "fedprox":
            strategy = FedProx(fraction_evaluate=0.0, proximal_mu=float(config["proximal-mu"]))
        else:
            strategy = FedAvg(fraction_evaluate=0.0)
        strategy.start(
            grid=grid,
            initial_arrays=ArrayRecord(initial),
            num_rounds=int(config["rounds"]),
            train_config=ConfigRecord({"local-epochs": float(config["local-epochs"])}),
            evaluate_fn=evaluate,
        )
        if config["result-file"]:
            save_result(Path(str(config["result-file"])), best["arrays"], history)
        if config["out-dir"]:  # the deployment engine: the model directory is written here
            model.load_adapter_arrays(best["arrays"])
            data = Dataset(train=[], validation=validation, test=[])
            data.sources.append({"file": "the clients' own pairs (never sent)", "pairs": None})
            training = {"mode": "federated", "engine": "deployment", "rounds": history}
            directory = finish(
                model,
                data,
                training,
                train_options(config),
                out=Path(str(config["out-dir"])),
                name=str(config["name"]),
                version=str(config["version"]) or None,
            )
            logger.info("wrote %s", directory)

    return app


app = server_app()  # for the deployment engine (`[tool.flwr.app.components]`)
