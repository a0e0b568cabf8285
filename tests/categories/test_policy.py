from __future__ import annotations

from pathlib import Path

import pytest

from categories.policy import DEFAULT, PolicyError, load_policies, merge, parse_policy
from gateway.settings import Settings, SettingsError


def test_builtin_policies() -> None:
    policies = load_policies()
    names = [p.name for p in policies.policies]
    assert set(names) >= {
        "code", "math", "factual", "time_sensitive", "creative", "sensitive", "conversation",
        DEFAULT,
    }  # fmt: skip
    assert names[-1] == DEFAULT  # claims what nothing else does
    creative = policies["creative"]  # exact repeats only, one answer each
    assert creative.enabled and not creative.semantic and creative.pool == 1
    assert policies["time_sensitive"].ttl_seconds <= 3600
    assert policies["sensitive"].threshold > policies[DEFAULT].threshold
    assert policies["conversation"].threshold < policies[DEFAULT].threshold
    for policy in policies.policies:
        assert policy.threshold_floor <= policy.threshold
        assert policy.ttl_ceiling_seconds >= policy.ttl_seconds
        assert policy.eviction in ("lru", "lfu", "fifo")


def test_user_file_merges_field_by_field_and_adds_categories(tmp_path: Path) -> None:
    path = tmp_path / "policies.toml"
    path.write_text(
        "[classifier]\nprototype_min_similarity = 0.4\n"
        "[categories.code]\nthreshold = 0.97\n"
        "[categories.recipes]\nttl_seconds = 60.0\nttl_ceiling_seconds = 120.0\n"
        "prototypes = ['How long do I bake banana bread?']\n"
    )
    policies = load_policies(path)
    builtin = load_policies()
    assert policies["code"].threshold == 0.97
    assert policies["code"].ttl_seconds == builtin["code"].ttl_seconds  # untouched fields stay
    recipes = policies["recipes"]
    assert recipes.ttl_seconds == 60.0 and recipes.prototypes
    assert recipes.threshold == builtin[DEFAULT].threshold  # inherited from default
    assert recipes.rules == ()  # rules are never inherited
    assert policies.classifier.prototype_min_similarity == 0.4
    assert policies.policies[-1].name == DEFAULT


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"threshold": 1.5}, r"categories.x.threshold must be a cosine"),
        ({"threshold": "high"}, r"categories.x.threshold must be a number"),
        ({"threshold": 0.9, "threshold_floor": 0.95}, r"threshold_floor"),
        ({"ttl_seconds": 0}, r"ttl_seconds must be positive"),
        ({"ttl_seconds": 100.0, "ttl_ceiling_seconds": 50.0}, r"ttl_ceiling_seconds"),
        ({"quota": 0}, r"quota must be at least 1"),
        ({"quota": 2.5}, r"quota must be a number of entries"),
        ({"eviction": "random"}, r"eviction must be one of lru, lfu, fifo"),
        ({"enabled": "yes"}, r"enabled must be true or false"),
        ({"rules": ["("]}, r"rules\[0\] is not a linear-time regular expression"),
        ({"rules": [r"(a)\1"]}, r"rules\[0\] is not a linear-time regular expression"),
        ({"rules": [r"(?=x)x"]}, r"rules\[0\] is not a linear-time regular expression"),
        ({"prototypes": "one"}, r"prototypes must be a list of strings"),
        ({"treshold": 0.9}, r"unknown setting 'treshold'"),
        ({"max_temperature": -1}, r"max_temperature"),
        ({"threshold": 10**400}, r"threshold must be a number"),
        ({"quota": 2**70}, r"quota must be a number of entries"),
        ({"rules": ["\ud800"]}, r"rules\[0\] is not a linear-time regular expression"),
    ],
)
def test_invalid_policies_are_named(table: dict[str, object], message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        load_policies(None, {"categories": {"x": table}})


def test_structure_errors(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="must exist"):
        merge([("file", {"categories": {"code": {"threshold": 0.9, "threshold_floor": 0.9}}})])
    with pytest.raises(PolicyError, match="lowercase"):
        load_policies(None, {"categories": {"Bad Name": {}}})
    with pytest.raises(PolicyError, match="not found"):
        load_policies(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[categories.code\n")
    with pytest.raises(PolicyError, match=r"broken\.toml"):
        load_policies(broken)
    with pytest.raises(PolicyError, match="unknown classifier setting"):
        load_policies(None, {"classifier": {"k": 3}})


def test_settings_take_a_policy_file_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "mine.toml").write_text("[categories.math]\nquota = 7\n")
    config = tmp_path / "gateway.toml"
    config.write_text(
        '[categories]\nfile = "mine.toml"\n[categories.default]\nthreshold = 0.91\n'
        "threshold_floor = 0.9\n"
    )
    settings = Settings.load(config, {})
    assert settings.policies["math"].quota == 7
    assert settings.policies[DEFAULT].threshold == 0.91
    config.write_text("[categories.default]\neviction = 'random'\n")
    with pytest.raises(SettingsError, match=r"categories\.default\.eviction"):
        Settings.load(config, {})


def test_parse_policy_updates_part_of_a_policy() -> None:
    base = load_policies()["code"]
    changed = parse_policy("code", {"quota": 10, "eviction": "fifo"}, base)
    assert changed.quota == 10 and changed.eviction == "fifo"
    assert changed.threshold == base.threshold and changed.rules == base.rules
    with pytest.raises(PolicyError, match="threshold_floor"):
        parse_policy("code", {"threshold": 0.5, "threshold_floor": 0.6}, base)
