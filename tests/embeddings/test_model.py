from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from embeddings.errors import ModelIntegrityError
from embeddings.model import MINILM_SHA256, bundled_minilm, verify
from embeddings.options import EmbedderOptions
from embeddings.runtime import load_embedder


def test_bundled_model_matches_published_hash() -> None:
    assert verify(bundled_minilm()) == MINILM_SHA256


def _tampered_copy(tmp_path: Path) -> Path:
    source = bundled_minilm()
    copy = tmp_path / "model"
    shutil.copytree(source.directory, copy)
    with (copy / "model.safetensors").open("r+b") as handle:
        handle.seek(4096)
        byte = handle.read(1)
        handle.seek(4096)
        handle.write(bytes([byte[0] ^ 0xFF]))
    return copy


def test_tampered_weights_are_refused(tmp_path: Path) -> None:
    source = replace(bundled_minilm(), directory=_tampered_copy(tmp_path))
    with pytest.raises(ModelIntegrityError, match=r"SHA-256 is .* expected 53aa5117"):
        verify(source)


def test_tampered_weights_are_never_exported_or_served(tmp_path: Path) -> None:
    source = replace(bundled_minilm(), directory=_tampered_copy(tmp_path))
    cache = tmp_path / "cache"
    with pytest.raises(ModelIntegrityError):
        load_embedder(EmbedderOptions(cache_dir=cache), source)
    assert not cache.exists()


def test_missing_weights_are_reported(tmp_path: Path) -> None:
    source = replace(bundled_minilm(), directory=tmp_path)
    with pytest.raises(ModelIntegrityError, match="not found"):
        verify(source)
