"""How the embedder is served and batched: value objects, cheap to import."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class EmbedderOptions:
    """How to serve the model. `device` is "auto", "cuda" or "cpu"."""

    cache_dir: Path
    int8: bool | None = False  # None: int8 on the CPU, fp32 on a GPU
    device: str = "auto"
    threads: int = 0  # ONNX Runtime intra-op threads; 0 lets it choose
    model: Path | None = None  # a trained model directory; None serves the base model
    compress: bool = False  # serve the directory's projection (fewer dimensions)
    # A text longer than the model's window keeps this many tokens of its head and fills
    # the rest from its tail (the question after a pasted document); None: the head only.
    head_tokens: int | None = 64
    # ... and its vector is mixed with that of its last this many tokens, the question after
    # the document (None: not mixed). Measured by bench/long_prompts.py.
    question_tokens: int | None = 16


@dataclass(frozen=True)
class BatchLimits:
    max_batch: int = 32
    max_wait: float = 0.0  # seconds a batch that is not full waits for company (0: none)
    max_queue: int = 256  # texts waiting; past it a lookup fails open at once

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if self.max_wait < 0:
            raise ValueError("max_wait must not be negative")
        if self.max_queue < 1:
            raise ValueError("max_queue must be at least 1")
