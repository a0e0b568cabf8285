"""Training a similarity model, centrally or with Flower, into a versioned model directory.

    python -m federated.train --pairs qqp_pairs.jsonl --paraphrases paraphrase_pairs.jsonl

is what `gateway train` runs. The pairs are split without leaks (`federated.pairs.split`):
training, validation (chooses the epoch or round and the thresholds) and test (left alone
for benchmarks). The output is `<out>/<name>-<version>/` (see `embeddings.card`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from embeddings.card import ModelCard, adapter_digests, write_card
from embeddings.model import ModelSource, bundled_minilm
from federated.augment import contrast_pairs
from federated.compression import add_projection
from federated.evaluate import CacheView, cache_view
from federated.pairs import Pair, PairsError, check_trainable, read_pairs, split
from federated.task import SimilarityModel, TrainOptions

logger = logging.getLogger(__name__)

MIN_CATEGORY_DUPLICATES = 100  # for a category's own threshold
PRECISION_FLOOR = 0.85


@dataclass
class Dataset:
    train: list[Pair]
    validation: list[Pair]
    test: list[Pair]
    sources: list[dict[str, Any]] = field(default_factory=list)


def load_dataset(
    pairs: Sequence[Path],
    paraphrases: Sequence[Path] = (),
    *,
    strict: bool = False,
    contrast: int = 0,
    report: Callable[[str], None] = print,
) -> Dataset:
    """Read, check and split the files. Paraphrase files (every line a duplicate) only add
    training pairs; validation and test come from the labelled files. `contrast` adds up to
    that many contrast non-duplicates made from training questions (`federated.augment`)."""
    data = Dataset([], [], [])
    for path, default in [(p, None) for p in pairs] + [(p, 1) for p in paraphrases]:
        read = read_pairs(path, strict=strict, default_label=default)
        for problem in read.problems[:20]:
            report(f"{path}:{problem.line}: skipped: {problem.reason}")
        if len(read.problems) > 20:
            report(f"{path}: {len(read.problems) - 20} more lines skipped")
        parts = split(read.pairs)
        if default is None:
            data.train += parts.train
            data.validation += parts.validation
            data.test += parts.test
        else:
            data.train += read.pairs
        data.sources.append(
            {"file": path.name, "pairs": len(read.pairs), "skipped": len(read.problems)}
        )
    if contrast:
        made = contrast_pairs(data.train, contrast)
        data.train += made
        data.sources.append({"file": "contrast pairs (federated/augment.py)", "pairs": len(made)})
    check_trainable(data.train)
    check_trainable(data.validation, "validation set")
    return data


def measure(model: SimilarityModel, pairs: Sequence[Pair]) -> CacheView:
    return cache_view(pairs, model.embed([p.a for p in pairs]), model.embed([p.b for p in pairs]))


def summary(view: CacheView) -> dict[str, Any]:
    best = view.best()
    floor = view.recall_at_precision(PRECISION_FLOOR)
    return {
        "best": best.to_dict(),
        f"recall_at_precision_{PRECISION_FLOOR}": floor.to_dict() if floor else None,
    }


def contrast_check(model: SimilarityModel, pairs: Sequence[Pair], threshold: float) -> float:
    """The share of contrast pairs made from validation questions scored below the
    threshold: near-misses the model tells apart."""
    made = contrast_pairs(pairs, 2000, seed=1)
    if not made:
        return 1.0
    a, b = model.embed([p.a for p in made]), model.embed([p.b for p in made])
    return round(float(np.mean(np.sum(a * b, axis=1) < threshold)), 4)


def category_thresholds(
    model: SimilarityModel, pairs: Sequence[Pair], view: CacheView
) -> dict[str, float]:
    """Each category's best F0.5 threshold, where validation holds enough duplicates of it.
    Queries are classified as the gateway would: rules, then the nearest prototype."""
    from categories.classifier import Classifier
    from categories.policy import load_policies

    class _Embedder:
        dim = 384

        def embed(self, texts: Sequence[str]) -> np.ndarray:
            return model.embed(list(texts))

    classifier = Classifier.build(load_policies(), _Embedder())  # type: ignore[arg-type]
    queries = [p.b for p in pairs]
    vectors = model.embed(queries)
    names = np.asarray(
        [classifier.classify(q, v).category for q, v in zip(queries, vectors, strict=True)]
    )
    labels = np.asarray([p.label for p in pairs])
    thresholds = {}
    for name in sorted(set(names.tolist())):
        chosen = names == name
        duplicates = int(np.sum(labels[chosen]))
        if duplicates < MIN_CATEGORY_DUPLICATES:
            continue
        own = CacheView(view.similarity[chosen], view.correct[chosen], duplicates)
        thresholds[name] = own.best().threshold
    return thresholds


def write_model(
    model: SimilarityModel,
    out: Path,
    *,
    name: str,
    version: str,
    source: ModelSource,
    threshold: float,
    thresholds: dict[str, float],
    details: dict[str, Any],
) -> Path:
    """Write the adapter and its card to `<out>/<name>-<version>`, atomically."""
    target = out / f"{name}-{version}"
    if target.exists():
        raise FileExistsError(f"{target} exists: choose another --version")
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out, prefix=f".{name}-"))
    try:
        model.save_adapter(staging)
        for extra in staging.iterdir():  # peft also writes a README of its own
            if extra.name not in ("adapter_config.json", "adapter_model.safetensors"):
                extra.unlink()
        card = ModelCard(
            name=name,
            version=version,
            base=source.name,
            base_sha256=source.sha256,
            dim=source.dim,
            files=adapter_digests(staging),
            threshold=threshold,
            thresholds=thresholds,
            details=details,
        )
        write_card(staging, card)
        for path in staging.iterdir():
            path.chmod(0o644)
        staging.chmod(0o755)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def train_central(
    data: Dataset,
    options: TrainOptions,
    *,
    source: ModelSource | None = None,
    progress: Callable[[str, int, int, float], None] | None = None,
) -> tuple[SimilarityModel, dict[str, Any]]:
    """Train epoch by epoch; keep the epoch with the best validation F0.5."""
    source = source or bundled_minilm()
    epochs = max(1, int(np.ceil(options.epochs)))
    per_epoch = TrainOptions(**{**options.__dict__, "epochs": options.epochs / epochs})
    model = SimilarityModel(source, per_epoch)
    base = measure(model, data.validation)  # the adapter starts as the identity
    history = [{"epoch": 0, **summary(base)}]
    best_arrays, best_f = model.adapter_arrays(), base.best().f_beta
    for epoch in range(1, epochs + 1):
        began = time.perf_counter()
        model.options = TrainOptions(**{**per_epoch.__dict__, "seed": options.seed + epoch})

        def step(i: int, total: int, loss: float, epoch: int = epoch) -> None:
            if progress is not None:
                progress(f"epoch {epoch}/{epochs} loss", i, total, loss)

        loss = model.train(data.train, progress=step)
        view = measure(model, data.validation)
        history.append(
            {
                "epoch": epoch,
                "loss": round(loss, 5),
                "seconds": round(time.perf_counter() - began, 1),
                **summary(view),
            }
        )
        if view.best().f_beta > best_f:
            best_arrays, best_f = model.adapter_arrays(), view.best().f_beta
    model.load_adapter_arrays(best_arrays)
    return model, {"mode": "central", "epochs": history, "base_validation": summary(base)}


def finish(
    model: SimilarityModel,
    data: Dataset,
    training: dict[str, Any],
    options: TrainOptions,
    *,
    out: Path,
    name: str,
    version: str | None,
    source: ModelSource | None = None,
    compress: int = 0,
) -> Path:
    """Choose the thresholds on validation and write the model directory; with `compress`,
    a projection to that many dimensions too (`federated.compression`)."""
    source = source or bundled_minilm()
    view = measure(model, data.validation)
    thresholds = category_thresholds(model, data.validation, view)
    details = {
        "data": {
            "sources": data.sources,
            "train_pairs": len(data.train),
            "validation_pairs": len(data.validation),
            "test_pairs": len(data.test),
            "split": "connected components of shared questions, by SHA-256: 80/10/10",
        },
        "training": {
            **training,
            "options": {k: v for k, v in options.__dict__.items() if k != "device"},
        },
        "validation": {
            **summary(view),
            "contrast_pairs_below_threshold": contrast_check(
                model, data.validation, view.best().threshold
            ),
        },
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    directory = write_model(
        model,
        out,
        name=name,
        version=version or time.strftime("%Y%m%d-%H%M%S", time.gmtime()),
        source=source,
        threshold=view.best().threshold,
        thresholds=thresholds,
        details=details,
    )
    if compress:
        add_projection(directory, model.embed, data.train, data.validation, compress)
    return directory


def run(args: argparse.Namespace) -> Path:
    """The command: load, train, choose thresholds, write. Progress goes to the terminal."""
    from rich.progress import Progress

    data = load_dataset(args.pairs, args.paraphrases, strict=args.strict, contrast=args.contrast)
    if args.limit:
        data.train = data.train[: args.limit]
        check_trainable(data.train)
    options = TrainOptions(
        epochs=args.epochs,
        batch=args.batch,
        learning_rate=args.learning_rate,
        device=args.device,
        proximal_mu=args.proximal_mu if args.strategy == "fedprox" else 0.0,
    )
    print(
        f"{len(data.train)} training pairs, {len(data.validation)} validation, "
        f"{len(data.test)} held out for tests"
    )
    with Progress() as bar:
        task = bar.add_task("training", total=None)

        def progress(label: str, step: int, total: int, value: float) -> None:
            bar.update(task, description=f"{label} {value:.4f}", completed=step, total=total)

        if args.federated:
            from federated.simulation import train_federated

            model, training = train_federated(
                data,
                options,
                clients=args.clients,
                rounds=args.rounds,
                strategy=args.strategy,
                progress=progress,
            )
        else:
            model, training = train_central(data, options, progress=progress)
    directory = finish(
        model,
        data,
        training,
        options,
        out=args.out,
        name=args.name,
        version=args.version,
        compress=args.compress,
    )
    card = json.loads((directory / "card.json").read_text())
    print(f"wrote {directory}")
    print(f"validation: {json.dumps(card['validation'])}")
    print(f"threshold {card['threshold']}, per category {card['thresholds']}")
    return directory


def command(args: argparse.Namespace) -> int:
    """`gateway train`: 0 when a model directory was written, 2 with a reason when not."""
    try:
        run(args)
    except (PairsError, FileExistsError) as exc:
        print(f"gateway train: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from federated.arguments import add_arguments

    parser = add_arguments(argparse.ArgumentParser(prog="gateway train", description=__doc__))
    return command(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
