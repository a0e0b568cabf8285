"""Fuzzing the chat route and the two passthrough routes over real HTTP: no input may get a
5xx, and the keep-alive connection must survive every case.

With CI set, the tests run 2,000 generated cases in all; without it 300, to keep the local
loop short. Cases are derandomized (the same every run) and each is checked as it is sent: a
failure is shrunk by hypothesis to a small example. Inputs that once got a 5xx or a reset
run first, every time. `python -m bench.fuzz` runs ten thousand and lists every distinct
failure instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from tests.support.embedders import HashingEmbedder
from tests.support.fuzz_cases import (
    CHAT,
    COMPLETIONS,
    EMBEDDINGS,
    FuzzCase,
    header_cases,
    mutated_cases,
    passthrough_cases,
    raw_cases,
)
from tests.support.fuzzing import FuzzTarget, Probe, serve_gateway

CI = bool(os.environ.get("CI"))
FRESH = (("cache-control", b"no-cache"),)  # a hit would never reach the upstream
SIM = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]'
PROXIED = b'{"model":"upstream-mini","messages":[{"role":"user","content":"hi"}]'

# Inputs that got a 5xx or lost the connection, found by this fuzz (bench/fuzz.py).
RAW_FOUND = (
    FuzzCase(CHAT, b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"\\ud800"}]}'),
    FuzzCase(CHAT, b'{"model":"\xed\xa0\x80","messages":[{"role":"user","content":"hi"}]}'),
    FuzzCase(CHAT, b"[" * 1000 + b"]" * 1000),
    FuzzCase(CHAT, SIM + b',"temperature":1' + b"0" * 399 + b"}"),
    FuzzCase(CHAT, SIM + b',"user":"\\ud800","stream":true}'),
)
MUTATED_FOUND = (
    FuzzCase(
        CHAT,
        b'{"model":"upstream-mini","messages":[{"role":"developer","content":null}]}',
        FRESH,
    ),
    FuzzCase(CHAT, PROXIED + b',"base_url":"http://127.0.0.1:9/v1"}', FRESH),
    FuzzCase(CHAT, PROXIED + b',"timeout":1e-9}', FRESH),
    FuzzCase(CHAT, PROXIED + b',"mock_response":"litellm.InternalServerError"}', FRESH),
    FuzzCase(CHAT, PROXIED + b',"stop":["\\ud800"]}', FRESH),
)
PASSTHROUGH_FOUND = (
    FuzzCase(COMPLETIONS, b'{"model":"upstream-mini","prompt":[null]}'),
    FuzzCase(COMPLETIONS, b'{"model":"upstream-mini","prompt":"hi","api_key":"x"}'),
    FuzzCase(COMPLETIONS, b'{"model":"gpt-4o-mini","prompt":"\\ud800"}'),
    FuzzCase(EMBEDDINGS, b'{"model":"gpt-4o-mini","input":"\\ud800"}'),
)


def examples(in_ci: int) -> int:
    """CI's count, or about a seventh of it locally (300 cases in all)."""
    return in_ci if CI else max(20, in_ci * 3 // 20)


@pytest.fixture(scope="module")
def target(
    tmp_path_factory: pytest.TempPathFactory, fast_embedder: HashingEmbedder
) -> Iterator[FuzzTarget]:
    # What the fuzz checks (statuses, connections) does not depend on meaning.
    with serve_gateway(tmp_path_factory.mktemp("fuzz"), fast_embedder) as served:
        yield served


@pytest.fixture
def probe(target: FuzzTarget) -> Iterator[Probe]:
    with Probe(target) as opened:
        yield opened


def fuzz(
    probe: Probe,
    strategy: st.SearchStrategy[FuzzCase],
    count: int,
    found: Sequence[FuzzCase] = (),
) -> None:
    sent = 0

    def case(fuzz_case: FuzzCase) -> None:
        nonlocal sent
        sent += 1
        result = probe.send(fuzz_case)
        if not result.ok:
            pytest.fail(result.explain(), pytrace=False)

    for known in found:
        case = example(known)(case)
    run = settings(
        max_examples=count,
        deadline=None,
        derandomize=True,
        database=None,
        phases=(Phase.explicit, Phase.generate, Phase.shrink),
        suppress_health_check=(
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ),
    )(given(strategy)(case))
    run()
    assert sent >= count + len(found), f"only {sent} of {count + len(found)} cases ran"


def test_chat_survives_raw_bodies(probe: Probe) -> None:
    fuzz(probe, raw_cases(), examples(500), RAW_FOUND)


def test_chat_survives_mutated_requests(probe: Probe) -> None:
    fuzz(probe, mutated_cases(), examples(900), MUTATED_FOUND)


def test_chat_survives_odd_headers(probe: Probe) -> None:
    fuzz(probe, header_cases(), examples(300))


def test_passthrough_routes_survive(probe: Probe) -> None:
    fuzz(probe, passthrough_cases(), examples(300), PASSTHROUGH_FOUND)
