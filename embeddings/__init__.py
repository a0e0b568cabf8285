"""Text to vectors: the verified reference model, its ONNX export, and micro-batching."""

from embeddings.batcher import BatchLimits, MicroBatcher
from embeddings.errors import (
    EmbedderClosedError,
    EmbeddingError,
    ModelExportError,
    ModelIntegrityError,
)
from embeddings.model import ModelSource, bundled_minilm, verify
from embeddings.protocol import Embedder, Vectors, embed_all
from embeddings.runtime import EmbedderOptions, OnnxEmbedder, load_embedder

__all__ = [
    "BatchLimits",
    "Embedder",
    "EmbedderClosedError",
    "EmbedderOptions",
    "EmbeddingError",
    "MicroBatcher",
    "ModelExportError",
    "ModelIntegrityError",
    "ModelSource",
    "OnnxEmbedder",
    "Vectors",
    "bundled_minilm",
    "embed_all",
    "load_embedder",
    "verify",
]
