"""Federated against central training on the same pairs: validation F0.5 by round, bytes a
client sends per round, seconds per round on this machine.

The clients' parts are non-IID (k-means on the base model's vectors: one cluster of topics
per client), as tenants' data would be. Central training sees the same pairs for the same
number of passes.

    python -m bench.federated [--clients 3] [--rounds 3] [--limit 3000] [--validation 2000]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch

from bench.common import print_table, shared_data, write_json
from federated.pairs import check_trainable
from federated.simulation import train_federated
from federated.task import TrainOptions
from federated.train import load_dataset, measure, summary, train_central


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--limit", type=int, default=3000, help="training pairs")
    parser.add_argument("--validation", type=int, default=2000, help="validation pairs")
    parser.add_argument("--strategy", choices=("fedavg", "fedprox"), default="fedavg")
    args = parser.parse_args()
    torch.set_num_threads(2)
    data = load_dataset(
        [shared_data() / "qqp_pairs.jsonl"], [shared_data() / "paraphrase_pairs.jsonl"]
    )
    data.train = data.train[: args.limit]
    data.validation = data.validation[: args.validation]
    check_trainable(data.train)
    options = TrainOptions(epochs=1.0, batch=32, proximal_mu=0.01)

    began = time.perf_counter()
    fed_model, fed = train_federated(
        data, options, clients=args.clients, rounds=args.rounds, strategy=args.strategy
    )
    fed_seconds = time.perf_counter() - began
    fed_final = summary(measure(fed_model, data.validation))

    began = time.perf_counter()
    central_options = TrainOptions(**{**options.__dict__, "epochs": float(args.rounds)})
    _, central = train_central(data, central_options)
    central_seconds = time.perf_counter() - began

    rows: list[list[Any]] = []
    for r in fed["rounds"]:
        best = r["best"]
        rows.append([f"federated round {r['round']}", best["f_beta"], best["precision"],
                     best["recall"], best["threshold"], r["bytes_per_client_update"],
                     r["seconds"]])  # fmt: skip
    for e in central["epochs"]:
        best = e["best"]
        rows.append([f"central epoch {e['epoch']}", best["f_beta"], best["precision"],
                     best["recall"], best["threshold"], "", e.get("seconds", "")])  # fmt: skip
    print(
        f"\n{len(data.train)} training pairs over {args.clients} clients "
        f"({fed['clients']}), {len(data.validation)} validation pairs, {args.strategy}\n"
    )
    print_table(
        ["run", "F0.5", "precision", "recall", "threshold", "bytes/client/round", "seconds"],
        rows,
    )
    best_fed = max(r["best"]["f_beta"] for r in fed["rounds"][1:])
    best_central = max(e["best"]["f_beta"] for e in central["epochs"][1:])
    print(
        f"\nbest F0.5: federated {best_fed:.4f}, central {best_central:.4f} "
        f"(difference {best_central - best_fed:+.4f}); "
        f"{fed_seconds:.0f} s federated, {central_seconds:.0f} s central"
    )
    write_json(
        "federated",
        {
            "training_pairs": len(data.train),
            "validation_pairs": len(data.validation),
            "clients": fed["clients"],
            "strategy": args.strategy,
            "federated_rounds": fed["rounds"],
            "federated_final": fed_final,
            "federated_seconds": round(fed_seconds, 1),
            "central_epochs": central["epochs"],
            "central_seconds": round(central_seconds, 1),
            "best_f_beta": {"federated": best_fed, "central": best_central},
        },
    )


if __name__ == "__main__":
    main()
