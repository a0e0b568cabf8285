from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect

from gateway.cli import main
from gateway.store import open_engine
from tests.support.stores import store_url


@pytest.fixture
def env(tmp_path: Path, model_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GATEWAY_STORE_URL", store_url(tmp_path / "gateway.db"))
    monkeypatch.setenv("GATEWAY_STORE_INDEX_DIR", str(tmp_path / "gateway.db.index"))
    monkeypatch.setenv("GATEWAY_EMBEDDING_CACHE_DIR", str(model_cache))
    return tmp_path


def test_demo_stores_then_reuses_the_saved_index(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--pairs", "120"]) == 0
    first = capsys.readouterr().out
    assert "index rebuilt, 0 entries" in first
    assert "stored 120 new entries" in first
    assert "120 queries at threshold 0.85" in first
    assert (env / "gateway.db.index").is_dir()

    assert main(["demo", "--pairs", "120"]) == 0
    second = capsys.readouterr().out
    assert "index loaded, 120 entries" in second
    assert "new entries" not in second
    # The same data, the same answers.
    assert (
        first.splitlines()[-1].split("search p50")[0]
        == second.splitlines()[-1].split("search p50")[0]
    )


def test_migrate(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate"]) == 0
    assert "latest schema" in capsys.readouterr().out
    engine = open_engine(store_url(env / "gateway.db"))
    try:
        assert inspect(engine).has_table("changes")  # the newest migration's table
    finally:
        engine.dispose()


def test_bad_settings_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GATEWAY_EMBEDDING_DEVICE", "tpu")
    assert main(["migrate"]) == 2
    assert "GATEWAY_EMBEDDING_DEVICE" in capsys.readouterr().err


def test_bad_threshold_exit_2(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--threshold", "1.5"]) == 2
    assert "--threshold" in capsys.readouterr().err
