"""The base model against the trained one, on pairs neither was tuned on.

The held-out part is the test split of `qqp_pairs.jsonl` (`federated.pairs.split`: whole
groups of questions, so no test question was seen in training or validation). For each
model: the cache view per threshold (precision, recall, F0.5, hit rate), the figures at the
threshold the gateway serves it with (the `default` category's), the recall at precision
0.85 or better, named near-misses and paraphrases, and contrast pairs. Contextual
conversations are checked through the gateway's request keys: a follow-up is only ever
compared with entries of the same conversation so far.

    python -m bench.similarity [--limit N] [--model DIR]
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

from bench.common import add_cache_dir, print_table, shared_data, write_json
from categories.policy import load_policies
from embeddings.card import PROJECTION_FILE
from embeddings.options import EmbedderOptions
from embeddings.protocol import Embedder, embed_all
from embeddings.runtime import load_embedder, load_serving
from embeddings.trained import card_thresholds, model_dir
from federated.augment import contrast_pairs
from federated.evaluate import cache_view
from federated.pairs import read_pairs, split
from gateway.cache.keys import parse_chat

NAMED = [
    ("How do I reset my password?", "I forgot my password, how can I change it?", True),
    ("What is the capital of France?", "What's France's capital city?", True),
    ("How many calories are in a banana?", "How many calories does a banana have?", True),
    ("How do I turn on dark mode?", "How do I turn off dark mode?", False),
    ("How do I enable notifications?", "How do I disable notifications?", False),
    ("Sort a list in ascending order", "Sort a list in descending order", False),
    ("What is 15% of 200?", "What is 25% of 200?", False),
    ("Convert 10 miles to kilometers", "Convert 12 miles to kilometers", False),
]  # fmt: skip


def contextual_served(embedder: Embedder, threshold: float) -> tuple[int, int]:
    """Follow-ups served across conversations, and follow-up pairs above the threshold."""
    conversations = []
    for path in sorted((shared_data() / "contextual").glob("*.json")):
        for row in json.loads(path.read_text()):
            if isinstance(row, dict) and "Follow-Up Query" in row:
                conversations.append(row)
    keys = []
    for row in conversations:
        messages = [
            {"role": "user", "content": row["Main Query"]},
            {"role": "assistant", "content": row["Main Query Response"]},
            {"role": "user", "content": row["Follow-Up Query"]},
        ]
        keys.append(parse_chat({"model": "m", "messages": messages}, cache_tools=False))
    vectors = embed_all(embedder, [k.text for k in keys])
    similar = vectors @ vectors.T >= threshold
    served = above = 0
    for i in range(len(keys)):
        for j in range(len(keys)):
            if i == j or keys[i].text == keys[j].text or not similar[i, j]:
                continue
            above += 1
            served += keys[i].context_hash == keys[j].context_hash
    return served, above


def measure(name: str, embedder: Embedder, threshold: float, test: list[Any]) -> dict[str, Any]:
    a = embed_all(embedder, [p.a for p in test])
    b = embed_all(embedder, [p.b for p in test])
    view = cache_view(test, a, b)
    sweep = view.sweep()
    at = view.at(threshold)
    floor = view.recall_at_precision(0.85)
    made = contrast_pairs(test, 2000, seed=2)
    ca = embed_all(embedder, [p.a for p in made])
    cb = embed_all(embedder, [p.b for p in made])
    contrast_sim = np.sum(ca * cb, axis=1)
    named = []
    for x, y, same in NAMED:
        u, v = embedder.embed([x, y])
        cosine = float(np.dot(u, v))
        named.append({"a": x, "b": y, "same": same, "cosine": round(cosine, 3),
                      "served": cosine >= threshold})  # fmt: skip
    served, above = contextual_served(embedder, threshold)
    print(f"\n{name}: {embedder.model_id}, served at {threshold:.3f}\n")
    print_table(
        ["threshold", "served", "false", "precision", "recall", "F0.5", "hit rate"],
        [
            [f"{s.threshold:.3f}", s.hits, s.false_hits, s.precision, s.recall, s.f_beta,
             s.hits / len(test)]
            for s in sweep
            if round(s.threshold * 1000) % 25 == 0 and s.threshold >= 0.8
        ],
    )  # fmt: skip
    return {
        "model": embedder.model_id,
        "threshold": threshold,
        "at_threshold": at.to_dict(),
        "hit_rate_at_threshold": round(at.hits / len(test), 4),
        "best": view.best().to_dict(),
        "recall_at_precision_0.85": floor.to_dict() if floor else None,
        "contrast_pairs_below_threshold": round(float(np.mean(contrast_sim < threshold)), 4),
        "named": named,
        "contextual_followups_served_across_conversations": served,
        "contextual_followup_pairs_above_threshold": above,
        "sweep": [s.to_dict() for s in sweep],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=0, help="test pairs to use (0: all)")
    parser.add_argument("--model", default="trained", help="trained or a model directory")
    parser.add_argument("--int8", action="store_true", help="also the int8 model, same threshold")
    add_cache_dir(parser)
    args = parser.parse_args()
    pairs = read_pairs(shared_data() / "qqp_pairs.jsonl").pairs
    test = split(pairs).test
    if args.limit:
        test = test[: args.limit]
    directory = model_dir(args.model)
    assert directory is not None, "--model names the trained model to compare with the base"
    calibrated, per_category = card_thresholds(directory)
    base_threshold = load_policies()["default"].threshold
    trained_threshold = max(per_category.get("default", calibrated), calibrated)
    results: dict[str, Any] = {
        "data": "qqp_pairs.jsonl, test split",
        "pairs": len(test),
        "duplicates": sum(p.label for p in test),
        "base": measure(
            "base",
            load_embedder(EmbedderOptions(cache_dir=args.cache_dir)),
            base_threshold,
            test,
        ),
        "trained": measure(
            "trained",
            load_embedder(EmbedderOptions(cache_dir=args.cache_dir, model=directory)),
            trained_threshold,
            test,
        ),
    }
    if (directory / PROJECTION_FILE).exists():  # the compressed form, when the model has one
        compressed, _ = card_thresholds(directory, compressed=True)
        options = EmbedderOptions(cache_dir=args.cache_dir, model=directory, compress=True)
        results["trained_compressed"] = measure(
            "trained, compressed", load_serving(options), compressed, test
        )
    if args.int8:  # per-channel int8 of the same weights, at the fp32 model's threshold
        options = EmbedderOptions(cache_dir=args.cache_dir, model=directory, int8=True)
        results["trained_int8"] = measure(
            "trained, int8", load_embedder(options), trained_threshold, test
        )
    rows = []
    names = ("base", "trained", "trained_compressed", "trained_int8")
    for key in [k for k in names if k in results]:
        r = results[key]
        floor = r["recall_at_precision_0.85"] or {"recall": 0.0}
        at = r["at_threshold"]
        rows.append([key, f"{r['threshold']:.3f}", at["precision"], at["recall"], at["f_beta"],
                     r["hit_rate_at_threshold"], floor["recall"], r["best"]["f_beta"],
                     r["contrast_pairs_below_threshold"],
                     r["contextual_followups_served_across_conversations"]])  # fmt: skip
    print(f"\n{len(test)} held-out pairs ({results['duplicates']} duplicates)\n")
    print_table(
        ["model", "threshold", "precision", "recall", "F0.5", "hit rate", "recall@P>=.85",
         "best F0.5", "contrast apart", "contextual served"],
        rows,
    )  # fmt: skip
    print()
    for x in range(len(NAMED)):
        b, t = results["base"]["named"][x], results["trained"]["named"][x]
        kind = "same" if b["same"] else "different"
        print(f"{kind:9} base {b['cosine']:.3f} trained {t['cosine']:.3f}  {b['a']} | {b['b']}")
    write_json("similarity", results)


if __name__ == "__main__":
    main()
