"""Training a similarity model, central and federated (Flower's simulation engine), on a
tiny slice of the public pairs; what comes out is a model directory the gateway accepts."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from embeddings.card import load_card
from embeddings.model import bundled_minilm
from gateway.cli import main

pytestmark = pytest.mark.model  # loads the real model's weights


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sample = resources.files("gateway").joinpath("data/qqp_sample.jsonl").read_text("utf-8")
    lines = sample.split("\n")[:1500]  # the QQP sample shipped for the demo
    path = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _card(directory: Path) -> dict[str, Any]:
    load_card(directory, base_sha256=bundled_minilm().sha256, dim=384)  # it validates
    card: dict[str, Any] = json.loads((directory / "card.json").read_text())
    return card


def test_central_training_writes_a_model_directory(pairs_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "models"
    code = main(
        ["train", "--pairs", str(pairs_file), "--limit", "64", "--batch", "16",
         "--contrast", "16", "--out", str(out), "--name", "tiny", "--version", "v1"]
    )  # fmt: skip
    assert code == 0
    card = _card(out / "tiny-v1")
    assert card["name"] == "tiny" and 0.5 <= card["threshold"] < 1
    training = card["training"]
    assert training["mode"] == "central" and len(training["epochs"]) == 2
    validation = card["validation"]
    assert set(validation) >= {"best", "recall_at_precision_0.85"}
    # a second run does not overwrite it
    assert main(["train", "--pairs", str(pairs_file), "--limit", "64", "--out", str(out),
                 "--name", "tiny", "--version", "v1"]) == 2  # fmt: skip


def test_bad_training_files_are_refused_with_reasons(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.jsonl"
    same = [f'{{"a": "question {i}", "b": "the question {i}", "label": 1}}' for i in range(40)]
    bad.write_text('{"a": "x", "b": "y", "label": 1}\n{"a": "x"\n' + "\n".join(same) + "\n")
    assert main(["train", "--pairs", str(bad), "--strict", "--out", str(tmp_path)]) == 2
    assert "bad.jsonl:2: not JSON" in capsys.readouterr().err
    assert main(["train", "--pairs", str(bad), "--contrast", "0", "--out", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert "bad.jsonl:2: skipped" in captured.out and "only duplicates" in captured.err
    assert not list(tmp_path.glob("minilm-pairs-*"))
    for wrong in (["--batch", "0"], ["--clients", "-1"], ["--epochs", "nan"],
                  ["--version", "../elsewhere"], ["--compress", "512"]):  # fmt: skip
        with pytest.raises(SystemExit) as stopped:
            main(["train", "--pairs", str(bad), "--out", str(tmp_path), *wrong])
        assert stopped.value.code == 2
        assert wrong[0] in capsys.readouterr().err


def test_a_federated_round_in_the_simulation_engine(pairs_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "models"
    code = main(
        ["train", "--pairs", str(pairs_file), "--limit", "96", "--batch", "16",
         "--contrast", "0", "--federated", "--clients", "2", "--rounds", "1",
         "--strategy", "fedprox", "--out", str(out), "--name", "fed", "--version", "v1"]
    )  # fmt: skip
    assert code == 0
    card = _card(out / "fed-v1")
    training = card["training"]
    assert training["mode"] == "federated" and training["strategy"] == "fedprox"
    assert len(training["clients"]) == 2 and sum(training["clients"]) == 96
    rounds = training["rounds"]
    assert [r["round"] for r in rounds] == [0, 1]
    assert all(r["bytes_per_client_update"] <= 2 * 1024 * 1024 for r in rounds)
