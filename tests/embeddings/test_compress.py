"""Compressed embeddings: the projection itself, and the shipped model served through it."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from embeddings.compress import PROJECTION_FILE, ProjectedEmbedder, Projection
from embeddings.errors import ModelIntegrityError
from embeddings.options import EmbedderOptions
from embeddings.runtime import load_serving
from embeddings.trained import shipped_dir
from gateway.settings import Settings, SettingsError
from tests.support.embedders import HashingEmbedder


def _unit(rows: np.ndarray) -> np.ndarray:
    return np.asarray(rows / np.linalg.norm(rows, axis=1, keepdims=True), dtype=np.float32)


def test_a_projection_keeps_the_directions_that_vary(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.standard_normal((32, 32)))[0][:, :4]  # data lives in 4 dims
    vectors = _unit(rng.standard_normal((500, 4)) @ basis.T).astype(np.float32)
    projection = Projection.fit(vectors, 4)
    projected = projection.apply(vectors)
    assert projected.shape == (500, 4)
    assert np.allclose(np.linalg.norm(projected, axis=1), 1.0, atol=1e-5)
    # neighbours stay neighbours: the nearest of each of the first 20 is unchanged
    full, small = vectors @ vectors.T, projected @ projected.T
    np.fill_diagonal(full, -2)
    np.fill_diagonal(small, -2)
    agree = np.mean(np.argmax(full[:20], 1) == np.argmax(small[:20], 1))
    assert agree >= 0.9
    projection.save(tmp_path / "p.npz")
    again = Projection.load(tmp_path / "p.npz")
    assert np.array_equal(again.components, projection.components)
    with pytest.raises(ValueError, match="dims"):
        Projection.fit(vectors, 32)
    with pytest.raises(ValueError, match="needs at least"):
        Projection.fit(vectors[:3], 4)


def test_a_projected_embedder_names_its_dimensions() -> None:
    inner = HashingEmbedder()
    rng = np.random.default_rng(1)
    projection = Projection.fit(_unit(rng.standard_normal((300, inner.dim))), 16)
    embedder = ProjectedEmbedder(inner, projection)
    assert embedder.dim == 16 and embedder.model_id == f"{inner.model_id}:pca16"
    vectors = embedder.embed(["one", "two"])
    assert vectors.shape == (2, 16) and embedder.embed([]).shape == (0, 16)


def test_the_shipped_model_serves_compressed(model_cache: Path) -> None:
    settings = Settings.from_dict(
        {"embedding": {"compress": True, "cache_dir": str(model_cache)}}, {}
    )
    uncompressed = Settings.from_dict({}, {})
    # the thresholds are the ones calibrated on projected vectors
    assert settings.policies["default"].threshold != uncompressed.policies["default"].threshold
    embedder = load_serving(settings.embedding.options())
    assert embedder.dim == 128 and embedder.model_id.endswith(":pca128")
    same = embedder.embed(["What is the capital of France?", "What's France's capital city?"])
    other = embedder.embed(["How do I turn on dark mode?", "How do I turn off dark mode?"])
    threshold = settings.policies["default"].threshold
    assert float(same[0] @ same[1]) >= threshold > float(other[0] @ other[1])
    with pytest.raises(SettingsError, match="compress"):
        Settings.from_dict({"embedding": {"compress": True, "model": "base"}}, {})


def test_a_projection_not_in_the_card_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "model"
    shutil.copytree(shipped_dir(), directory)
    (directory / PROJECTION_FILE).write_bytes(b"not the fitted projection")
    with pytest.raises(ModelIntegrityError, match="checksum"):
        load_serving(EmbedderOptions(cache_dir=tmp_path, model=directory, compress=True))
