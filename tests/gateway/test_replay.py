from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import main
from gateway.replay.workload import UNLABELLED, WorkloadError, load
from gateway.store import open_store
from tests.support.fake_upstream import FakeUpstream
from tests.support.stores import store_url

KEYS = (
    "requests", "hits", "hit_rate", "tokens_saved", "cost_saved_usd", "false_hits",
    "precision", "recall", "by_category", "latency_ms",
)  # fmt: skip
TIMING = ("latency_ms", "duration_s")


@pytest.fixture
def env(tmp_path: Path, model_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GATEWAY_EMBEDDING_CACHE_DIR", str(model_cache))
    return tmp_path


def write(path: Path, rows: list[Any]) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def chat(ident: str, text: str, duplicate_of: object = None, **extra: Any) -> dict[str, Any]:
    row = {"id": ident, "messages": [{"role": "user", "content": text}], **extra}
    if duplicate_of is not UNLABELLED:
        row["duplicate_of"] = duplicate_of
    return row


def replay(*args: str) -> tuple[int, dict[str, Any]]:
    out = Path(args[-1])
    code = main(["replay", *args[:-1], "--json", str(out)])
    return code, json.loads(out.read_text()) if out.exists() else {}


def test_chat_workload_with_labels_and_malformed_lines(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        env / "work.jsonl",
        [
            chat("q1", "How do I reverse a list in Python?"),
            "not json at all",
            chat("q2", "how can I reverse a list in python", "q1", tenant="team-a"),
            chat("q3", "how can I reverse a list in python", "q1"),
            {"messages": []},
            chat("q4", "What is the capital of Peru?", "nope"),  # an unknown earlier id
            chat("q5", "What is the capital of Peru?"),
            {"a": "x", "b": "y", "label": 1},  # a pair in a chat workload
        ],
    )
    code, figures = replay(str(path), str(env / "out.json"))
    assert code == 0
    err = capsys.readouterr().err
    for line in (2, 5, 6, 8):
        assert f"line {line}:" in err
    assert [m["line"] for m in figures["workload"]["malformed"]] == [2, 5, 6, 8]
    assert figures["requests"] == 4 and figures["workload"]["format"] == "chat"
    # q2 is another tenant: a miss; q3 (the anonymous tenant, like q1) is served q1's answer.
    assert (figures["hits"], figures["hits_semantic"], figures["misses"]) == (1, 1, 3)
    assert figures["false_hits"] == 0 and figures["precision"] == 1.0
    assert figures["recall"] == 0.5  # two lines were asked before, one was served right
    for key in KEYS:
        assert key in figures, key
    assert figures["cache_size"] == 3
    assert figures["cost_saved_usd"] > 0 and figures["tokens_saved"] > 0
    assert figures["routing"] is None  # no route named
    assert main(["replay", str(path), "--strict"]) == 2
    assert "work.jsonl:2" in capsys.readouterr().err


def test_labels_count_false_hits(env: Path) -> None:
    config = env / "gateway.toml"
    config.write_text(
        f'[store]\nurl = "{store_url(env / "cfg.db")}"\n'
        "[categories.code]\nthreshold = 0.6\nthreshold_floor = 0.6\n"
    )
    path = write(
        env / "work.jsonl",
        [
            chat("q1", "How do I reverse a list in Python?"),
            chat("q2", "How do I reverse a string in Python?", None),  # not the same question
            chat("q3", "how can I reverse a list in python", "q1"),
        ],
    )
    code, figures = replay(str(path), "--config", str(config), str(env / "out.json"))
    assert code == 0
    assert figures["hits"] == 2 and figures["false_hits"] == 1
    assert figures["precision"] == 0.5 and figures["recall"] == 1.0
    configured = open_store(store_url(env / "cfg.db"))  # --config names the store
    assert configured.count_entries() == 1  # q1; q2 and q3 were served it
    configured.engine.dispose()


def test_pairs_workload_is_detected(env: Path) -> None:
    rows = [
        {"a": "How do I learn to cook?", "b": "What is the best way to learn cooking?", "label": 1},
        {"a": "What is the capital of Chile?", "b": "What is the capital of Peru?", "label": 0},
        {"a": "How tall is Mount Everest?", "b": 7, "label": 1},
    ]
    path = write(env / "pairs.jsonl", rows)
    workload = load(str(path), model="gpt-4o-mini")
    assert workload.format == "pairs" and workload.labelled
    assert [r.id for r in workload.requests] == ["a1", "a2", "b1", "b2"]
    assert workload.requests[2].duplicate_of == "a1" and workload.requests[3].duplicate_of is None
    assert workload.malformed and workload.malformed[0][0] == 3
    code, figures = replay(str(path), str(env / "out.json"))
    assert code == 0 and figures["workload"]["format"] == "pairs" and figures["requests"] == 4


def test_workload_errors(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(WorkloadError, match="bundled demo"):
        load("no-such-workload", model="m")
    empty = write(env / "empty.jsonl", ["", "{}"])
    with pytest.raises(WorkloadError, match="no valid lines"):
        load(str(empty), model="m")
    assert main(["replay", str(empty)]) == 2
    assert len(load(None, model="m").requests) == 3000  # the bundled QQP demo
    assert len(load("multiturn", model="m").requests) == 300


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.svgs: list[str] = []
        self.links: list[str] = []
        self.data = ""
        self._in_data = False
        self.thresholds: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "svg":
            self.svgs.append(found.get("id") or "")
        if tag == "circle" and found.get("data-threshold"):
            self.thresholds.append(found["data-threshold"] or "")
        self.links += [v or "" for k, v in attrs if k in ("src", "href")]
        self._in_data = tag == "script" and found.get("id") == "replay-data"

    def handle_data(self, data: str) -> None:
        if self._in_data:
            self.data += data

    def handle_endtag(self, tag: str) -> None:
        self._in_data = False


def test_demo_twice_same_figures_json_schema_and_html(env: Path) -> None:
    first_html = env / "first.html"
    code, first = replay(
        "multiturn", "--threshold-sweep", "--html", str(first_html), str(env / "1.json")
    )
    assert code == 0
    code, second = replay("multiturn", str(env / "2.json"))
    assert code == 0

    def stable(figures: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in figures.items() if k not in (*TIMING, "threshold_sweep")}
        out["by_category"] = {
            k: {m: n for m, n in v.items() if m != "break_even_hit_rate"}
            for k, v in figures["by_category"].items()
        }
        return out

    assert stable(first) == stable(second)
    # Every repeated conversation hits; no follow-up is served under another first turn.
    assert first["hits"] == 120 and first["false_hits"] == 0 and first["recall"] == 1.0
    assert first["schema"] == "gateway.replay/1"
    assert len(first["threshold_sweep"]) == 10
    assert set(first["latency_ms"]) == {"gateway_added", "hit", "miss_added", "upstream"}
    assert first["latency_ms"]["upstream"]["p50"] > first["latency_ms"]["hit"]["p50"]
    parsed = _Page()
    parsed.feed(first_html.read_text())
    assert json.loads(parsed.data) == first
    assert {"chart-savings", "chart-categories", "chart-similarity", "chart-sweep"} <= set(
        parsed.svgs
    )
    assert len(parsed.thresholds) == 10  # a point per swept threshold
    assert not [link for link in parsed.links if "://" in link]  # nothing from the network
    savings = first["series"]["cumulative_saved_usd"]
    assert len(savings) == 300 and savings[-1] == pytest.approx(first["cost_saved_usd"], abs=1e-6)


def test_live_upstream_needs_confirmation(
    env: Path, fake_upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_upstream.calls.clear()
    monkeypatch.setenv("FAKE_UPSTREAM_KEY", "sk-upstream")
    config = env / "live.toml"
    config.write_text(
        f'[store]\nurl = "{store_url(env / "live.db")}"\n'
        '[[models]]\nname = "gpt-4o-mini"\nlitellm_model = "openai/gpt-4o-mini"\n'
        f'api_base = "{fake_upstream.base_url}"\napi_key_env = "FAKE_UPSTREAM_KEY"\n'
    )
    path = write(
        env / "work.jsonl",
        [chat("q1", "What is a live upstream?"), chat("q2", "What is a live upstream?", "q1")],
    )
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    refused = main(["replay", str(path), "--config", str(config), "--upstream", "live"])
    assert refused == 1 and fake_upstream.calls == []
    code, figures = replay(
        str(path), "--config", str(config), "--upstream", "live", "--yes", str(env / "o.json")
    )
    assert code == 0 and len(fake_upstream.calls) == 1
    assert figures["upstream"] == "live" and figures["hits_exact"] == 1
    no_models = env / "none.toml"
    no_models.write_text("")
    assert main(["replay", str(path), "--config", str(no_models), "--upstream", "live"]) == 2


def test_route_small_shows_what_routing_misses_saves(env: Path) -> None:
    path = write(
        env / "work.jsonl",
        [
            chat("q1", "How do I reverse a list in Python?"),
            chat("q2", "What is the capital of Peru?"),
            chat("q3", "How do I reverse a list in Python?", "q1"),
        ],
    )
    args = ["--model", "gpt-4o", "--route-small", "gpt-4o-mini"]
    code, plain = replay(str(path), *args, str(env / "plain.json"))
    assert code == 0
    routing = plain["routing"]
    assert routing["misses"] == plain["misses"] == 2
    assert routing["routed_small"] + routing["routed_large"] == 2
    assert routing["cost_all_large_usd"] >= routing["cost_usd"]

    config = env / "gateway.toml"
    names = ("code", "math", "creative", "time_sensitive", "sensitive", "conversation",
             "factual", "default")  # fmt: skip
    config.write_text(
        f'[store]\nurl = "{store_url(env / "small.db")}"\n'
        + "".join(f'[categories.{n}]\nroute = "small"\n' for n in names)
    )
    code, small = replay(str(path), *args, "--config", str(config), str(env / "small.json"))
    assert code == 0
    routing = small["routing"]
    assert (routing["routed_small"], routing["offloaded_share"]) == (2, 1.0)
    assert routing["routing_saved_usd"] > 0
    assert routing["cost_all_large_usd"] == pytest.approx(
        routing["cost_usd"] + routing["routing_saved_usd"], abs=1e-6
    )


def test_a_concurrent_replay_keeps_workload_order_and_serves_repeats(tmp_path: Path) -> None:
    from gateway.replay.report import verdicts
    from gateway.replay.run import replay_settings, run
    from tests.support.embedders import HashingEmbedder

    questions = [f"what is the population of city number {i} in the north" for i in range(12)]
    rows = [chat(f"q{i}", text) for i, text in enumerate(questions)]
    rows += [chat(f"r{i}", text, f"q{i}") for i, text in enumerate(questions)]
    workload = load(str(write(tmp_path / "work.jsonl", rows)), model="gpt-4o-mini")
    with replay_settings(None, {"gpt-4o-mini"}, "gpt-4o-mini", False) as settings:
        done: list[int] = []
        results, size = run(
            workload, settings, live=False, concurrency=4, embedder=HashingEmbedder(),
            progress=done.append,
        )  # fmt: skip
    assert [r.request.id for r in results] == [r.id for r in workload.requests]
    assert all(r.status == 200 for r in results) and sorted(done) == list(range(1, 25))
    assert [r.outcome for r in results[:12]] == ["miss"] * 12 and size == 12
    # a repeat is sent after its question: served from the cache (by the semantic tier when
    # its question was stored between the two lookups), shared while in flight, or asked
    # again (its question finished between lookup and coalescing); never answered wrongly
    repeats = results[12:]
    assert {r.outcome for r in repeats} <= {"hit_exact", "hit_semantic", "hit_coalesced", "miss"}
    assert any(r.outcome.startswith("hit") for r in repeats)
    assert False not in verdicts(workload, results)


def test_concurrency_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "--concurrency", "0"]) == 2
    assert "--concurrency must be at least 1" in capsys.readouterr().err


def test_creative_repeats_are_served_and_bypasses_are_explained_per_category(env: Path) -> None:
    poem = "Write a poem about the first snow of winter"
    path = write(
        env / "work.jsonl",
        [
            chat("c1", poem),
            chat("c2", poem),  # a repeat: served from the cache
            chat("c3", poem, temperature=1.6),  # above creative's max_temperature
            chat("c4", "What is the capital of Peru?", temperature=1.9),
            chat("c5", "What is the capital of Peru?", stream=False, n=2),
        ],
    )
    code, figures = replay(str(path), str(env / "out.json"))
    assert code == 0
    creative = figures["by_category"]["creative"]
    assert (creative["requests"], creative["hits_exact"], creative["bypasses"]) == (3, 1, 1)
    assert creative["bypass_reasons"] == {"temperature_above_limit": 1}
    reasons: dict[str, int] = {}
    for tally in figures["by_category"].values():
        for reason, count in tally["bypass_reasons"].items():
            reasons[reason] = reasons.get(reason, 0) + count
    assert reasons == {"temperature_above_limit": 2, "n_above_1": 1}
