"""`gateway train-classifier`: the category model trained again, on the embedding model the
gateway serves, from the public labelled data, every category's prototypes (categories
added through the admin API included) and the categories named in feedback. It writes the
weights and a card (`.md`, the data and the held-out metrics) where the gateway looks for
them; a running gateway uses them from its next start."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

from categories.classifier import Classifier
from categories.labelled import Labelled, public_prompts
from categories.model import CategoryModel, model_family
from categories.training import classified, train
from embeddings.protocol import embed_all
from gateway.settings import Settings

# A prototype or a category named in feedback counts as this many public prompts: there are
# few of them, and they are the operator's own word.
OPERATOR_WEIGHT = 5.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML configuration file")
    parser.add_argument(
        "--data",
        type=Path,
        default=Path(os.environ.get("GATEWAY_SHARED_DATA", "../shared/data")),
        help="the public data folder (categories/, incontext/, qqp_pairs.jsonl)",
    )
    parser.add_argument(
        "--out", type=Path, help="weights file to write (default: where the gateway looks)"
    )
    parser.add_argument("--no-feedback", action="store_true", help="ignore category feedback")
    parser.add_argument("--seed", type=int, default=0)


def command(args: argparse.Namespace, settings: Settings) -> int:
    from embeddings.runtime import load_serving
    from embeddings.trained import model_dir
    from gateway.runtime import served_model
    from gateway.store import open_store
    from gateway.store.feedback import category_labels
    from gateway.store.overrides import with_overrides

    def say(message: str) -> None:
        print(message, file=sys.stderr)

    if not (args.data / "categories").is_dir():
        say(f"gateway: no public data at {args.data} (--data, or GATEWAY_SHARED_DATA)")
        return 2
    store = open_store(settings.store.url)
    try:
        choice = served_model(store, settings)
        policies, _ = with_overrides(store, settings.policies)
        feedback = [] if args.no_feedback else category_labels(store)
    finally:
        store.engine.dispose()
    embedder = load_serving(replace(settings.embedding.options(), model=model_dir(choice)))
    rows = public_prompts(args.data)
    weights = [1.0] * len(rows)
    operator = [
        Labelled(text, policy.name, "prototype", "train")
        for policy in policies.policies
        for text in policy.prototypes
    ]
    operator += [
        Labelled(text, category, "feedback", "train")
        for text, category in feedback
        if category in policies
    ]
    first_operator = len(rows)
    rows += operator
    weights += [OPERATOR_WEIGHT] * len(operator)
    say(f"embedding {len(rows)} prompts with {embedder.model_id}")
    vectors = embed_all(embedder, [r.text for r in rows])
    model = train(
        rows,
        vectors,
        model_family(embedder.model_id),
        weights=weights,
        seed=args.seed,
        progress=say,
    )
    test = [i for i, r in enumerate(rows) if r.split == "test"]
    names = [p.name for p in policies.policies]
    if test:
        classifier = Classifier(
            policies, vectors[first_operator:], [r.category for r in operator], model
        )
        whole = classified(
            lambda text, vector: classifier.classify(text, vector).category,
            [rows[i] for i in test],
            vectors[test],
            names,
        )
        model = replace(model, card={**model.card, "test_with_rules": whole.to_dict()})
    out = args.out or settings.trained_category_model()
    model.save(out)
    out.with_suffix(".md").write_text(card(model, len(feedback)), "utf-8")
    say(f"wrote {out} and its card {out.with_suffix('.md')}")
    return 0


def card(model: CategoryModel, feedback: int) -> str:
    """The model card: what it was trained on, and how it scores on the held-out prompts."""
    info = model.card
    lines = [
        "# Category model",
        "",
        f"A one-hidden-layer MLP ({info.get('hidden')} units) over the prompt embedding of "
        f"`{model.embedding}`, trained by `gateway train-classifier` on "
        f"{info.get('trained_at')}.",
        "",
        f"- categories: {', '.join(model.categories)}",
        f"- softmax temperature {model.temperature:.2f} and minimum confidence "
        f"{model.min_confidence:.2f} (below it: `default`), both calibrated on the "
        "validation split",
        f"- category labels from feedback: {feedback}",
        "",
        "## Data (prompts per split, source/category)",
        "",
    ]
    for split, counts in info.get("prompts", {}).items():
        total = sum(counts.values())
        parts = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        lines.append(f"- {split} ({total}): {parts}")
    for key, title in (
        ("test", "the model alone"),
        ("test_with_rules", "rules first, then the model"),
    ):
        if key not in info:
            continue
        result = info[key]
        lines += [
            "",
            f"## Held-out test split: {title}",
            "",
            f"Accuracy {result['accuracy']:.3f}, macro F1 {result['macro_f1']:.3f}, "
            f"{result['prompts']} prompts.",
            "",
            "| category | prompts | claimed | precision | recall |",
            "| --- | --- | --- | --- | --- |",
        ]
        for name, row in result["per_category"].items():
            lines.append(
                f"| {name} | {row['prompts']} | {row['claimed']} | {row['precision']:.3f} "
                f"| {row['recall']:.3f} |"
            )
    return "\n".join(lines) + "\n"
