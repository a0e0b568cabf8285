from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from categories.calibrate import PairsError, choose, curve, read_pairs
from categories.classifier import Classifier
from categories.policy import load_policies
from embeddings.runtime import OnnxEmbedder
from gateway.cli import main


@pytest.fixture(scope="module")
def classifier(embedder: OnnxEmbedder) -> Classifier:
    return Classifier.build(load_policies(), embedder)


def classify(classifier: Classifier, embedder: OnnxEmbedder, text: str, header: str | None = None):  # type: ignore[no-untyped-def]
    return classifier.classify(text, embedder.embed([text])[0], header)


def test_without_a_model_header_then_rules_then_prototype_then_default(
    classifier: Classifier, embedder: OnnxEmbedder
) -> None:
    fenced = "Why does this fail?\n```python\nprint(x[0])\n```"
    assert classify(classifier, embedder, fenced).category == "code"
    assert classify(classifier, embedder, fenced).step == "rule"
    # An existing category named in the header beats every rule; case and spaces ignored.
    decided = classify(classifier, embedder, fenced, header=" Sensitive ")
    assert (decided.category, decided.step) == ("sensitive", "header")
    # An unknown category in the header is ignored: the next step decides.
    assert classify(classifier, embedder, fenced, header="nope").step == "rule"
    assert classifier.model is None  # the shipped model was trained on another embedder
    weather = classify(classifier, embedder, "What is the weather forecast for Oslo tomorrow?")
    assert (weather.category, weather.step) == ("time_sensitive", "rule")
    poem = classify(classifier, embedder, "Write a poem about my grandmother's garden")
    assert (poem.category, poem.step) == ("creative", "rule")
    # No rule fires: the nearest prototype decides, with its score.
    nearest = classify(classifier, embedder, "Who was the author of the novel Moby Dick?")
    assert (nearest.category, nearest.step) == ("factual", "prototype")
    assert nearest.score is not None and nearest.score >= 0.2
    # Without an embedding (lookup failed) the default applies.
    assert classifier.classify("Who wrote Moby Dick?", None).step == "default"


def test_below_the_prototype_minimum_is_default(embedder: OnnxEmbedder) -> None:
    strict = load_policies(None, {"classifier": {"prototype_min_similarity": 0.99}})
    classifier = Classifier.build(strict, embedder)
    found = classify(classifier, embedder, "Who was the author of the novel Moby Dick?")
    assert (found.category, found.step) == ("default", "default")


def test_a_category_added_as_data_classifies(embedder: OnnxEmbedder) -> None:
    policies = load_policies(
        None,
        {
            "categories": {
                "recipes": {
                    "prototypes": ["How long do I bake banana bread?", "Recipe for pancakes"],
                    "rules": [r"\brecipe\b"],
                }
            }
        },
    )
    classifier = Classifier.build(policies, embedder)
    assert classify(classifier, embedder, "Give me a recipe for soup").category == "recipes"
    found = classify(classifier, embedder, "How long should banana bread bake for?")
    assert (found.category, found.step) == ("recipes", "prototype")


def test_curve_and_choice() -> None:
    similarity = np.asarray([0.99, 0.97, 0.95, 0.93, 0.91, 0.85, 0.75])
    labels = np.asarray([True, True, False, True, False, True, False])
    points = {p.threshold: p for p in curve(similarity, labels)}
    assert points[0.95].accepted == 3 and points[0.95].false == 1
    assert points[0.93].precision == pytest.approx(0.75) and points[0.93].recall == 0.75
    chosen = choose(list(points.values()), 0.75)
    assert chosen is not None and chosen.threshold == 0.92  # lowest with precision >= 0.75
    assert choose(list(points.values()), 1.0) is not None  # 0.96..0.99 accept only right ones
    assert choose(curve(similarity, np.zeros(7, dtype=bool)), 0.5) is None


def test_read_pairs_names_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"a": "x", "b": "y", "label": 1}\n\n{"a": "x", "b": 2, "label": 1}\n')
    with pytest.raises(PairsError, match=r"pairs.jsonl:3: expected"):
        read_pairs(path)
    path.write_text('{"a": "x", "b": "y", "label": 1}\nnot json\n')
    with pytest.raises(PairsError, match=r"pairs.jsonl:2: not JSON"):
        read_pairs(path)
    path.write_text("")
    with pytest.raises(PairsError, match="no pairs"):
        read_pairs(path)


def test_gateway_calibrate_prints_the_curve_and_the_threshold(
    tmp_path: Path,
    model_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("GATEWAY_EMBEDDING_CACHE_DIR", str(model_cache))
    pairs = tmp_path / "pairs.jsonl"
    rows = [
        ("How do I reverse a list in Python?", "How can I reverse a Python list?", 1),
        ("How do I sort a dict by value in Python?", "Sorting a Python dict by its values", 1),
        ("How do I reverse a list in Python?", "How do I reverse a string in Python?", 0),
        ("What is the capital of France?", "What's France's capital city?", 1),
        ("What is the capital of France?", "What is the capital of Germany?", 0),
    ]
    pairs.write_text(
        "\n".join(f'{{"a": "{a}", "b": "{b}", "label": {label}}}' for a, b, label in rows)
    )
    out = tmp_path / "curve.json"
    code = main(["calibrate", str(pairs), "--target-precision", "0.99", "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "threshold for precision >= 0.99" in printed
    assert "code" in printed and "all" in printed
    assert '"target_precision": 0.99' in out.read_text()
    assert main(["calibrate", str(pairs), "--category", "code"]) == 0
    assert "code: 3 pairs" in capsys.readouterr().out
    assert main(["calibrate", str(pairs), "--category", "nope"]) == 2
    assert main(["calibrate", str(tmp_path / "none.jsonl")]) == 2
    assert main(["calibrate", str(pairs), "--target-precision", "2"]) == 2
