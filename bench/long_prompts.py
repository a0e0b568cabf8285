"""Long prompts: what the embedding window does to hit quality when a question follows a
long pasted document (past the model's 256 tokens).

Held-out QQP pairs (the test split of `federated.pairs.split`) with a document before each
question: GPT-4 answers of `incontext/gpteacher_codegen-instruct.json` joined until they
fill the window alone, a distinct document for each question. Two cases:

- same document: both questions of a pair follow the same document (one conversation, a
  paraphrased question): the document must not make every question look the same;
- different documents: each question follows its own (two users, one question): the
  documents must not hide that the questions are the same.

Each window is measured at the served model's threshold (the `default` category's), with
the short questions alone as the reference: head only (as sentence-transformers truncates);
head + tail with 64 and 128 head tokens; and head 64 + tail with the vector mixed with that
of the last 16, 32 or 64 tokens (the question). The gateway serves head 64 mixed with the
last 16, the best F0.5 on the validation split (chosen there, reported here on the test
split).

    python -m bench.long_prompts [--limit 1500]
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import replace
from typing import Any

from bench.common import add_cache_dir, print_table, shared_data, write_json
from embeddings.options import EmbedderOptions
from embeddings.protocol import embed_all
from embeddings.runtime import OnnxEmbedder, load_embedder
from embeddings.trained import card_thresholds, model_dir
from federated.evaluate import cache_view
from federated.pairs import Pair, read_pairs, split

# (head tokens, question tokens): head only; head + tail; head + tail mixed with the end
WINDOWS: tuple[tuple[int | None, int | None], ...] = (
    (None, None), (64, None), (128, None), (64, 16), (64, 32), (64, 64),
)  # fmt: skip


def _name(head: int | None, question: int | None) -> str:
    name = "head only" if head is None else f"head {head} + tail"
    return name + (f", mixed with the last {question}" if question else "")


def documents(embedder: OnnxEmbedder, count: int) -> list[str]:
    """`count` distinct documents, each GPT-4 answers joined until it fills the model's
    window by itself."""
    rows = json.loads((shared_data() / "incontext/gpteacher_codegen-instruct.json").read_text())
    answers = [row["response"] for row in rows]
    rng = random.Random(0)
    docs: list[str] = []
    while len(docs) < count:
        parts: list[str] = []
        while sum(len(p) for p in parts) < 2000:
            parts.append(rng.choice(answers))
        docs.append("\n\n".join(parts))
    assert min(embedder.token_counts(docs)) == 256, "a document shorter than the window"
    return docs


def framed(test: list[Pair], docs: list[str], *, same: bool) -> list[Pair]:
    pairs = []
    for i, pair in enumerate(test):
        first = docs[2 * i]
        second = first if same else docs[2 * i + 1]
        pairs.append(replace(pair, a=f"{first}\n\n{pair.a}", b=f"{second}\n\n{pair.b}"))
    return pairs


def measure(embedder: OnnxEmbedder, pairs: list[Pair], threshold: float) -> dict[str, Any]:
    a = embed_all(embedder, [p.a for p in pairs])
    b = embed_all(embedder, [p.b for p in pairs])
    at = cache_view(pairs, a, b).at(threshold)
    return {**at.to_dict(), "hit_rate": round(at.hits / len(pairs), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=1500, help="held-out pairs")
    add_cache_dir(parser)
    args = parser.parse_args()
    test = split(read_pairs(shared_data() / "qqp_pairs.jsonl").pairs).test[: args.limit]
    directory = model_dir("trained")
    assert directory is not None
    calibrated, per_category = card_thresholds(directory)
    threshold = max(per_category.get("default", calibrated), calibrated)
    options = EmbedderOptions(cache_dir=args.cache_dir, model=directory)
    embedders = {
        (head, question): load_embedder(
            replace(options, head_tokens=head, question_tokens=question)
        )
        for head, question in WINDOWS
    }
    docs = documents(embedders[(None, None)], 2 * len(test))
    cases = {"same document": framed(test, docs, same=True),
             "different documents": framed(test, docs, same=False)}  # fmt: skip
    results: dict[str, Any] = {
        "pairs": len(test),
        "duplicates": sum(p.label for p in test),
        "threshold": threshold,
        "documents": len(docs),
        "short questions": measure(embedders[(None, None)], test, threshold),
    }
    for case, pairs in cases.items():
        results[case] = {_name(*w): measure(embedders[w], pairs, threshold) for w in WINDOWS}
    rows = [["short questions", "-", *_row(results["short questions"])]]
    for case in cases:
        rows += [[case, window, *_row(r)] for window, r in results[case].items()]
    print(f"\n{len(test)} held-out pairs ({results['duplicates']} duplicates), "
          f"threshold {threshold:.3f}\n")  # fmt: skip
    print_table(["case", "window", "precision", "recall", "F0.5", "hit rate"], rows)
    write_json("long_prompts", results)


def _row(r: dict[str, Any]) -> list[object]:
    return [r["precision"], r["recall"], r["f_beta"], r["hit_rate"]]


if __name__ == "__main__":
    main()
