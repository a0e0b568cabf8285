"""Policies changed through the admin API, kept in the store: they win over the policy
files at start, until deleted."""

from __future__ import annotations

import json
import logging
import time

from sqlalchemy import delete, select

from categories.policy import DEFAULT, Policy, PolicyError, PolicySet, parse_policy
from gateway.store.changes import log_change
from gateway.store.models import PolicyOverride
from gateway.store.queries import Store

logger = logging.getLogger(__name__)


def with_overrides(store: Store, policies: PolicySet) -> tuple[PolicySet, set[str]]:
    """The file policies with every stored override applied (at start), and their names."""
    with store.session() as session:
        rows = list(session.scalars(select(PolicyOverride)))
    applied = set()
    for row in rows:
        base = policies.by_name.get(row.category) or new_policy_base(policies)
        try:
            policies = policies.replace(
                parse_policy(row.category, json.loads(row.policy_json), base)
            )
        except (PolicyError, ValueError) as exc:  # e.g. the file moved a bound since
            logger.error("ignoring the stored policy of %s: %s", row.category, exc)
            continue
        applied.add(row.category)
    return policies, applied


def new_policy_base(policies: PolicySet) -> Policy:
    """What a category created through the API starts from: `default`, minus its examples."""
    fields = {k: v for k, v in policies[DEFAULT].to_dict().items() if k != "name"}
    return parse_policy("new", {**fields, "rules": [], "prototypes": [], "description": ""})


def save_override(store: Store, policy: Policy) -> None:
    fields = {k: v for k, v in policy.to_dict().items() if k != "name"}
    row = PolicyOverride(
        category=policy.name, policy_json=json.dumps(fields), updated_at=time.time()
    )
    with store.session() as session, session.begin():
        session.merge(row)
        log_change(session, "policy", policy.name)


def forget_override(store: Store, name: str) -> bool:
    with store.session() as session, session.begin():
        result = session.execute(delete(PolicyOverride).where(PolicyOverride.category == name))
        if result.rowcount:  # type: ignore[attr-defined]
            log_change(session, "policy", name)
        return bool(result.rowcount)  # type: ignore[attr-defined]
