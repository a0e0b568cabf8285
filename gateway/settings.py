"""Settings, read once at the edge into frozen, validated objects.

Environment variables (all optional):
    GATEWAY_STORE_URL           SQLAlchemy URL of the store (default sqlite:///gateway.db)
    GATEWAY_INDEX_DIR           where saved indexes go (default: beside the SQLite file)
    GATEWAY_MODEL_CACHE_DIR     where the ONNX export is cached (default: user cache dir)
    GATEWAY_EMBEDDING_DEVICE    auto | cuda | cpu
    GATEWAY_EMBEDDING_INT8      1 to serve the int8 model
    GATEWAY_EMBEDDING_MAX_BATCH, GATEWAY_EMBEDDING_MAX_WAIT_MS   micro-batching limits
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from platformdirs import user_cache_dir

from embeddings.batcher import BatchLimits
from embeddings.runtime import EmbedderOptions
from gateway.index import IndexParams
from gateway.store.database import sqlite_path

DEFAULT_STORE_URL = "sqlite:///gateway.db"


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names it."""


def default_model_cache() -> Path:
    return Path(user_cache_dir("semantic-cache-gateway")) / "models"


@dataclass(frozen=True)
class StoreSettings:
    url: str = DEFAULT_STORE_URL
    index_dir: Path | None = None

    def resolved_index_dir(self) -> Path | None:
        """Saved indexes live beside a SQLite file; elsewhere only where configured."""
        if self.index_dir is not None:
            return self.index_dir
        db = sqlite_path(self.url)
        return db.with_name(db.name + ".index") if db else None


@dataclass(frozen=True)
class EmbeddingSettings:
    cache_dir: Path = field(default_factory=default_model_cache)
    device: str = "auto"
    int8: bool = False
    threads: int = 0
    batch: BatchLimits = BatchLimits()

    def options(self) -> EmbedderOptions:
        return EmbedderOptions(
            cache_dir=self.cache_dir, int8=self.int8, device=self.device, threads=self.threads
        )


@dataclass(frozen=True)
class Settings:
    store: StoreSettings = StoreSettings()
    embedding: EmbeddingSettings = field(default_factory=EmbeddingSettings)
    index: IndexParams = IndexParams()

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        def get(name: str) -> str | None:
            value = env.get(f"GATEWAY_{name}")
            return value if value not in (None, "") else None

        store = StoreSettings(
            url=get("STORE_URL") or DEFAULT_STORE_URL,
            index_dir=_path(get("INDEX_DIR")),
        )
        defaults = EmbeddingSettings()
        device = get("EMBEDDING_DEVICE") or defaults.device
        if device not in ("auto", "cuda", "cpu"):
            raise SettingsError(
                f"GATEWAY_EMBEDDING_DEVICE must be auto, cuda or cpu, not {device!r}"
            )
        try:
            batch = BatchLimits(
                max_batch=_int(
                    get("EMBEDDING_MAX_BATCH"), "EMBEDDING_MAX_BATCH", defaults.batch.max_batch
                ),
                max_wait=_float(
                    get("EMBEDDING_MAX_WAIT_MS"),
                    "EMBEDDING_MAX_WAIT_MS",
                    defaults.batch.max_wait * 1000,
                )
                / 1000,
            )
        except ValueError as exc:
            raise SettingsError(f"GATEWAY_EMBEDDING_*: {exc}") from exc
        embedding = EmbeddingSettings(
            cache_dir=_path(get("MODEL_CACHE_DIR")) or defaults.cache_dir,
            device=device,
            int8=_bool(get("EMBEDDING_INT8"), "EMBEDDING_INT8"),
            batch=batch,
        )
        return cls(store=store, embedding=embedding)


def _path(value: str | None) -> Path | None:
    return Path(value).expanduser() if value else None


def _int(value: str | None, name: str, default: int) -> int:
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise SettingsError(f"GATEWAY_{name} must be an integer, not {value!r}") from None


def _float(value: str | None, name: str, default: float) -> float:
    if value is None:
        return default
    try:
        return float(value)
    except ValueError:
        raise SettingsError(f"GATEWAY_{name} must be a number, not {value!r}") from None


def _bool(value: str | None, name: str) -> bool:
    if value is None:
        return False
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"GATEWAY_{name} must be true or false, not {value!r}")
