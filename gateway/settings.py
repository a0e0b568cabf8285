"""Settings: one TOML file plus `GATEWAY_*` environment overrides, read once at the edge
into frozen, validated objects.

Every scalar setting `key` of a `[section]` can be overridden by `GATEWAY_SECTION_KEY`,
for example `GATEWAY_STORE_URL`, `GATEWAY_ADAPTATION_MAX_INFLIGHT`, `GATEWAY_EMBEDDING_INT8`.
Category policies come from `categories/policies.toml`, a user file (`[categories] file`,
or `GATEWAY_CATEGORIES_FILE`) and inline `[categories.NAME]` tables.
Secrets never appear here: models name the environment variable that holds their key.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from platformdirs import user_cache_dir

from categories.load import LoadSettings
from categories.policy import (
    Calibration,
    ClassifierSettings,
    PolicyError,
    PolicySet,
    load_policies,
)
from embeddings.errors import ModelIntegrityError
from embeddings.options import BatchLimits, EmbedderOptions
from embeddings.trained import BASE, TRAINED, card_thresholds, model_dir
from gateway.params import valid_extra

DEFAULT_STORE_URL = "sqlite:///gateway.db"


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL (where saved indexes go beside it), else None.
    Parsed as SQLAlchemy does (`sqlite[+driver]:///relative`, `////absolute`, a query
    after `?`), without importing it."""
    scheme, separator, rest = url.partition("://")
    if not separator or scheme.split("+", 1)[0] != "sqlite":
        return None
    database = rest.removeprefix("/").split("?", 1)[0]
    return Path(database) if database and database != ":memory:" else None


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names it."""


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise SettingsError(message)


def default_model_cache() -> Path:
    return Path(user_cache_dir("semantic-cache-gateway")) / "models"


@dataclass(frozen=True)
class IndexParams:
    """HNSW parameters; see hnswlib's ALGO_PARAMS.md for the trade-offs."""

    m: int = 16
    ef_construction: int = 200
    ef_search: int = 64
    initial_capacity: int = 1024


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 1_048_576
    access_log: bool = True  # one JSON line per request on stderr
    log_prompts: bool = False  # include the prompt in those lines
    body_timeout_s: float = 30.0  # a body must arrive within this (else 408)
    header_timeout_s: float = 10.0  # request headers must arrive within this (else closed)
    idle_timeout_s: float = 5.0  # a keep-alive connection idle this long is closed
    event_queue: int = 10_000  # request events waiting to be written; more are dropped
    event_loop: str = "auto"  # auto (uvloop where installed), uvloop or asyncio
    http: str = "auto"  # auto (httptools where installed), httptools or h11
    workers: int = 1  # processes serving the port (each with its own indexes and model)

    def __post_init__(self) -> None:
        _check(0 < self.port < 65536, "server.port must be between 1 and 65535")
        _check(self.max_body_bytes > 0, "server.max_body_bytes must be positive")
        for name in ("body_timeout_s", "header_timeout_s", "idle_timeout_s"):
            value = getattr(self, name)
            _check(math.isfinite(value) and value > 0, f"server.{name} must be positive")
        _check(self.event_queue >= 1, "server.event_queue must be at least 1")
        _check(1 <= self.workers <= 64, "server.workers must be from 1 to 64")
        _check(
            self.event_loop in ("auto", "uvloop", "asyncio"),
            f"server.event_loop must be auto, uvloop or asyncio, not {self.event_loop!r}",
        )
        _check(
            self.http in ("auto", "httptools", "h11"),
            f"server.http must be auto, httptools or h11, not {self.http!r}",
        )


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
    # int8 (per-channel dynamic quantisation): true, false, or "auto" (int8 on the CPU,
    # where it is faster at the same quality; fp32 on a GPU)
    int8: bool | None = None
    threads: int = 0
    max_batch: int = 32
    max_wait_ms: float = 0.0  # a batch that is not full waits this long for company (0: none)
    max_queue: int = 256  # texts waiting to be embedded; past it a lookup fails open at once
    # "trained": the adapter shipped in the package; "base": all-MiniLM-L6-v2 as published;
    # else the path of a model directory written by `gateway train`.
    model: str = TRAINED
    # true: serve the model directory's PCA projection (`gateway train --compress`)
    compress: bool = False
    # A prompt longer than the model's window (256 tokens) is embedded by this many tokens
    # of its head and the rest of the window from its tail, the vector mixed with that of
    # its last `question_tokens` tokens (0: not mixed).
    head_tokens: int = 64
    question_tokens: int = 16

    def __post_init__(self) -> None:
        _check(bool(self.model), "embedding.model must be trained, base or a model directory")
        _check(
            self.device in ("auto", "cuda", "cpu"),
            f"embedding.device must be auto, cuda or cpu, not {self.device!r}",
        )
        _check(self.max_batch >= 1, "embedding.max_batch must be at least 1")
        _check(self.max_wait_ms >= 0, "embedding.max_wait_ms must not be negative")
        _check(self.max_queue >= 1, "embedding.max_queue must be at least 1")
        _check(0 <= self.head_tokens <= 254, "embedding.head_tokens must be from 0 to 254")
        _check(0 <= self.question_tokens <= 254, "embedding.question_tokens must be from 0 to 254")

    @property
    def batch(self) -> BatchLimits:
        return BatchLimits(
            max_batch=self.max_batch, max_wait=self.max_wait_ms / 1000, max_queue=self.max_queue
        )

    def options(self) -> EmbedderOptions:
        return EmbedderOptions(
            cache_dir=self.cache_dir,
            int8=self.int8,
            device=self.device,
            threads=self.threads,
            model=model_dir(self.model),
            compress=self.compress,
            head_tokens=self.head_tokens,
            question_tokens=self.question_tokens or None,
        )

    def calibration(self) -> Calibration | None:
        """The thresholds of the model served; None for the base model (the built-in ones)."""
        return calibration_of(self.model, compressed=self.compress)


def calibration_of(choice: str, *, compressed: bool = False) -> Calibration | None:
    """The thresholds a model choice (trained, base or a directory) was calibrated to."""
    directory = model_dir(choice)
    if directory is None:
        if compressed:
            raise SettingsError("embedding.compress needs a trained model with a projection")
        return None
    try:
        threshold, thresholds = card_thresholds(directory, compressed=compressed)
    except ModelIntegrityError as exc:
        raise SettingsError(f"embedding.model: {exc}") from None
    return Calibration(threshold, thresholds)


@dataclass(frozen=True)
class CacheSettings:
    """What applies to every category; thresholds, TTLs and quotas are per category
    (`categories/policies.toml`, the `[categories]` table)."""

    sliding_ttl: bool = False
    top_k: int = 4
    lookup_deadline_ms: float = 250.0
    # Cache requests that offer tools (tools are then part of the key; JSON answers only).
    cache_tools: bool = False
    store_finish_reasons: tuple[str, ...] = ("stop", "tool_calls")
    sweep_interval_s: float = 60.0
    # The exact tier's hot answers held in memory (0: none), and how long one is held
    # before it is read from the store again (what another process changed shows by then):
    # "auto" is 60 s with one worker (only `gateway` commands change the store behind its
    # back), 2 s with several.
    hot_bytes: int = 64 * 1024 * 1024
    hot_max_age_s: float | None = None
    # Entries other processes (other workers) store reach this one's indexes within this.
    follow_interval_s: float = 0.25

    def __post_init__(self) -> None:
        _check(self.top_k >= 1, "cache.top_k must be at least 1")
        _check(self.lookup_deadline_ms > 0, "cache.lookup_deadline_ms must be positive")
        _check(self.hot_bytes >= 0, "cache.hot_bytes must not be negative")
        _check(
            self.hot_max_age_s is None or self.hot_max_age_s >= 0,
            "cache.hot_max_age_s must not be negative",
        )
        _check(self.follow_interval_s > 0, "cache.follow_interval_s must be positive")


@dataclass(frozen=True)
class ModelSettings:
    """An upstream model clients may ask for by `name`."""

    name: str
    litellm_model: str
    api_base: str | None = None
    api_key_env: str | None = None
    tier: str = "small"
    timeout_s: float = 60.0
    # Request parameters beyond the OpenAI API's that clients may send to this model (for
    # example a provider's `top_k`). Transport, credential and pricing options never pass.
    allow_params: tuple[str, ...] = ()
    # This model's capacity and latency objective for load (else `[adaptation]`'s).
    max_inflight: int | None = None
    latency_slo_ms: float | None = None

    def __post_init__(self) -> None:
        _check(bool(self.name), "models.name must not be empty")
        _check(
            self.max_inflight is None or self.max_inflight >= 1,
            f"models.max_inflight must be at least 1 (model {self.name!r})",
        )
        _check(
            self.latency_slo_ms is None
            or (math.isfinite(self.latency_slo_ms) and self.latency_slo_ms > 0),
            f"models.latency_slo_ms must be positive (model {self.name!r})",
        )
        for name in self.allow_params:
            _check(
                valid_extra(name),
                f"models.allow_params: {name!r} may not be set by clients (model {self.name!r})",
            )
        _check(
            self.tier in ("small", "large"),
            f"models.tier must be small or large (model {self.name!r})",
        )


@dataclass(frozen=True)
class RouteSettings:
    """A name clients ask for that routes each miss to a `small` or a `large` model (names of
    `[[models]]`), by load, the examples found, the category and the price (`gateway.routing`).
    """

    name: str
    small: str
    large: str
    # The estimated share of acceptable small answers needed to send a miss to the small
    # model while the large one is idle, and when it is full (linear between).
    quality_bar: float = 0.75
    quality_floor: float = 0.3
    # The small model's share of acceptable answers without examples, and with examples of
    # full relevance. Defaults assume a capable small model (gpt-4o-mini beside gpt-4o);
    # `bench/incontext.py` measures a real one (SmolLM2-135M: 0.09 without, 0.15 with).
    small_quality: float = 0.5
    small_quality_examples: float = 0.8

    def __post_init__(self) -> None:
        where = f"routes[{self.name!r}]"
        _check(bool(self.name), "routes.name must not be empty")
        for name in ("quality_bar", "quality_floor", "small_quality", "small_quality_examples"):
            value = getattr(self, name)
            _check(0.0 <= value <= 1.0, f"{where}.{name} must be in [0, 1]")
        _check(
            self.quality_floor <= self.quality_bar,
            f"{where}.quality_floor must not exceed quality_bar",
        )


@dataclass(frozen=True)
class AdminSettings:
    """The admin API's bearer token: read from `token_env`, or checked against
    `token_sha256` (hex) so that the token itself need not be on the server."""

    token_env: str = "GATEWAY_ADMIN_TOKEN"
    token_sha256: str = ""

    def __post_init__(self) -> None:
        digest = self.token_sha256
        _check(
            digest == "" or (len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)),
            "admin.token_sha256 must be 64 lowercase hex digits",
        )


@dataclass(frozen=True)
class VirtualKey:
    """Callers whose key hashes to `key_sha256` share `tenant` (and `namespace`)."""

    key_sha256: str
    tenant: str
    namespace: str = ""
    route_header: bool | None = None  # None: as `[tenants] route_header`

    def __post_init__(self) -> None:
        # The store's columns: a tenant of 64 characters; a namespace of 128, which this
        # one joined by "/" with a client's `x-cache-namespace` (at most 64) must fit.
        _check(
            1 <= len(self.tenant) <= 64,
            "tenants.virtual_keys: a tenant is 1 to 64 characters",
        )
        _check(
            len(self.namespace) <= 63,
            "tenants.virtual_keys: a namespace is at most 63 characters",
        )


@dataclass(frozen=True)
class TenantSettings:
    salt_env: str = "GATEWAY_TENANT_SALT"
    require_key: bool = False
    pass_through_key: bool = False  # send the caller's key upstream instead of the configured
    virtual_keys: tuple[VirtualKey, ...] = ()
    # Callers may choose a route's member with `x-gateway-route` (a virtual key may differ).
    route_header: bool = True


@dataclass(frozen=True)
class Settings:
    server: ServerSettings = ServerSettings()
    store: StoreSettings = StoreSettings()
    embedding: EmbeddingSettings = field(default_factory=EmbeddingSettings)
    index: IndexParams = IndexParams()
    cache: CacheSettings = CacheSettings()
    tenants: TenantSettings = TenantSettings()
    models: tuple[ModelSettings, ...] = ()
    routes: tuple[RouteSettings, ...] = ()
    adaptation: LoadSettings = LoadSettings()
    admin: AdminSettings = AdminSettings()
    policies: PolicySet = field(default_factory=lambda: _default_policies())
    # Where the policies came from: to build them again for another model's calibration.
    policy_sources: PolicySources = field(default_factory=lambda: PolicySources())

    def trained_category_model(self) -> Path:
        """Where `gateway train-classifier` writes a model, and the gateway looks for one
        when `categories.model` names none: beside the saved indexes (else the model
        cache)."""
        folder = self.store.resolved_index_dir() or self.embedding.cache_dir
        return folder / "category-model.npz"

    def policies_for(self, calibration: Calibration | None) -> PolicySet:
        """The configured policies under another model's thresholds."""
        return self.policy_sources.load(calibration)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        return cls.load(None, env)

    @classmethod
    def load(cls, path: Path | None, env: Mapping[str, str] = os.environ) -> Settings:
        raw: dict[str, Any] = {}
        base = Path.cwd()
        if path is not None:
            base = path.parent
            try:
                raw = tomllib.loads(path.read_text("utf-8"))
            except FileNotFoundError:
                raise SettingsError(f"config file not found: {path}") from None
            except tomllib.TOMLDecodeError as exc:
                raise SettingsError(f"{path}: {exc}") from None
        return cls.from_dict(raw, env, base=base)

    @classmethod
    def from_dict(
        cls, raw: dict[str, Any], env: Mapping[str, str] = os.environ, *, base: Path | None = None
    ) -> Settings:
        """Settings from parsed TOML (a dict of sections), then the environment. A relative
        policy file is found from `base` (the config file's folder)."""
        return _build(raw, env, base or Path.cwd())


_SECTIONS: dict[str, type[Any]] = {
    "server": ServerSettings,
    "store": StoreSettings,
    "embedding": EmbeddingSettings,
    "index": IndexParams,
    "cache": CacheSettings,
    "tenants": TenantSettings,
    "adaptation": LoadSettings,
    "admin": AdminSettings,
}


@dataclass(frozen=True)
class PolicySources:
    """The user's policy file and inline `[categories]` tables, merged over the built-in
    policies as calibrated for the model served."""

    file: Path | None = None
    inline: Mapping[str, Any] = field(default_factory=dict)
    model: Path | None = None  # the category model file; None: the trained or shipped one

    def load(self, calibration: Calibration | None) -> PolicySet:
        try:
            return load_policies(self.file, self.inline, calibration)
        except PolicyError as exc:
            raise SettingsError(str(exc)) from None


def _default_policies() -> PolicySet:
    return load_policies(calibration=EmbeddingSettings().calibration())


CLASSIFIER_KEYS = tuple(f.name for f in dataclasses.fields(ClassifierSettings))


def _sources(raw: Any, env: Mapping[str, str], base: Path) -> PolicySources:
    """`[categories]`: `file` (merged over the built-in policies), `model` (a category
    model file), the `[classifier]` settings, and `[categories.NAME]` tables merged last."""
    if not isinstance(raw, dict):
        raise SettingsError("[categories] must be a table")
    table = dict(raw)
    file = env.get("GATEWAY_CATEGORIES_FILE") or table.pop("file", None)
    table.pop("file", None)
    classifier = {k: table.pop(k) for k in CLASSIFIER_KEYS if k in table}
    if file is not None and not isinstance(file, str):
        raise SettingsError("categories.file must be a string")
    model = env.get("GATEWAY_CATEGORIES_MODEL") or table.pop("model", None)
    table.pop("model", None)
    if model is not None and not isinstance(model, str):
        raise SettingsError("categories.model must be a string")
    path = None if file is None else base / Path(file).expanduser()
    model_path = None if model is None else base / Path(model).expanduser()
    return PolicySources(path, {"classifier": classifier, "categories": table}, model_path)


def _build(raw: dict[str, Any], env: Mapping[str, str], base: Path) -> Settings:
    unknown = set(raw) - set(_SECTIONS) - {"models", "routes", "categories"}
    if unknown:
        raise SettingsError(f"unknown section(s): {', '.join(sorted(unknown))}")
    sections: dict[str, Any] = {}
    for name, kind in _SECTIONS.items():
        table = raw.get(name, {})
        if not isinstance(table, dict):
            raise SettingsError(f"[{name}] must be a table")
        table = dict(table)
        from_env = []
        for item in dataclasses.fields(kind):
            variable = f"GATEWAY_{name}_{item.name}".upper()
            value = env.get(variable)
            if value not in (None, ""):
                table[item.name] = value
                from_env.append(variable)
        try:
            sections[name] = _make(kind, table, name)
        except SettingsError as exc:
            if not from_env:
                raise
            raise SettingsError(f"{exc} (environment: {', '.join(from_env)})") from None
    models = raw.get("models", [])
    if not isinstance(models, list):
        raise SettingsError("models must be an array of tables ([[models]])")
    built = tuple(_make(ModelSettings, m, f"models[{i}]") for i, m in enumerate(models))
    names = [m.name for m in built]
    if len(names) != len(set(names)):
        raise SettingsError("models: each name must be unique")
    routes = _routes(raw.get("routes", []), {m.name: m for m in built})
    embedding = sections["embedding"]
    if embedding.model not in (TRAINED, BASE):
        embedding = dataclasses.replace(
            embedding, model=str(base / Path(embedding.model).expanduser())
        )
        sections["embedding"] = embedding
    sources = _sources(raw.get("categories", {}), env, base)
    policies = sources.load(embedding.calibration())
    return Settings(
        models=built, routes=routes, policies=policies, policy_sources=sources, **sections
    )


def _routes(raw: Any, models: Mapping[str, ModelSettings]) -> tuple[RouteSettings, ...]:
    """`[[routes]]`: each names a small and a large model of `[[models]]`, by tier."""
    if not isinstance(raw, list):
        raise SettingsError("routes must be an array of tables ([[routes]])")
    routes = tuple(_make(RouteSettings, r, f"routes[{i}]") for i, r in enumerate(raw))
    names = [r.name for r in routes]
    _check(len(names) == len(set(names)), "routes: each name must be unique")
    for route in routes:
        _check(
            route.name not in models,
            f"routes[{route.name!r}]: a model has that name; clients must name one or the other",
        )
        for member in ("small", "large"):
            name = getattr(route, member)
            model = models.get(name)
            _check(model is not None, f"routes[{route.name!r}].{member}: no model named {name!r}")
            assert model is not None
            _check(
                model.tier == member,
                f"routes[{route.name!r}].{member}: model {name!r} has tier {model.tier!r}",
            )
    return routes


def _make(kind: type[Any], table: Any, where: str) -> Any:
    if not isinstance(table, dict):
        raise SettingsError(f"{where} must be a table")
    hints = typing.get_type_hints(kind)
    known = {f.name for f in dataclasses.fields(kind)}
    unknown = set(table) - known
    if unknown:
        raise SettingsError(f"{where}: unknown setting(s) {', '.join(sorted(unknown))}")
    values = {key: _coerce(hints[key], value, f"{where}.{key}") for key, value in table.items()}
    try:
        return kind(**values)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, SettingsError):
            raise
        raise SettingsError(f"{where}: {exc}") from None


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None or (value == "auto" and type(None) in args):
            return None  # "auto": the optional setting left to the gateway
        return _coerce(next(a for a in args if a is not type(None)), value, where)
    if origin is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise SettingsError(f"{where} must be a list")
        return tuple(_coerce(args[0], v, f"{where}[]") for v in value)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _make(hint, value, where)
    if hint is bool:
        if isinstance(value, bool):
            return value
        lowered = str(value).strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{where} must be true or false, not {value!r}")
    if hint in (int, float):
        if isinstance(value, bool):
            raise SettingsError(f"{where} must be a number, not {value!r}")
        try:
            number = hint(value)
        except (TypeError, ValueError):
            kind = "an integer" if hint is int else "a number"
            raise SettingsError(f"{where} must be {kind}, not {value!r}") from None
        return number
    if hint is Path:
        return Path(str(value)).expanduser()
    if hint is str:
        if not isinstance(value, str):
            raise SettingsError(f"{where} must be a string, not {value!r}")
        return value
    return value
