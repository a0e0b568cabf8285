from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from embeddings.options import EmbedderOptions
from embeddings.protocol import Vectors, embed_all
from embeddings.runtime import OnnxEmbedder, load_embedder
from embeddings.trained import shipped_dir
from gateway.demo import bundled_pairs
from tests.support.embedders import HashingEmbedder

os.environ.setdefault("HF_HUB_OFFLINE", "1")


# Fixtures that load the real model: a test that uses one (directly or through another
# fixture) is marked `model`, so `pytest -m "not model"` runs the rest in seconds.
MODEL_FIXTURES = {
    "embedder",
    "embedder_int8",
    "trained_embedder",
    "app_embedder",
    "prompt_vectors",
    "model_cache",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.model)


@pytest.fixture(scope="session")
def fast_embedder() -> HashingEmbedder:
    return HashingEmbedder()


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="session")
def embedder(model_cache: Path) -> OnnxEmbedder:
    return load_embedder(EmbedderOptions(cache_dir=model_cache))


@pytest.fixture(scope="session")
def trained_embedder(model_cache: Path) -> OnnxEmbedder:
    """The base model with the shipped adapter merged in: what `gateway serve` serves."""
    return load_embedder(EmbedderOptions(cache_dir=model_cache, model=shipped_dir()))


@pytest.fixture(scope="session")
def embedder_int8(model_cache: Path) -> OnnxEmbedder:
    return load_embedder(EmbedderOptions(cache_dir=model_cache, int8=True))


@pytest.fixture(scope="session")
def prompts() -> list[str]:
    """Distinct real questions from the bundled QQP sample, in a fixed order."""
    seen: dict[str, None] = {}
    for pair in bundled_pairs():
        seen.setdefault(pair.a)
        seen.setdefault(pair.b)
    return list(seen)


@pytest.fixture(scope="session")
def prompt_vectors(embedder: OnnxEmbedder, prompts: list[str]) -> Vectors:
    """Embeddings of 10,000 real prompts."""
    vectors = embed_all(embedder, prompts[:10_000])
    assert vectors.shape == (10_000, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    return vectors


def pytest_sessionfinish(session: pytest.Session) -> None:
    from tests.support.stores import drop_created

    if not hasattr(session.config, "workerinput"):
        drop_created()
