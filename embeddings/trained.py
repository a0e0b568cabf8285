"""Which similarity model serves: the shipped trained adapter (the default), the base model,
or a model directory trained with `gateway train`."""

from __future__ import annotations

from dataclasses import replace
from importlib import resources
from pathlib import Path

from embeddings.card import load_card, read_card
from embeddings.errors import ModelIntegrityError
from embeddings.model import ModelSource

TRAINED = "trained"  # the adapter shipped in this package
BASE = "base"  # all-MiniLM-L6-v2 as published
SHIPPED = "minilm-qqp-v1"


def shipped_dir() -> Path:
    return Path(str(resources.files("embeddings").joinpath("trained", SHIPPED)))


def model_dir(choice: str) -> Path | None:
    """The model directory a setting names; None for the base model."""
    if choice == BASE:
        return None
    if choice == TRAINED:
        return shipped_dir()
    return Path(choice).expanduser()


def card_thresholds(directory: Path, *, compressed: bool = False) -> tuple[float, dict[str, float]]:
    """The thresholds a card was calibrated to, for its full or its projected vectors (the
    files are checked when the model loads: `with_adapter`, `load_projection`)."""
    card = read_card(directory)
    if not compressed:
        return card.threshold, card.thresholds
    if card.compression is None:
        raise ModelIntegrityError(f"{directory} has no projection (train with --compress)")
    thresholds = card.compression.get("thresholds", {})
    return float(card.compression["threshold"]), {k: float(v) for k, v in thresholds.items()}


def with_adapter(base: ModelSource, directory: Path) -> ModelSource:
    """The base model with the directory's adapter, once the directory checks out."""
    card = load_card(directory, base_sha256=base.sha256, dim=base.dim)
    return replace(
        base,
        name=f"{base.name}+{card.model_name}",
        adapter=directory,
        adapter_sha256=card.adapter_sha256,
    )
