"""Errors raised while turning text into vectors.

EmbeddingError
├── ModelIntegrityError   the model file does not match its published SHA-256
├── ModelExportError      the ONNX export or quantisation failed
├── EmbedderClosedError   a request reached a batcher that was shut down
└── QueueFullError        the batcher's queue is full: fail open now, do not wait
"""

from __future__ import annotations


class EmbeddingError(Exception):
    """Base class for every error of the embeddings package."""


class ModelIntegrityError(EmbeddingError):
    pass


class ModelExportError(EmbeddingError):
    pass


class EmbedderClosedError(EmbeddingError):
    pass


class QueueFullError(EmbeddingError):
    pass
