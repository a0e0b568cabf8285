"""Builds the bundled `gateway replay` demos in gateway/data/replay/ (deterministic).

- qqp_demo.jsonl: 3,000 real questions from 1,500 pairs of the bundled QQP sample
  (gateway/data/qqp_sample.jsonl); each pair's first question is asked before its second,
  which is labelled `duplicate_of` the first when the pair is a duplicate.
- multiturn_demo.jsonl: 60 two-turn conversations of MeanCache's contextual queries
  (../shared/data/contextual/contextual_queries.json, MIT): each asked once, then again
  (labelled duplicates), and each follow-up also asked under another conversation's first
  turn (labelled new: the same words, another question).

    python -m bench.replay_demos
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from bench.common import REPO, shared_data

OUT = REPO / "gateway" / "data" / "replay"


def _chat(ident: str, messages: list[dict[str, str]], duplicate_of: str | None) -> dict[str, Any]:
    return {"id": ident, "model": "gpt-4o-mini", "messages": messages, "duplicate_of": duplicate_of}


def qqp(pairs: int = 1500, seed: int = 11) -> list[dict[str, Any]]:
    lines = (REPO / "gateway" / "data" / "qqp_sample.jsonl").read_text().split("\n")
    rows = [json.loads(line) for line in lines if line.strip()][:pairs]
    rng = np.random.default_rng(seed)
    keyed = []
    for n, row in enumerate(rows):
        first = float(rng.random())
        second = first + float(rng.random()) * (1 - first)
        a = _chat(f"q{n}a", [{"role": "user", "content": row["a"]}], None)
        b = _chat(
            f"q{n}b", [{"role": "user", "content": row["b"]}], f"q{n}a" if row["label"] else None
        )
        keyed += [(first, a), (second, b)]
    return [line for _, line in sorted(keyed, key=lambda item: item[0])]


def multiturn(count: int = 60) -> list[dict[str, Any]]:
    items = json.loads((shared_data() / "contextual" / "contextual_queries.json").read_text())[
        :count
    ]

    def turns(item: dict[str, str], follow_up: str) -> list[dict[str, str]]:
        return [
            {"role": "user", "content": item["Main Query"]},
            {"role": "assistant", "content": item["Main Query Response"]},
            {"role": "user", "content": follow_up},
        ]

    first, again, crossed = [], [], []
    for i, item in enumerate(items):
        first.append(_chat(f"m{i}", [{"role": "user", "content": item["Main Query"]}], None))
        first.append(_chat(f"f{i}", turns(item, item["Follow-Up Query"]), None))
        again.append(_chat(f"m{i}r", [{"role": "user", "content": item["Main Query"]}], f"m{i}"))
        again.append(_chat(f"f{i}r", turns(item, item["Follow-Up Query"]), f"f{i}"))
        other = items[(i + 1) % len(items)]
        crossed.append(_chat(f"x{i}", turns(other, item["Follow-Up Query"]), None))
    return first + again + crossed


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, lines in (("qqp_demo.jsonl", qqp()), ("multiturn_demo.jsonl", multiturn())):
        path = OUT / name
        path.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))
        print(f"wrote {path}: {len(lines)} requests")


if __name__ == "__main__":
    main()
