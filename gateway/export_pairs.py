"""`gateway export-pairs`: the feedback verdicts of each tenant as a pairs file, the
training data of that tenant's Flower client (`flower-supernode --node-config
"pairs-file='...'"`) or of `gateway train --pairs`."""

from __future__ import annotations

import hashlib
from pathlib import Path

from federated.pairs import Pair, write_pairs
from gateway.settings import Settings
from gateway.store import open_store
from gateway.store.feedback import feedback_pairs


def export_pairs(settings: Settings, out: Path, tenant: str | None) -> dict[str, Path]:
    """One `<tenant>.jsonl` per tenant in `out` (tenant ids are salted hashes already; the
    file name hashes them once more so that any id makes a safe name)."""
    store = open_store(settings.store.url)
    try:
        pairs = feedback_pairs(store, tenant)
    finally:
        store.engine.dispose()
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for owner, rows in sorted(pairs.items()):
        path = out / f"{hashlib.sha256(owner.encode()).hexdigest()[:16]}.jsonl"
        write_pairs(path, (Pair(a, b, label) for a, b, label in rows))
        written[owner] = path
    return written
