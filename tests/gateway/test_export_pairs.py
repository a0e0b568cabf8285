"""`gateway export-pairs`: feedback verdicts become each tenant's training pairs."""

from __future__ import annotations

import json
from pathlib import Path

from federated.pairs import read_pairs
from gateway.cli import main
from tests.gateway.conftest import ADMIN, AppFactory, chat
from tests.support.stores import store_url


def test_verdicts_are_exported_per_tenant_as_labelled_pairs(
    make_app: AppFactory, tmp_path: Path
) -> None:
    db = tmp_path / "verdicts.db"
    original = "How do I undo the last git commit?"
    paraphrase = "How can I undo my last commit in git?"
    with make_app(db=db) as client:
        alice = {"authorization": "Bearer sk-alice"}
        client.post("/v1/chat/completions", json=chat(original), headers=alice)
        hit = client.post("/v1/chat/completions", json=chat(paraphrase), headers=alice)
        assert hit.headers["x-cache"] == "hit" and hit.headers["x-cache-tier"] == "semantic"
        exact = client.post("/v1/chat/completions", json=chat(original), headers=alice)
        for response in (hit, exact):
            verdict = {"response_id": response.json()["id"], "verdict": "wrong"}
            assert client.post("/admin/feedback", json=verdict, headers=ADMIN).status_code == 201
    config = tmp_path / "gateway.toml"
    config.write_text(f'[store]\nurl = "{store_url(db)}"\n')
    out = tmp_path / "pairs"
    assert main(["export-pairs", "--config", str(config), "--out", str(out)]) == 0
    (path,) = out.glob("*.jsonl")
    assert [json.loads(line) for line in path.read_text().splitlines()] == [
        {"a": original, "b": paraphrase, "label": 0}  # the exact repeat teaches nothing
    ]
    assert read_pairs(path).pairs  # a file `gateway train` reads
    assert main(["export-pairs", "--config", str(config), "--out", str(out),
                 "--tenant", "nobody"]) == 0  # fmt: skip
