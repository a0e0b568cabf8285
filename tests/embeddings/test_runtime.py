from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embeddings.export import export_dir
from embeddings.model import bundled_minilm
from embeddings.options import EmbedderOptions
from embeddings.protocol import embed_all
from embeddings.runtime import (
    CPU,
    CUDA,
    OnnxEmbedder,
    choose_providers,
    load_embedder,
)
from gateway.index.similarity import cosine_matrix


@pytest.fixture(scope="module")
def reference_model() -> object:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(bundled_minilm().directory), device="cpu")


def _parity_texts(prompts: list[str]) -> list[str]:
    # A few hundred real prompts, plus edge cases: empty, long (truncated), non-ASCII.
    return [
        *prompts[:300],
        "",
        "word " * 400,
        "Wie spät ist es in Tokio? 東京は今何時ですか",
        "def f(x):\n    return x ** 2  # square",
    ]


def test_parity_with_sentence_transformers(
    model_cache: Path, prompts: list[str], reference_model: object
) -> None:
    # sentence-transformers keeps a long text's head: so does the model without the window
    head_only = load_embedder(
        EmbedderOptions(cache_dir=model_cache, head_tokens=None, question_tokens=None)
    )
    texts = _parity_texts(prompts)
    ours = embed_all(head_only, texts, batch_size=32)
    reference = reference_model.encode(  # type: ignore[attr-defined]
        texts, batch_size=32, convert_to_numpy=True, normalize_embeddings=True
    )
    assert ours.shape == reference.shape == (len(texts), 384)
    assert float(np.abs(ours - reference).max()) < 1e-4


def test_batch_composition_does_not_change_embeddings(
    embedder: OnnxEmbedder, prompts: list[str]
) -> None:
    # Padding to the longest text in a batch must not leak into shorter texts.
    alone = np.stack([embedder.embed([text])[0] for text in prompts[:20]])
    together = embedder.embed(prompts[:20])
    assert float(np.abs(alone - together).max()) < 1e-5


def test_outputs_are_unit_vectors_and_empty_input_is_empty(embedder: OnnxEmbedder) -> None:
    vectors = embedder.embed(["hello", "a much longer sentence about caching answers"])
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.embed([]).shape == (0, 384)


def test_long_texts_are_truncated_to_the_model_limit(embedder: OnnxEmbedder) -> None:
    assert embedder.token_counts(["word " * 1000]) == [256]
    assert embedder.token_counts(["word " * 1_000_000]) == [256]  # cut before tokenizing


def test_a_question_after_a_long_document_is_what_its_vector_says(
    embedder: OnnxEmbedder, model_cache: Path
) -> None:
    head_only = load_embedder(
        EmbedderOptions(cache_dir=model_cache, head_tokens=None, question_tokens=None)
    )
    document = " ".join(
        f"Section {i}: the quarterly report lists revenue by region." for i in range(60)
    )
    questions = ["What was the revenue in Europe?", "Who signed the report?"]
    long_ = [f"{document}\n\n{q}" for q in questions]
    same_window = head_only.embed(long_)
    assert float(same_window[0] @ same_window[1]) > 0.999  # the control: the question is cut
    ours = embedder.embed(long_)
    assert float(ours[0] @ ours[1]) < 0.95  # two questions about one document differ
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    # within the window a text is embedded as it is, whatever the window's settings
    short = ["How do I reset my password?", questions[0]]
    assert np.allclose(embedder.embed(short), head_only.embed(short), atol=1e-5)
    assert head_only.model_id != embedder.model_id  # the window is part of the model


def test_provider_is_chosen_and_reported(embedder: OnnxEmbedder) -> None:
    import onnxruntime as ort

    expected = CUDA if CUDA in ort.get_available_providers() else CPU
    assert embedder.provider == expected
    assert embedder.model_id == "all-MiniLM-L6-v2:53aa51172d142c89:fp32:head64:question16"


def test_choose_providers() -> None:
    assert choose_providers("auto", [CUDA, CPU]) == [CUDA, CPU]
    assert choose_providers("auto", [CPU]) == [CPU]
    assert choose_providers("cpu", [CUDA, CPU]) == [CPU]
    assert choose_providers("cuda", [CPU]) == [CPU]
    with pytest.raises(ValueError, match="auto, cuda or cpu"):
        choose_providers("tpu", [CPU])


def test_export_is_cached_by_model_hash(embedder: OnnxEmbedder, model_cache: Path) -> None:
    directory = export_dir(model_cache, bundled_minilm())
    assert directory.name == "all-MiniLM-L6-v2-53aa51172d142c89"
    model = directory / "model.onnx"
    stamp = model.stat().st_mtime_ns
    load_embedder(EmbedderOptions(cache_dir=model_cache))
    assert model.stat().st_mtime_ns == stamp  # reused, not exported again
    assert not list(directory.glob("*.tmp"))


def test_int8_model_stays_close_to_fp32(
    embedder: OnnxEmbedder, embedder_int8: OnnxEmbedder, prompts: list[str]
) -> None:
    texts = prompts[:300]
    fp32 = embed_all(embedder, texts)
    int8 = embed_all(embedder_int8, texts)
    agreement = np.diag(cosine_matrix(fp32, int8))
    assert float(agreement.min()) >= 0.98
    assert float(agreement.mean()) >= 0.99
    assert ":int8:" in embedder_int8.model_id


def test_int8_auto_quantises_on_the_cpu_only(model_cache: Path) -> None:
    import onnxruntime as ort

    auto = load_embedder(EmbedderOptions(cache_dir=model_cache, int8=None))
    on_gpu = CUDA in ort.get_available_providers()
    assert (":fp32:" if on_gpu else ":int8:") in auto.model_id
    assert auto.provider == (CUDA if on_gpu else CPU)


def test_int8_embeddings_do_not_depend_on_their_batch(
    embedder_int8: OnnxEmbedder, prompts: list[str]
) -> None:
    alone = np.stack([embedder_int8.embed([text])[0] for text in prompts[:32]])
    together = embedder_int8.embed(prompts[:32])
    assert float(np.abs(alone - together).max()) < 1e-6
