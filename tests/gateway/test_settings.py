from __future__ import annotations

from pathlib import Path

import pytest

from gateway.settings import DEFAULT_STORE_URL, Settings, SettingsError


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.store.url == DEFAULT_STORE_URL
    assert settings.store.resolved_index_dir() == Path("gateway.db.index")
    assert settings.embedding.device == "auto" and not settings.embedding.int8
    assert settings.embedding.batch.max_batch == 32


def test_environment_overrides(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "GATEWAY_STORE_URL": f"sqlite:///{tmp_path}/x.db",
            "GATEWAY_MODEL_CACHE_DIR": str(tmp_path / "models"),
            "GATEWAY_EMBEDDING_DEVICE": "cpu",
            "GATEWAY_EMBEDDING_INT8": "true",
            "GATEWAY_EMBEDDING_MAX_BATCH": "8",
            "GATEWAY_EMBEDDING_MAX_WAIT_MS": "5",
        }
    )
    assert settings.store.resolved_index_dir() == tmp_path / "x.db.index"
    assert settings.embedding.cache_dir == tmp_path / "models"
    assert settings.embedding.options().int8 and settings.embedding.options().device == "cpu"
    assert settings.embedding.batch.max_batch == 8
    assert settings.embedding.batch.max_wait == pytest.approx(0.005)


def test_postgres_has_no_index_dir_unless_configured() -> None:
    settings = Settings.from_env({"GATEWAY_STORE_URL": "postgresql://u@h/db"})
    assert settings.store.resolved_index_dir() is None


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("GATEWAY_EMBEDDING_DEVICE", "tpu", "auto, cuda or cpu"),
        ("GATEWAY_EMBEDDING_INT8", "maybe", "true or false"),
        ("GATEWAY_EMBEDDING_MAX_BATCH", "many", "integer"),
        ("GATEWAY_EMBEDDING_MAX_BATCH", "0", "max_batch"),
        ("GATEWAY_EMBEDDING_MAX_WAIT_MS", "soon", "number"),
    ],
)
def test_invalid_values_are_named(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env({name: value})
