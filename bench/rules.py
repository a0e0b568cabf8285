"""How long the shipped category rules take on adversarial prompts: the backtracking engine
on the whole text (how rules ran before) against RE2 on the bounded prefix (how they run).

    python -m bench.rules [--sizes 4096,8192,16384] [--megabytes 1]
"""

from __future__ import annotations

import argparse
import re
import time

from bench.common import print_table, write_json
from categories.policy import load_policies
from categories.rules import Rule

ADVERSARIAL = {"python": "python ", "select": "select ", "write": "please write "}


def _seconds(search: list[object], text: str) -> float:
    began = time.perf_counter()
    for rule in search:
        rule.search(text)  # type: ignore[attr-defined]
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="4096,8192,16384", help="backtracking sizes (chars)")
    parser.add_argument("--megabytes", type=float, default=1.0, help="RE2 input size")
    args = parser.parse_args()
    patterns = [rule for policy in load_policies().policies for rule in policy.rules]
    backtracking: list[object] = [re.compile(p, re.IGNORECASE) for p in patterns]
    linear: list[object] = [Rule(p) for p in patterns]
    rows: list[list[object]] = []
    for name, word in ADVERSARIAL.items():
        for size in (int(s) for s in args.sizes.split(",")):
            text = word * (size // len(word))
            rows.append([name, "re, whole text", len(text), _seconds(backtracking, text) * 1000])
        text = word * int(args.megabytes * (1 << 20) / len(word))
        rows.append([name, "RE2, prefix", len(text), _seconds(linear, text) * 1000])
    headers = ["input", "engine", "chars", "all rules (ms)"]
    print_table(headers, rows)
    write_json("rules", {"rows": [dict(zip(headers, row, strict=True)) for row in rows]})


if __name__ == "__main__":
    main()
