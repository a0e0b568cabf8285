"""The Flower client: one tenant. It trains the adapter on its own labelled pairs and sends
back only the adapter's weights and how many pairs it trained on.

A client's pairs are `client-<partition-id>.jsonl` in the run's `partitions-dir` (the
simulation), or the file its SuperNode names in its node config as `pairs-file` (the
deployment engine: `flower-supernode --node-config "pairs-file='tenant.jsonl'"`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from embeddings.model import bundled_minilm
from federated.config import merged, train_options
from federated.pairs import check_trainable, read_pairs
from federated.task import SimilarityModel


def pairs_file(context: Context, config: Mapping[str, Any]) -> Path:
    own = context.node_config.get("pairs-file")
    if own:
        return Path(str(own))
    partition = int(context.node_config["partition-id"])
    return Path(str(config["partitions-dir"])) / f"client-{partition}.jsonl"


def client_app(defaults: Mapping[str, Any] | None = None) -> ClientApp:
    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        import torch

        torch.set_num_threads(1)
        config = merged(context.run_config, defaults or {})
        pairs = read_pairs(pairs_file(context, config)).pairs
        check_trainable(pairs, "client's training set")
        sent = msg.content["config"]
        mu = float(cast(float, sent["proximal-mu"])) if "proximal-mu" in sent else 0.0
        round_seed = int(cast(int, sent["server-round"])) if "server-round" in sent else 0
        options = train_options(config, proximal_mu=mu)
        options = type(options)(**{**options.__dict__, "seed": options.seed + round_seed})
        model = SimilarityModel(bundled_minilm(), options)
        arrays = msg.content["arrays"]
        assert isinstance(arrays, ArrayRecord)
        model.load_adapter_arrays(arrays.to_numpy_ndarrays())
        loss = model.train(pairs)
        reply = RecordDict(
            {
                "arrays": ArrayRecord(model.adapter_arrays()),
                "metrics": MetricRecord({"num-examples": len(pairs), "train-loss": loss}),
            }
        )
        return Message(content=reply, reply_to=msg)

    return app


app = client_app()  # for the deployment engine (`[tool.flwr.app.components]`)
