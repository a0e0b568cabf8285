"""Fuzz the gateway over real HTTP: the chat route and the two passthrough routes, one
keep-alive connection, the strategies of tests/support/fuzzing.py.

Unlike the test, which stops at the first failure, this sends every case and reports the
statuses, the 5xx count, the connections that did not survive, and each distinct failure
(the server's exception and where it was raised) with its smallest example.

    python -m bench.fuzz [--cases 10000] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, seed, settings

from bench.common import add_cache_dir, print_table, write_json
from embeddings.options import EmbedderOptions
from embeddings.runtime import load_embedder
from tests.support.fuzz_cases import FuzzCase, all_cases
from tests.support.fuzzing import Findings, Probe, serve_gateway


def run(findings: Findings, probe: Probe, cases: int, random_seed: int) -> None:
    @seed(random_seed)
    @settings(
        max_examples=cases,
        deadline=None,
        database=None,
        phases=(Phase.generate,),
        suppress_health_check=list(HealthCheck),
    )
    @given(all_cases())
    def send(case: FuzzCase) -> None:
        findings.add(probe.send(case))
        if findings.cases % 1000 == 0:
            print(f"  {findings.cases} cases", file=sys.stderr)

    send()


def _clip(text: str, width: int) -> str:
    """Both ends of a long signature: LiteLLM's messages differ at the end."""
    if len(text) <= width:
        return text
    head = width // 3
    return f"{text[:head]}...{text[len(text) - (width - head - 3) :]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    add_cache_dir(parser)
    args = parser.parse_args()
    embedder = load_embedder(EmbedderOptions(cache_dir=args.cache_dir))
    findings = Findings()
    with (
        tempfile.TemporaryDirectory() as tmp,
        serve_gateway(Path(tmp), embedder) as target,
        Probe(target) as probe,
    ):
        began = time.perf_counter()
        run(findings, probe, args.cases, args.seed)
        elapsed = time.perf_counter() - began

    statuses = sorted(findings.statuses.items())
    print_table(
        ["measure", "value"],
        [
            ["cases", findings.cases],
            *[[f"status {status}", n] for status, n in statuses],
            ["5xx", findings.server_errors],
            ["connection resets", findings.resets],
            ["elapsed s", elapsed],
            ["cases per s", findings.cases / elapsed if elapsed else 0.0],
        ],
    )
    distinct = findings.summary()
    if distinct:
        print(f"\n{len(distinct)} distinct failures (smallest example of each):")
        print_table(
            ["count", "status", "signature"],
            [[d["count"], d["status"], _clip(d["signature"], 110)] for d in distinct],
        )
        for d in distinct:
            print(f"\n[{d['count']}x] {d['signature']}\n  {d['example']}\n  -> {d['response']}")
    for signature, n in findings.logged.most_common():
        print(f"logged by a passing case ({n}x): {signature}")
    write_json(
        "fuzz",
        {
            "cases": findings.cases,
            "seed": args.seed,
            "by_status": dict(statuses),
            "server_errors": findings.server_errors,
            "connection_resets": findings.resets,
            "elapsed_s": elapsed,
            "cases_per_s": findings.cases / elapsed if elapsed else 0.0,
            "failures": distinct,
            "logged_by_passing_cases": dict(findings.logged),
        },
    )


if __name__ == "__main__":
    main()
