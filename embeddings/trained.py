"""Which similarity model serves: the shipped trained adapter (the default), the base model,
or a model directory trained with `gateway train`."""

from __future__ import annotations

import json
from dataclasses import replace
from importlib import resources
from pathlib import Path

from embeddings.card import CARD, load_card
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
    """The thresholds a card was calibrated to, for its full or its projected vectors (read
    only: `with_adapter` and `load_projection` check the files)."""
    try:
        raw = json.loads((directory / CARD).read_text())
        if compressed:
            raw = raw["compression"]
        thresholds = {str(k): float(v) for k, v in raw.get("thresholds", {}).items()}
        return float(raw["threshold"]), thresholds
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelIntegrityError(f"cannot read the card of {directory}: {exc}") from None


def with_adapter(base: ModelSource, directory: Path) -> ModelSource:
    """The base model with the directory's adapter, once the directory checks out."""
    card = load_card(directory, base_sha256=base.sha256, dim=base.dim)
    return replace(
        base,
        name=f"{base.name}+{card.model_name}",
        adapter=directory,
        adapter_sha256=card.adapter_sha256,
    )
