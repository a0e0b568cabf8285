"""Category policies: what each category of prompt may cache, for how long, how much, and
how far load may bend it. Policies are data: the built-in `policies.toml`, then a user
file, then inline tables, each merged over the one before, validated once at start.

A policy file has an optional `[classifier]` table and one `[categories.NAME]` table per
category. Categories are tried by their rules in file order (built-in ones first). A new
category takes every field it does not set from `default`, except rules and prototypes.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from categories.rules import Rule, RuleError

DEFAULT = "default"
EVICTIONS = ("lru", "lfu", "fifo")
ROUTE_PREFERENCES = ("auto", "large", "small")
MAX_EXAMPLES = 8
MAX_EXAMPLE_TOKENS = 32_768
MAX_POOL = 16
MAX_NAME = 64  # characters of a category name
NAME_PATTERN = rf"^[a-z][a-z0-9_-]{{0,{MAX_NAME - 1}}}$"
_NAME = re.compile(NAME_PATTERN)


class PolicyError(ValueError):
    """A policy file or table is invalid; the message names the category and field."""


@dataclass(frozen=True)
class Policy:
    name: str
    enabled: bool = True
    threshold: float = 0.93  # cosine similarity a semantic hit must reach
    ttl_seconds: float = 7 * 24 * 3600
    quota: int = 100_000  # entries per tenant in this category
    eviction: str = "lru"
    max_temperature: float = 1.0  # requests above it are not cached
    threshold_floor: float = 0.93  # the lowest threshold full load may bring
    ttl_ceiling_seconds: float = 7 * 24 * 3600  # the longest TTL full load may bring
    guard: bool = True  # reject candidates differing in negation, numbers or entities
    # In-context examples for the small model of a route (`gateway.cache.examples`): entries
    # at least this similar (and below the hit threshold), within the budget, at most k_max.
    examples: bool = True
    example_floor: float = 0.6
    example_budget_tokens: int = 1024
    example_k_max: int = 2
    # Which member of a route a miss goes to: auto (the router decides), large or small.
    route: str = "auto"
    # Whether a paraphrase may be served this category's answers; false: exact repeats only.
    semantic: bool = True
    # Distinct answers kept per exact request: until `pool` are stored, a repeat asked above
    # temperature 0 goes upstream (and its answer joins the pool); then a random one is
    # served. At temperature 0 the newest is served at once.
    pool: int = 1
    rules: tuple[str, ...] = ()  # regular expressions (case-insensitive) that claim a prompt
    prototypes: tuple[str, ...] = ()  # example prompts: the nearest one claims a prompt
    description: str = ""

    def __post_init__(self) -> None:
        where = f"categories.{self.name}"
        _require(bool(_NAME.match(self.name)), f"{where}: a name is lowercase a-z, 0-9, _ or -")
        _require(-1.0 < self.threshold <= 1.0, f"{where}.threshold must be a cosine in (-1, 1]")
        _require(
            -1.0 < self.threshold_floor <= self.threshold,
            f"{where}.threshold_floor must be in (-1, threshold]",
        )
        _require(self.ttl_seconds > 0, f"{where}.ttl_seconds must be positive")
        _require(
            self.ttl_ceiling_seconds >= self.ttl_seconds,
            f"{where}.ttl_ceiling_seconds must be at least ttl_seconds",
        )
        _require(self.quota >= 1, f"{where}.quota must be at least 1")
        _require(
            self.eviction in EVICTIONS,
            f"{where}.eviction must be one of {', '.join(EVICTIONS)}, not {self.eviction!r}",
        )
        _require(self.max_temperature >= 0, f"{where}.max_temperature must not be negative")
        _require(-1.0 < self.example_floor <= 1.0, f"{where}.example_floor must be a cosine")
        _require(
            0 <= self.example_budget_tokens <= MAX_EXAMPLE_TOKENS,
            f"{where}.example_budget_tokens must be from 0 to {MAX_EXAMPLE_TOKENS}",
        )
        _require(
            0 <= self.example_k_max <= MAX_EXAMPLES,
            f"{where}.example_k_max must be from 0 to {MAX_EXAMPLES}",
        )
        _require(1 <= self.pool <= MAX_POOL, f"{where}.pool must be from 1 to {MAX_POOL}")
        _require(
            self.route in ROUTE_PREFERENCES,
            f"{where}.route must be one of {', '.join(ROUTE_PREFERENCES)}, not {self.route!r}",
        )
        for i, rule in enumerate(self.rules):
            try:
                Rule(rule)
            except RuleError as exc:
                message = f"{where}.rules[{i}] is not a linear-time regular expression: {exc}"
                raise PolicyError(message) from None

    def refusal(self, temperature: float | None) -> str | None:
        """Why this policy does not cache a request at `temperature` (a short reason code
        for headers, events and metrics), if it does not."""
        if not self.enabled:
            return "category_disabled"
        if temperature is not None and temperature > self.max_temperature:
            return "temperature_above_limit"
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }


@dataclass(frozen=True)
class ClassifierSettings:
    """`[classifier]`: how a prompt that no header or rule claims is classified."""

    # With a category model that fits the embedder: its prediction, when its calibrated
    # probability is at least this (None: the value calibrated with the model), else
    # `default`.
    min_confidence: float | None = None
    # Categories the model was not trained on (added since) claim a prompt by their
    # prototypes, when the nearest one's cosine is at least this.
    untrained_min_similarity: float = 0.6
    # Without a model that fits: the nearest prototype's category when its cosine is at
    # least this, else `default`.
    prototype_min_similarity: float = 0.5

    def __post_init__(self) -> None:
        for name in ("untrained_min_similarity", "prototype_min_similarity"):
            value = getattr(self, name)
            _require(_number(value), f"classifier.{name} must be a number")
            _require(-1.0 <= value <= 1.0, f"classifier.{name} must be a cosine in [-1, 1]")
        if self.min_confidence is not None:
            ok = _number(self.min_confidence) and 0.0 <= self.min_confidence <= 1.0
            _require(ok, "classifier.min_confidence must be a probability in [0, 1]")


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


@dataclass(frozen=True)
class PolicySet:
    """Every category's policy, in rule order, and the classifier's settings."""

    policies: tuple[Policy, ...]
    classifier: ClassifierSettings = field(default_factory=ClassifierSettings)
    by_name: Mapping[str, Policy] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = [p.name for p in self.policies]
        _require(DEFAULT in names, f"categories.{DEFAULT} must exist")
        _require(len(names) == len(set(names)), "categories: each name must be unique")
        object.__setattr__(self, "by_name", {p.name: p for p in self.policies})

    def __getitem__(self, name: str) -> Policy:
        return self.by_name[name]

    def __contains__(self, name: object) -> bool:
        return name in self.by_name

    def replace(self, policy: Policy) -> PolicySet:
        """This set with one policy changed or added (keeping rule order)."""
        policies = [policy if p.name == policy.name else p for p in self.policies]
        if policy.name not in self.by_name:  # new categories go before `default`
            policies.insert(len(policies) - 1, policy)
        return PolicySet(tuple(policies), self.classifier)


_FIELDS = {f.name: f for f in dataclasses.fields(Policy)}
_HINTS = typing.get_type_hints(Policy)
_INHERITED_EXCEPT = {"name", "rules", "prototypes", "description"}


def builtin_text() -> str:
    return resources.files("categories").joinpath("policies.toml").read_text("utf-8")


@dataclass(frozen=True)
class Calibration:
    """The thresholds a trained similarity model was calibrated to on validation pairs: its
    best F0.5 threshold, and a category's own where validation held enough of it.

    The built-in thresholds are for the base model. Under a trained model each category keeps
    its built-in margin over `default` (code and math stay stricter, small talk looser) on top
    of the model's threshold; a category's own measured threshold replaces that only where it
    is stricter. Floors keep their built-in distance below the threshold. A user's policy file,
    inline tables and changes through the admin API still come after, and win."""

    threshold: float
    thresholds: Mapping[str, float] = field(default_factory=dict)

    def layer(self, builtin: Mapping[str, Any]) -> dict[str, Any]:
        tables = builtin.get("categories", {})
        reference = tables.get(DEFAULT, {})
        ref_threshold = float(reference.get("threshold", 0.93))
        ref_floor = float(reference.get("threshold_floor", ref_threshold))
        calibrated = {}
        for name, table in tables.items():
            threshold = float(table.get("threshold", ref_threshold))
            floor = float(table.get("threshold_floor", ref_floor))
            shifted = self.threshold + threshold - ref_threshold
            value = min(round(max(self.thresholds.get(name, shifted), shifted), 3), 0.995)
            calibrated[name] = {
                "threshold": value,
                "threshold_floor": round(value - (threshold - min(floor, threshold)), 3),
            }
        return {"categories": calibrated}


def load_policies(
    file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    calibration: Calibration | None = None,
) -> PolicySet:
    """The built-in policies, calibrated to the model served, merged with a user file and
    then with inline tables."""
    builtin = _parse(builtin_text())
    layers: list[tuple[str, Mapping[str, Any]]] = [("built-in policies", builtin)]
    if calibration is not None:
        layers.append(("the model's calibration", calibration.layer(builtin)))
    if file is not None:
        try:
            text = file.read_text("utf-8")
        except FileNotFoundError:
            raise PolicyError(f"policy file not found: {file}") from None
        layers.append((str(file), _parse(text, str(file))))
    if overrides:
        layers.append(("[categories]", overrides))
    return merge(layers)


def _parse(text: str, where: str = "built-in policies") -> dict[str, Any]:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{where}: {exc}") from None
    unknown = set(raw) - {"classifier", "categories"}
    _require(not unknown, f"{where}: unknown table(s) {', '.join(sorted(unknown))}")
    return raw


def merge(layers: list[tuple[str, Mapping[str, Any]]]) -> PolicySet:
    tables: dict[str, dict[str, Any]] = {}
    classifier: dict[str, Any] = {}
    for where, layer in layers:
        extra = layer.get("classifier", {})
        _require(isinstance(extra, dict), f"{where}: [classifier] must be a table")
        unknown = set(extra) - {f.name for f in dataclasses.fields(ClassifierSettings)}
        names = ", ".join(sorted(unknown))
        _require(not unknown, f"{where}: unknown classifier setting(s) {names}")
        classifier.update(extra)
        categories = layer.get("categories", {})
        _require(isinstance(categories, dict), f"{where}: [categories] must be a table")
        for name, table in categories.items():
            _require(isinstance(table, dict), f"{where}: categories.{name} must be a table")
            tables.setdefault(name, {}).update(_typed(name, table))
    base = tables.get(DEFAULT, {})
    policies = []
    # `default` first, so that a mistake in it is named there, not in a category inheriting it.
    for name, table in sorted(tables.items(), key=lambda item: item[0] != DEFAULT):
        inherited = {k: v for k, v in base.items() if k not in _INHERITED_EXCEPT}
        try:
            policies.append(Policy(name=name, **{**inherited, **table}))
        except PolicyError:
            raise
        except (TypeError, ValueError) as exc:
            raise PolicyError(f"categories.{name}: {exc}") from None
    # `default` claims what nothing else does, so it comes last; the rest keep file order.
    policies = policies[1:] + policies[:1] if policies and policies[0].name == DEFAULT else policies
    try:
        settings = ClassifierSettings(**classifier)
    except TypeError as exc:  # a field it does not have
        raise PolicyError(f"[classifier]: {exc}") from None
    return PolicySet(tuple(policies), settings)


def parse_policy(name: str, table: Mapping[str, Any], base: Policy | None = None) -> Policy:
    """One policy from a JSON or TOML table, over `base` (for partial updates)."""
    values: dict[str, Any] = {}
    if base is not None:
        values = {f: getattr(base, f) for f in _FIELDS if f != "name"}
    values.update(_typed(name, table))
    try:
        return Policy(name=name, **values)
    except PolicyError:
        raise
    except (TypeError, ValueError) as exc:
        raise PolicyError(f"categories.{name}: {exc}") from None


def _typed(name: str, table: Mapping[str, Any]) -> dict[str, Any]:
    """Check each value's type (TOML and JSON give typed values); numbers become floats."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        where = f"categories.{name}.{key}"
        _require(key in _FIELDS and key != "name", f"categories.{name}: unknown setting {key!r}")
        hint = _HINTS[key]
        if hint is bool:
            _require(isinstance(value, bool), f"{where} must be true or false")
        elif hint in (int, float):
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            ok = ok and abs(value) < 2**63  # false for NaN, infinities and huge TOML integers
            whole = ok and (hint is float or float(value).is_integer())
            _require(whole, f"{where} must be a number" + (" of entries" if hint is int else ""))
            value = hint(value)
        elif hint is str:
            _require(isinstance(value, str), f"{where} must be a string")
        else:  # tuple[str, ...]
            ok = isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
            _require(ok, f"{where} must be a list of strings")
            value = tuple(value)
        out[key] = value
    return out


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise PolicyError(message)
