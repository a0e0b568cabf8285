"""The shipped trained model: served merged into ONNX, checked before use, calibrated."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from categories.policy import Calibration, load_policies
from embeddings.card import load_card
from embeddings.errors import ModelIntegrityError
from embeddings.model import bundled_minilm
from embeddings.options import EmbedderOptions
from embeddings.protocol import embed_all
from embeddings.runtime import OnnxEmbedder, load_embedder
from embeddings.trained import shipped_dir
from gateway.settings import Settings, SettingsError


def test_onnx_with_the_merged_adapter_matches_pytorch_with_the_adapter(
    model_cache: Path, prompts: list[str]
) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModel, AutoTokenizer

    source = bundled_minilm()
    tokenizer = AutoTokenizer.from_pretrained(str(source.directory))
    model = PeftModel.from_pretrained(
        AutoModel.from_pretrained(str(source.directory)).float(), str(shipped_dir())
    ).eval()  # the adapter kept apart: what training computed
    texts = [*prompts[:64], "", "word " * 400, "東京は今何時ですか"]
    with torch.no_grad():
        batch = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        reference = torch.nn.functional.normalize(pooled, dim=1).numpy()
    # truncated as the reference is: the head only (no window for long texts)
    options = EmbedderOptions(
        cache_dir=model_cache, model=shipped_dir(), head_tokens=None, question_tokens=None
    )
    head_only = load_embedder(options)
    ours = embed_all(head_only, texts, batch_size=16)
    assert float(np.abs(ours - reference).max()) < 1e-4
    assert "+minilm-qqp-v1:" in head_only.model_id


def test_the_trained_model_tells_near_misses_apart(
    trained_embedder: OnnxEmbedder, embedder: OnnxEmbedder
) -> None:
    card = load_card(shipped_dir(), base_sha256=bundled_minilm().sha256, dim=384)
    near_misses = [
        ("How do I turn on dark mode?", "How do I turn off dark mode?"),
        ("How do I enable notifications?", "How do I disable notifications?"),
        ("What is 15% of 200?", "What is 25% of 200?"),
    ]
    for a, b in near_misses:
        base, trained = (float(np.dot(*m.embed([a, b]))) for m in (embedder, trained_embedder))
        assert trained < card.threshold and trained < base
    same = trained_embedder.embed(
        ["What is the capital of France?", "What's France's capital city?"]
    )
    assert float(np.dot(*same)) > card.threshold  # the control: a paraphrase still clears it


def _copy(tmp_path: Path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(shipped_dir(), target)
    return target


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "adapter_model.safetensors").unlink(), "missing adapter_model"),
        (lambda d: (d / "adapter_model.safetensors").write_bytes(b"x" * 64), "checksum"),
        (lambda d: (d / "card.json").unlink(), "has no card.json"),
        (lambda d: (d / "card.json").write_text("{"), "not readable JSON"),
        (lambda d: _edit(d, dim=768), "dimension 768"),
        (lambda d: _edit(d, base={"name": "x", "sha256": "0" * 64}), "adapts base weights"),
        (lambda d: _edit(d, threshold=1.5), "threshold"),
        (lambda d: _edit(d, compression={"threshold": 2.0}), "compression.threshold"),
    ],
)
def test_a_bad_model_directory_is_refused(tmp_path: Path, damage: object, message: str) -> None:
    directory = _copy(tmp_path)
    load_card(directory, base_sha256=bundled_minilm().sha256, dim=384)  # the control
    damage(directory)  # type: ignore[operator]
    with pytest.raises(ModelIntegrityError, match=message):
        load_embedder(EmbedderOptions(cache_dir=tmp_path / "cache", model=directory))


def _edit(directory: Path, **fields: object) -> None:
    card = json.loads((directory / "card.json").read_text())
    (directory / "card.json").write_text(json.dumps({**card, **fields}))


def test_settings_serve_the_trained_model_by_default_with_its_thresholds(tmp_path: Path) -> None:
    card = json.loads((shipped_dir() / "card.json").read_text())
    trained = Settings.from_dict({}, {})
    assert trained.embedding.options().model == shipped_dir()
    assert trained.policies["default"].threshold >= card["threshold"]
    base = Settings.from_dict({"embedding": {"model": "base"}}, {})
    assert base.embedding.options().model is None
    assert base.policies["default"].threshold == load_policies()["default"].threshold
    # a user's table still wins over the calibration
    mine = Settings.from_dict({"categories": {"default": {"threshold": 0.97}}}, {})
    assert mine.policies["default"].threshold == 0.97
    with pytest.raises(SettingsError, match=r"embedding\.model"):
        Settings.from_dict({"embedding": {"model": str(tmp_path / "nothing")}}, {})


def test_calibration_keeps_each_category_margin() -> None:
    builtin = load_policies()
    calibrated = load_policies(calibration=Calibration(0.90, {"code": 0.80, "factual": 0.97}))
    margin = builtin["code"].threshold - builtin["default"].threshold
    assert calibrated["default"].threshold == pytest.approx(0.90)
    assert calibrated["code"].threshold == pytest.approx(0.90 + margin)  # measured looser: kept
    assert calibrated["factual"].threshold == pytest.approx(0.97)  # measured stricter: used
    for policy in calibrated.policies:
        assert policy.threshold_floor <= policy.threshold
