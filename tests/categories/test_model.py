"""The category model: the shipped weights on the embedder they were trained on, the
order of the steps around it, its file, its training, and `gateway train-classifier`."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from categories.classifier import Classifier
from categories.labelled import Labelled, hashed_split
from categories.model import CategoryModel, ModelFileError, load_model, model_family
from categories.policy import load_policies
from categories.training import train
from embeddings.runtime import OnnxEmbedder
from gateway.cli import main
from tests.support.stores import store_url


@pytest.fixture(scope="module")
def shipped() -> CategoryModel:
    model = load_model(None)
    assert model is not None
    return model


def classify(classifier: Classifier, embedder: OnnxEmbedder, text: str):  # type: ignore[no-untyped-def]
    return classifier.classify(text, embedder.embed([text])[0])


def test_the_shipped_model_decides_what_no_rule_claims(
    trained_embedder: OnnxEmbedder, shipped: CategoryModel
) -> None:
    classifier = Classifier.build(load_policies(), trained_embedder, shipped)
    assert classifier.model is shipped
    expected = {
        "Who won the last Super Bowl?": "time_sensitive",
        "Who wrote the novel Moby Dick?": "factual",
        "How do I reverse a linked list in Java?": "code",
        "hello there, how are you doing": "conversation",
        "Pretend you are a pirate and describe your ship": "creative",
        "Set an alarm for 6 am": "default",
    }
    for text, category in expected.items():
        found = classify(classifier, trained_embedder, text)
        assert (text, found.category, found.step) == (text, category, "model")
        assert found.score is not None and found.score >= shipped.min_confidence
    # Rules still come first, and a header before them.
    ruled = classify(classifier, trained_embedder, "Write a poem about the sea")
    assert (ruled.category, ruled.step) == ("creative", "rule")
    named = classifier.classify("Who wrote Moby Dick?", None, "code")
    assert (named.category, named.step) == ("code", "header")


def test_below_the_minimum_confidence_is_default(
    trained_embedder: OnnxEmbedder, shipped: CategoryModel
) -> None:
    sure = load_policies(None, {"classifier": {"min_confidence": 1.0}})
    classifier = Classifier.build(sure, trained_embedder, shipped)
    found = classify(classifier, trained_embedder, "Who won the last Super Bowl?")
    assert (found.category, found.step) == ("default", "default")


def test_a_category_the_model_does_not_know_claims_by_its_prototypes(
    trained_embedder: OnnxEmbedder, shipped: CategoryModel
) -> None:
    recipes = {
        "prototypes": ["How long do I bake banana bread?", "Recipe for fluffy pancakes"],
        "threshold": 0.9,
    }
    policies = load_policies(None, {"categories": {"recipes": recipes}})
    classifier = Classifier.build(policies, trained_embedder, shipped)
    near = classify(classifier, trained_embedder, "How long should banana bread bake?")
    assert (near.category, near.step) == ("recipes", "prototype")
    # Far from them, the model decides as before; the model's own categories' prototypes
    # are not consulted.
    far = classify(classifier, trained_embedder, "Who wrote the novel Moby Dick?")
    assert (far.category, far.step) == ("factual", "model")


def test_a_model_of_another_embedder_is_not_used(
    embedder: OnnxEmbedder, shipped: CategoryModel, caplog: pytest.LogCaptureFixture
) -> None:
    assert not shipped.fits(embedder.model_id, embedder.dim)
    classifier = Classifier.build(load_policies(), embedder, shipped)
    assert classifier.model is None
    assert "train-classifier" in caplog.text
    found = classify(classifier, embedder, "Who was the author of the novel Moby Dick?")
    assert found.step == "prototype"


def test_model_file_round_trip_and_errors(tmp_path: Path, shipped: CategoryModel) -> None:
    path = tmp_path / "m.npz"
    shipped.save(path)
    again = CategoryModel.load(path)
    vector = np.random.default_rng(1).standard_normal(384).astype(np.float32)
    assert again.predict(vector) == shipped.predict(vector)
    p = again.probabilities(np.stack([vector, -vector]))
    assert p.shape == (2, len(shipped.categories)) and np.allclose(p.sum(axis=1), 1.0)
    assert again.card == shipped.card and "test" in again.card
    assert model_family("name:abc:int8:head64") == "name:abc"
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a model")
    with pytest.raises(ModelFileError):
        CategoryModel.load(broken)
    with pytest.raises(ModelFileError):
        CategoryModel.load(tmp_path / "missing.npz")
    with pytest.raises(ModelFileError, match="shapes"):
        replace(shipped, b2=shipped.b2[:-1])
    assert load_model(None, broken) is None  # a trained file that is broken: logged, unused


def test_training_learns_calibrates_and_scores_the_held_out_split() -> None:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((3, 384)).astype(np.float32)
    rows, vectors = [], []
    for i in range(900):
        name = ("default", "code", "math")[i % 3]
        vector = centres[i % 3] + 1.2 * rng.standard_normal(384).astype(np.float32)
        text = f"prompt {i}"
        rows.append(Labelled(text, name, "synthetic", hashed_split(text)))
        vectors.append(vector / np.linalg.norm(vector))
    model = train(rows, np.stack(vectors), "synthetic:1", epochs=10)
    assert model.categories == ("code", "default", "math")
    assert model.embedding == "synthetic:1" and model.temperature > 0
    assert 0.0 <= model.min_confidence <= 0.9
    test = model.card["test"]
    assert test["prompts"] == sum(r.split == "test" for r in rows) > 100
    assert test["accuracy"] >= 0.95
    assert len(model.card["min_confidence_curve"]) > 1
    assert sum(model.card["prompts"]["train"].values()) == sum(r.split == "train" for r in rows)


def _write_data(folder: Path) -> None:
    """A tiny public-data folder in the real formats."""
    categories = folder / "categories"
    (folder / "incontext").mkdir(parents=True)
    categories.mkdir()
    arena = [
        {"subcategory": "coding", "prompt": f"Write a Python function number {i} that sorts"}
        for i in range(12)
    ] + [
        {"subcategory": "creative_writing", "prompt": f"Write a sonnet number {i}"}
        for i in range(12)
    ]
    (categories / "arena_hard_v2.jsonl").write_text("\n".join(json.dumps(a) for a in arena))
    situated = [
        {"question": f"who is the current mayor of town {i}", "is_dependent": "yes"}
        for i in range(10)
    ] + [{"question": f"who built the bridge number {i}", "is_dependent": "no"} for i in range(10)]
    for name in ("train", "dev"):
        (categories / f"situatedqa_temporal_{name}.jsonl").write_text(
            "\n".join(json.dumps(s) for s in situated)
        )
    clinc = {
        part: [[f"what is the weather in city {i} {part}", "weather"] for i in range(8)]
        + [[f"set an alarm number {i} {part}", "alarm"] for i in range(8)]
        for part in ("train", "val", "test")
    }
    (categories / "clinc150.json").write_text(json.dumps(clinc))
    conala = [{"intent": f"reverse list number {i} in python", "code": "x[::-1]"} for i in range(8)]
    (categories / "conala_train.json").write_text(json.dumps(conala))
    for name in ("gpteacher_codegen-instruct.json",
                 "gpteacher_roleplay-simple-deduped-roleplay-instruct.json"):  # fmt: skip
        rows = [
            {"instruction": f"{name} task {i}", "input": "", "response": "ok"} for i in range(6)
        ]
        (folder / "incontext" / name).write_text(json.dumps(rows))
    pairs = [{"a": f"Why is the sky blue {i}?", "b": f"What makes the sky blue {i}?", "label": 1}
             for i in range(10)]  # fmt: skip
    (folder / "qqp_pairs.jsonl").write_text("\n".join(json.dumps(p) for p in pairs))


def test_train_classifier_command_writes_a_model_the_gateway_loads(
    tmp_path: Path,
    model_cache: Path,
    trained_embedder: OnnxEmbedder,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = tmp_path / "data"
    _write_data(data)
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[store]\nurl = "{store_url(tmp_path / "g.db")}"\n'
        f'index_dir = "{tmp_path / "g.db.index"}"\n'
        f'[embedding]\ncache_dir = "{model_cache}"\n'
        '[categories.recipes]\nprototypes = ["How long do I bake banana bread?"]\n'
    )
    assert main(["train-classifier", "--config", str(config), "--data", str(tmp_path / "no")]) == 2
    assert main(["train-classifier", "--config", str(config), "--data", str(data)]) == 0
    written = tmp_path / "g.db.index" / "category-model.npz"  # where the gateway looks
    model = load_model(None, written)
    assert model is not None and model.fits(trained_embedder.model_id, trained_embedder.dim)
    # The configured category joined from its prototypes; the public data gave the rest.
    assert {"recipes", "creative", "time_sensitive", "factual", "code"} <= set(model.categories)
    assert model.card["prompts"]["train"]["prototype/recipes"] == 1
    card = written.with_suffix(".md").read_text()
    assert "Held-out test split" in card and "| recipes |" in card
    assert "wrote" in capsys.readouterr().err
