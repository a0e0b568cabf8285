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


# A text is cut to this many characters per token kept before it is tokenized, so that
# a huge body costs the tokenizer no more than the window does.
CHARS_PER_TOKEN_BOUND = 16


class OnnxEmbedder:
    """Sentence embeddings from an exported sentence-transformers model.

    `embed` is thread-safe (ONNX Runtime sessions allow concurrent `run`), and pads each
    call only to its longest text. A text longer than the model's window (`max_tokens`)
    keeps its first `head_tokens` tokens and its last ones up to the window (with
    `head_tokens` None, the head only, as sentence-transformers truncates). With
    `question_tokens`, its vector is the normalised sum of the window's and that of its
    last `question_tokens` tokens: a question after a long pasted document then counts as
    much as the document (bench/long_prompts.py), so two questions about one document are
    told apart. Texts within the window are embedded as they are.
    """

    def __init__(
        self,
        model_path: Path,
        source: ModelSource,
        *,
        variant: str,
        providers: Sequence[str],
        threads: int = 0,
        head_tokens: int | None = None,
        question_tokens: int | None = None,
    ) -> None:
        limit = source.max_tokens - 2  # [CLS] and [SEP]
        if head_tokens is not None and not 0 <= head_tokens <= limit:
            raise ValueError(f"head_tokens must be from 0 to {limit}, not {head_tokens}")
        if question_tokens is not None and not 0 <= question_tokens <= limit:
            raise ValueError(f"question_tokens must be from 0 to {limit}, not {question_tokens}")
        options = ort.SessionOptions()
        # No arena: with a new input shape at nearly every call (texts of any length), ONNX
        # Runtime's CPU arena keeps every size it was asked for and grows without bound.
        options.enable_cpu_mem_arena = False
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = threads
        self._session = ort.InferenceSession(
            str(model_path), sess_options=options, providers=list(providers)
        )
        self._tokenizer = Tokenizer.from_file(str(source.tokenizer))
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        self._source = source
        self._head = limit if head_tokens is None else head_tokens
        # the window is part of the model: a long text's vector depends on it
        self._question = question_tokens or 0
        # Dynamic quantisation scales activations over the whole batch: an int8 text's
        # vector would depend on the texts batched with it (cosine down to 0.98), and a
        # borderline hit on what else was asked at that moment. int8 runs one text at a
        # time (on a CPU, batching does not raise throughput anyway).
        self._alone = variant == "int8"
        window = "" if head_tokens is None else f":head{head_tokens}"
        if question_tokens:
            window += f":question{question_tokens}"
        self._model_id = f"{source.name}:{source.fingerprint}:{variant}{window}"
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
        encoded = self._encoded(texts)
        rows = [self._window(ids) for ids in encoded]
        limit = self._source.max_tokens
        longer = [i for i, ids in enumerate(encoded) if self._question and len(ids) > limit]
        # [CLS] + the last `question_tokens` tokens + [SEP]: what is asked after the document
        ends = [encoded[i][:1] + encoded[i][-self._question - 1 :] for i in longer]
        vectors = self._run(rows + ends)
        if longer:
            mixed = vectors[longer] + vectors[len(rows) :]
            vectors[longer] = mixed / np.linalg.norm(mixed, axis=1, keepdims=True)
        return np.ascontiguousarray(vectors[: len(rows)], dtype=np.float32)

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """Tokens each text occupies in the window (special tokens included)."""
        return [len(self._window(ids)) for ids in self._encoded(texts)]

    def _run(self, rows: list[list[int]]) -> Vectors:
        if self._alone and len(rows) > 1:  # see __init__: one text per run
            return np.concatenate([self._run([row]) for row in rows])
        ids = np.zeros((len(rows), max(len(r) for r in rows)), dtype=np.int64)  # [PAD] is 0
        mask = np.zeros_like(ids)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        (vectors,) = self._session.run(None, feed)
        return np.asarray(vectors, dtype=np.float32)

    def _encoded(self, texts: Sequence[str]) -> list[list[int]]:
        """Each text's token ids, [CLS] and [SEP] included; a huge text is cut first (by
        characters) to what its window could use."""
        bound = CHARS_PER_TOKEN_BOUND * self._source.max_tokens
        cut = [
            t
            if len(t) <= 2 * bound
            else t[: CHARS_PER_TOKEN_BOUND * self._head + 1] + " " + t[-bound:]
            for t in texts
        ]
        return [encoding.ids for encoding in self._tokenizer.encode_batch(cut)]

    def _window(self, ids: list[int]) -> list[int]:
        """[CLS] head ... tail [SEP], up to the model's window."""
        limit = self._source.max_tokens
        if len(ids) <= limit:
            return ids
        tail = limit - 2 - self._head
        return ids[: 1 + self._head] + ids[len(ids) - tail - 1 :]


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
    providers = choose_providers(options.device, ort.get_available_providers())
    # int8 is dynamic quantisation, built for the CPU: a GPU runs the fp32 graph
    int8 = options.int8 if options.int8 is not None else providers[0] == CPU
    path = ensure_onnx(source, options.cache_dir, int8=int8)
    return OnnxEmbedder(
        path,
        source,
        variant="int8" if int8 else "fp32",
        providers=providers,
        threads=options.threads,
        head_tokens=options.head_tokens,
        question_tokens=options.question_tokens,
    )
