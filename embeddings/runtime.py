"""Serving embeddings with ONNX Runtime: CUDA when present, CPU otherwise."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from embeddings.compress import ProjectedEmbedder, load_projection
from embeddings.errors import ModelIntegrityError
from embeddings.export import ensure_onnx
from embeddings.model import ModelSource, bundled_minilm, verify
from embeddings.options import EmbedderOptions
from embeddings.protocol import Vectors
from embeddings.trained import with_adapter

logger = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def choose_providers(device: str, available: Sequence[str]) -> list[str]:
    if device not in ("auto", "cuda", "cpu"):
        raise ValueError(f"device must be auto, cuda or cpu, not {device!r}")
    if device != "cpu" and CUDA in available:
        return [CUDA, CPU]
    if device == "cuda":
        logger.warning("CUDA requested but ONNX Runtime offers only %s", list(available))
    return [CPU]


class OnnxEmbedder:
    """Sentence embeddings from an exported sentence-transformers model.

    `embed` is thread-safe (ONNX Runtime sessions allow concurrent `run`), and pads each
    call only to its longest text.
    """

    def __init__(
        self,
        model_path: Path,
        source: ModelSource,
        *,
        variant: str,
        providers: Sequence[str],
        threads: int = 0,
    ) -> None:
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self._session = ort.InferenceSession(
            str(model_path), sess_options=options, providers=list(providers)
        )
        self._tokenizer = Tokenizer.from_file(str(source.tokenizer))
        self._tokenizer.enable_truncation(max_length=source.max_tokens)
        self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self._source = source
        self._model_id = f"{source.name}:{source.fingerprint}:{variant}"
        self.provider = self._session.get_providers()[0]
        logger.info("embedding model %s on %s", self._model_id, self.provider)

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def dim(self) -> int:
        return self._source.dim

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        encodings = self._tokenizer.encode_batch(list(texts))
        feed = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        (vectors,) = self._session.run(None, feed)
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """Tokens each text occupies after truncation (special tokens included)."""
        return [sum(e.attention_mask) for e in self._tokenizer.encode_batch(list(texts))]


def load_serving(options: EmbedderOptions) -> OnnxEmbedder | ProjectedEmbedder:
    """What the gateway embeds with: the model, and with `compress` its vectors through the
    model directory's projection."""
    if not options.compress:
        return load_embedder(options)
    if options.model is None:
        raise ModelIntegrityError("compress needs a trained model directory with a projection")
    return ProjectedEmbedder(load_embedder(options), load_projection(options.model))


def load_embedder(options: EmbedderOptions, source: ModelSource | None = None) -> OnnxEmbedder:
    """Verify the model, export it on first use, and open an ONNX Runtime session."""
    source = source or bundled_minilm()
    if options.model is not None:
        source = with_adapter(source, options.model)
    verify(source)
    path = ensure_onnx(source, options.cache_dir, int8=options.int8)
    providers = choose_providers(options.device, ort.get_available_providers())
    return OnnxEmbedder(
        path,
        source,
        variant="int8" if options.int8 else "fp32",
        providers=providers,
        threads=options.threads,
    )
