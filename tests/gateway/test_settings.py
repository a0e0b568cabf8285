from __future__ import annotations

import json
from pathlib import Path

import pytest

from embeddings.trained import shipped_dir
from gateway.settings import DEFAULT_STORE_URL, Settings, SettingsError


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.store.url == DEFAULT_STORE_URL
    assert settings.store.resolved_index_dir() == Path("gateway.db.index")
    assert settings.embedding.device == "auto"
    assert settings.embedding.int8 is None  # auto: int8 on the CPU, fp32 on a GPU
    assert (settings.embedding.head_tokens, settings.embedding.question_tokens) == (64, 16)
    assert settings.server.workers == 1 and settings.server.http == "auto"
    assert settings.cache.hot_bytes > 0 and settings.cache.follow_interval_s > 0
    assert settings.embedding.batch.max_batch == 32
    assert settings.server.host == "127.0.0.1" and settings.server.port == 8080
    # the shipped trained model serves by default, at the threshold its card chose
    card = json.loads((shipped_dir() / "card.json").read_text())
    served = max(card["threshold"], card["thresholds"].get("default", 0.0))
    assert settings.policies["default"].threshold == served and settings.policies["default"].guard
    assert settings.embedding.model == "trained"
    assert settings.adaptation.max_inflight == 64
    assert settings.models == ()


def test_environment_overrides(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "GATEWAY_STORE_URL": f"sqlite:///{tmp_path}/x.db",
            "GATEWAY_EMBEDDING_CACHE_DIR": str(tmp_path / "models"),
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


@pytest.mark.parametrize(("value", "int8"), [("auto", None), ("true", True), ("false", False)])
def test_int8_is_auto_true_or_false(value: str, int8: bool | None) -> None:
    settings = Settings.from_env({"GATEWAY_EMBEDDING_INT8": value})
    assert settings.embedding.int8 is int8 and settings.embedding.options().int8 is int8


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
        ("GATEWAY_SERVER_PORT", "70000", "server.port"),
        ("GATEWAY_CACHE_TOP_K", "0", "cache.top_k"),
        ("GATEWAY_CACHE_SLIDING_TTL", "sometimes", "cache.sliding_ttl"),
        ("GATEWAY_ADAPTATION_MAX_INFLIGHT", "0", "adaptation.max_inflight"),
        ("GATEWAY_EMBEDDING_HEAD_TOKENS", "255", "embedding.head_tokens"),
        ("GATEWAY_EMBEDDING_QUESTION_TOKENS", "-1", "embedding.question_tokens"),
        ("GATEWAY_SERVER_WORKERS", "0", "server.workers"),
        ("GATEWAY_SERVER_HTTP", "h2", "server.http"),
        ("GATEWAY_CACHE_HOT_BYTES", "-1", "cache.hot_bytes"),
        ("GATEWAY_CACHE_FOLLOW_INTERVAL_S", "0", "cache.follow_interval_s"),
        ("GATEWAY_CATEGORIES_FILE", "/nonexistent/policies.toml", "policy file not found"),
    ],
)
def test_invalid_values_are_named(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env({name: value})


ISSUE_EXAMPLE = """
[store]
url = "sqlite:///gateway.db"

[[models]]
name = "gpt-4o-mini"                    # what clients ask for
litellm_model = "openai/gpt-4o-mini"
api_base = "http://127.0.0.1:9000/v1"   # optional
api_key_env = "OPENAI_API_KEY"          # optional
tier = "small"                          # small | large, used by routing later
"""


def test_the_documented_config_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(ISSUE_EXAMPLE)
    settings = Settings.load(path, {"GATEWAY_CACHE_TOP_K": "7"})
    (model,) = settings.models
    assert model.name == "gpt-4o-mini" and model.api_base == "http://127.0.0.1:9000/v1"
    assert model.api_key_env == "OPENAI_API_KEY" and model.tier == "small"
    assert settings.cache.top_k == 7  # the environment wins over the file


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[store\nurl = 1", "gateway.toml"),
        ("[stroe]\nurl = 'x'", "unknown section"),
        ("[cache]\ntop_kk = 3", "unknown setting"),
        ("[cache]\ntop_k = 'many'", "cache.top_k must be an integer"),
        ("[[models]]\nname = 'a'", "litellm_model"),
        ("[[models]]\nname = 'a'\nlitellm_model = 'x'\ntier = 'huge'", "small or large"),
        (
            "[[models]]\nname = 'a'\nlitellm_model = 'x'\n[[models]]\nname = 'a'\n"
            "litellm_model = 'y'",
            "unique",
        ),
        (
            "[[tenants.virtual_keys]]\nkey_sha256 = 'ab'\ntenant = '" + "t" * 65 + "'",
            "a tenant is 1 to 64 characters",
        ),
        (
            "[[tenants.virtual_keys]]\nkey_sha256 = 'ab'\ntenant = 't'\nnamespace = '"
            + "n" * 64
            + "'",
            "a namespace is at most 63 characters",
        ),
    ],
)
def test_config_mistakes_are_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    with pytest.raises(SettingsError, match=message):
        Settings.load(path, {})


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="not found"):
        Settings.load(tmp_path / "nope.toml", {})
