"""A trained similarity model: a directory holding a LoRA adapter for the base model and a
card that says what it is.

    <directory>/
      card.json                   format, name, version, base model, dimension, the
                                  adapter files' SHA-256, training data, rounds,
                                  validation metrics, thresholds
      adapter_config.json         peft's LoRA configuration
      adapter_model.safetensors   the adapter's weights

A directory is checked before it is used (`load_card`): every file present, every checksum
right, the base model and the dimension the ones the gateway serves. At export the adapter
is merged into the base weights, so serving costs what the base model costs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embeddings.errors import ModelIntegrityError
from embeddings.model import file_sha256

CARD = "card.json"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
PROJECTION_FILE = "projection.npz"  # optional: a PCA projection (`embeddings.compress`)
FORMAT = 1


@dataclass(frozen=True)
class ModelCard:
    name: str
    version: str
    base: str  # the base model's name
    base_sha256: str
    dim: int
    files: dict[str, str]  # adapter file name -> SHA-256
    threshold: float  # the best F0.5 on validation, cache view
    thresholds: dict[str, float] = field(default_factory=dict)  # per category, where measured
    details: dict[str, Any] = field(default_factory=dict)  # data, rounds, metrics

    @property
    def model_name(self) -> str:
        return f"{self.name}-{self.version}"

    @property
    def compression(self) -> dict[str, Any] | None:
        """The projection's dimensions and the thresholds calibrated on its vectors."""
        found = self.details.get("compression")
        return found if isinstance(found, dict) else None

    @property
    def adapter_sha256(self) -> str:
        """One digest for the adapter: its files' digests, in name order."""
        adapter = {name: self.files[name] for name in ADAPTER_FILES if name in self.files}
        joined = "".join(f"{name}:{digest}\n" for name, digest in sorted(adapter.items()))
        return hashlib.sha256(joined.encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "name": self.name,
            "version": self.version,
            "base": {"name": self.base, "sha256": self.base_sha256},
            "dim": self.dim,
            "files": self.files,
            "threshold": self.threshold,
            "thresholds": self.thresholds,
            **self.details,
        }


def write_card(directory: Path, card: ModelCard) -> None:
    (directory / CARD).write_text(json.dumps(card.to_dict(), indent=2, sort_keys=False) + "\n")


def adapter_digests(directory: Path) -> dict[str, str]:
    return {name: file_sha256(directory / name) for name in ADAPTER_FILES}


def read_card(directory: Path) -> ModelCard:
    """A directory's card, parsed and checked in itself (the files are not read)."""
    if not directory.is_dir():
        raise ModelIntegrityError(f"{directory} is not a model directory")
    try:
        raw = json.loads((directory / CARD).read_text())
    except FileNotFoundError:
        raise ModelIntegrityError(f"{directory} has no {CARD}") from None
    except (OSError, ValueError) as exc:
        raise ModelIntegrityError(f"{directory / CARD} is not readable JSON: {exc}") from None
    return _parse(raw, directory)


def load_card(directory: Path, *, base_sha256: str, dim: int) -> ModelCard:
    """Read and check a model directory; `ModelIntegrityError` says what is wrong."""
    card = read_card(directory)
    if card.base_sha256 != base_sha256:
        raise ModelIntegrityError(
            f"{directory} adapts base weights {card.base_sha256[:16]}, "
            f"not the served base model {base_sha256[:16]}"
        )
    if card.dim != dim:
        raise ModelIntegrityError(f"{directory} has dimension {card.dim}, the base model {dim}")
    for name in sorted({*ADAPTER_FILES, *card.files}):
        path = directory / name
        if "/" in name or "\\" in name or not path.is_file():
            raise ModelIntegrityError(f"{directory} is missing {name}")
        expected = card.files.get(name)
        if expected is None or file_sha256(path) != expected:
            raise ModelIntegrityError(f"{path} does not match the checksum in its card")
    return card


def _parse(raw: Any, directory: Path) -> ModelCard:
    def bad(why: str) -> ModelIntegrityError:
        return ModelIntegrityError(f"{directory / CARD}: {why}")

    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise bad(f"not a model card of format {FORMAT}")
    base = raw.get("base")
    files = raw.get("files")
    thresholds = raw.get("thresholds", {})
    if not isinstance(base, dict) or not isinstance(base.get("sha256"), str):
        raise bad("base.sha256 is missing")
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise bad("files must map names to SHA-256 digests")
    if not isinstance(thresholds, dict):
        raise bad("thresholds must map categories to cosines")
    for key in ("name", "version"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise bad(f"{key} must be a non-empty string")
    dim = raw.get("dim")
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
        raise bad("dim must be a positive integer")
    compression = raw.get("compression")
    if compression is not None and (
        not isinstance(compression, dict) or not isinstance(compression.get("thresholds", {}), dict)
    ):
        raise bad("compression must be a table with a threshold")
    values = {"threshold": raw.get("threshold"), **thresholds}
    if compression is not None:
        values["compression.threshold"] = compression.get("threshold")
        for key, value in compression.get("thresholds", {}).items():
            values[f"compression.{key}"] = value
    for key, value in values.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < 1:
            raise bad(f"threshold {key} must be a cosine in (0, 1)")
    known = {"format", "name", "version", "base", "dim", "files", "threshold", "thresholds"}
    return ModelCard(
        name=raw["name"],
        version=raw["version"],
        base=str(base.get("name", "")),
        base_sha256=base["sha256"],
        dim=dim,
        files=dict(files),
        threshold=float(raw["threshold"]),
        thresholds={str(k): float(v) for k, v in thresholds.items()},
        details={k: v for k, v in raw.items() if k not in known},
    )
