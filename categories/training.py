"""Training the category model (`gateway train-classifier`): labelled prompts (the public
data, every category's prototypes, and category labels given as feedback) are embedded by
the model the gateway serves; an MLP is trained on the train split with PyTorch; its
softmax temperature and the confidence below which a prompt goes to `default` are
calibrated on the validation split; the test split is scored for the card.

Calibration: the temperature minimises the validation log-loss; the minimum confidence is
the one with the best macro F1 on validation, counting a prompt below it as `default` (so
that an unsure prompt gets the general policy, never a strict or short-lived one)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from categories.labelled import Labelled
from categories.model import CategoryModel
from categories.policy import DEFAULT

HIDDEN = 256
EPOCHS = 15
BATCH = 256
LEARNING_RATE = 1e-2
WEIGHT_DECAY = 0.05
DROPOUT = 0.3
# Class weights: (mean count / count) ** BALANCE; 0.5 is halfway between the data's own
# mix and equal classes (measured on validation: better macro F1 than either end).
BALANCE = 0.5
CONFIDENCES = tuple(round(0.05 * i, 2) for i in range(19))  # 0.0 ... 0.9
TEMPERATURES = tuple(round(0.5 + 0.05 * i, 2) for i in range(51))  # 0.5 ... 3.0


@dataclass(frozen=True)
class Scores:
    prompts: int
    accuracy: float
    macro_f1: float
    per_category: dict[str, dict[str, float | int]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompts": self.prompts,
            "accuracy": round(self.accuracy, 4),
            "macro_f1": round(self.macro_f1, 4),
            "per_category": self.per_category,
        }


def scores(expected: Sequence[str], found: Sequence[str], categories: Sequence[str]) -> Scores:
    """Precision, recall and F1 per category, accuracy and macro F1."""
    pairs = Counter(zip(expected, found, strict=True))
    wanted, given = Counter(expected), Counter(found)
    per: dict[str, dict[str, float | int]] = {}
    f1s = []
    for name in categories:
        right = pairs[(name, name)]
        precision = right / given[name] if given[name] else 0.0
        recall = right / wanted[name] if wanted[name] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        if wanted[name]:
            f1s.append(f1)
        per[name] = {
            "prompts": wanted[name],
            "claimed": given[name],
            "precision": round(precision, 4),
            "recall": round(recall, 4),
        }
    correct = sum(pairs[(n, n)] for n in categories)
    return Scores(
        len(expected), correct / max(len(expected), 1), float(np.mean(f1s)) if f1s else 0.0, per
    )


def with_default(
    probabilities: npt.NDArray[np.float32], categories: Sequence[str], minimum: float
) -> list[str]:
    """Each row's most probable category, or `default` below `minimum`."""
    best = probabilities.argmax(axis=1)
    top = probabilities[np.arange(len(best)), best]
    return [categories[b] if p >= minimum else DEFAULT for b, p in zip(best, top, strict=True)]


def train(
    rows: Sequence[Labelled],
    vectors: npt.NDArray[np.float32],
    embedding: str,
    *,
    weights: Sequence[float] | None = None,
    seed: int = 0,
    epochs: int = EPOCHS,
    progress: Callable[[str], None] | None = None,
) -> CategoryModel:
    """A calibrated model from `rows` (with their `vectors`): trained on the train split,
    calibrated on validation, scored on test (when the splits hold prompts)."""
    import torch  # training only: serving runs the weights with NumPy

    started = time.monotonic()
    categories = sorted({r.category for r in rows} | {DEFAULT})
    label = np.asarray([categories.index(r.category) for r in rows])
    split = np.asarray([r.split for r in rows])
    weight = np.asarray(weights if weights is not None else [1.0] * len(rows), dtype=np.float32)
    train_rows = split == "train"
    if not train_rows.any():
        raise ValueError("no prompts in the train split")
    counts = np.bincount(label[train_rows], minlength=len(categories)).astype(np.float32)
    present = counts > 0
    balance = np.ones(len(categories), np.float32)
    balance[present] = (counts[present].mean() / counts[present]) ** BALANCE

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(np.ascontiguousarray(vectors[train_rows], dtype=np.float32))
    y = torch.from_numpy(label[train_rows])
    w = torch.from_numpy(weight[train_rows] * balance[label[train_rows]])
    net = torch.nn.Sequential(
        torch.nn.Linear(vectors.shape[1], HIDDEN),
        torch.nn.ReLU(),
        torch.nn.Dropout(DROPOUT),
        torch.nn.Linear(HIDDEN, len(categories)),
    )
    optimiser = torch.optim.AdamW(net.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, epochs)
    loss = torch.nn.CrossEntropyLoss(reduction="none")
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), BATCH):
            batch = order[start : start + BATCH]
            optimiser.zero_grad()
            value = (loss(net(x[batch]), y[batch]) * w[batch]).sum() / w[batch].sum()
            value.backward()
            optimiser.step()
        schedule.step()
        if progress and (epoch + 1) % 10 == 0:
            progress(f"epoch {epoch + 1}/{epochs}: loss {value.item():.3f}")
    net.eval()
    first, last = net[0], net[3]
    assert isinstance(first, torch.nn.Linear) and isinstance(last, torch.nn.Linear)
    model = CategoryModel(
        categories=tuple(categories),
        w1=first.weight.detach().numpy().T.copy(),
        b1=first.bias.detach().numpy().copy(),
        w2=last.weight.detach().numpy().T.copy(),
        b2=last.bias.detach().numpy().copy(),
        embedding=embedding,
    )
    return _calibrated(model, rows, vectors, label, split, started)


def _calibrated(
    model: CategoryModel,
    rows: Sequence[Labelled],
    vectors: npt.NDArray[np.float32],
    label: npt.NDArray[np.int64],
    split: npt.NDArray[np.str_],
    started: float,
) -> CategoryModel:
    categories = model.categories
    validation = split == "validation"
    temperature, minimum, curve = 1.0, 0.0, []
    if validation.any():
        temperature = _temperature(model, vectors[validation], label[validation])
        calibrated = replace(model, temperature=temperature)
        probabilities = calibrated.probabilities(vectors[validation])
        expected = [categories[i] for i in label[validation]]
        for minimum_ in CONFIDENCES:
            found = with_default(probabilities, categories, minimum_)
            curve.append((minimum_, scores(expected, found, categories).macro_f1))
        minimum = max(curve, key=lambda point: point[1])[0]
    model = replace(model, temperature=temperature, min_confidence=minimum)
    card: dict[str, Any] = {
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "training_s": round(time.monotonic() - started, 1),
        "hidden": HIDDEN,
        "epochs": EPOCHS,
        "prompts": {
            name: dict(Counter(f"{r.source}/{r.category}" for r in rows if r.split == name))
            for name in ("train", "validation", "test")
        },
        "min_confidence_curve": [{"min_confidence": m, "macro_f1": round(f, 4)} for m, f in curve],
    }
    test = split == "test"
    if test.any():
        found = with_default(model.probabilities(vectors[test]), categories, minimum)
        expected = [categories[i] for i in label[test]]
        card["test"] = scores(expected, found, categories).to_dict()
    return replace(model, card=card)


def _temperature(
    model: CategoryModel, vectors: npt.NDArray[np.float32], label: npt.NDArray[np.int64]
) -> float:
    """The softmax temperature with the lowest log-loss on `vectors`."""

    def log_loss(temperature: float) -> float:
        p = replace(model, temperature=temperature).probabilities(vectors)[
            np.arange(len(label)), label
        ]
        return float(-np.mean(np.log(np.maximum(p, 1e-12))))

    return min(TEMPERATURES, key=log_loss)


def classified(
    classify: Callable[[str, npt.NDArray[np.float32]], str],
    rows: Sequence[Labelled],
    vectors: npt.NDArray[np.float32],
    categories: Sequence[str],
) -> Scores:
    """How a whole classifier (rules first, then the embedding) scores `rows`."""
    found = [classify(r.text, v) for r, v in zip(rows, vectors, strict=True)]
    return scores([r.category for r in rows], found, categories)
