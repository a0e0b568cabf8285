"""`gateway activate-model` against a real `gateway serve` on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from embeddings.runtime import OnnxEmbedder
from gateway.cli import main
from tests.support.fake_upstream import FakeUpstream, serve_fake_upstream
from tests.support.gateway_process import gateway_env, gateway_process, write_config

TOKEN = "cli-admin-token"


@pytest.fixture(scope="module")
def fake_upstream() -> Iterator[FakeUpstream]:
    with serve_fake_upstream() as fake:
        yield fake


def test_activate_model_switches_a_running_gateway(
    tmp_path: Path,
    fake_upstream: FakeUpstream,
    model_cache: Path,
    trained_embedder: OnnxEmbedder,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = write_config(
        tmp_path,
        upstream_base_url=fake_upstream.base_url,
        model_cache=model_cache,
        embedding='model = "base"\nint8 = false',  # fp32, as the fixture compared with
    )
    env = {**gateway_env(), "GATEWAY_ADMIN_TOKEN": TOKEN}
    monkeypatch.setenv("GATEWAY_ADMIN_TOKEN", TOKEN)
    with gateway_process(config, env) as (_process, v1):
        base_url = v1.removesuffix("/v1")
        admin = {"authorization": f"Bearer {TOKEN}"}
        assert httpx.get(f"{base_url}/admin/model", headers=admin).json()["model"] == "base"
        assert main(["activate-model", str(tmp_path / "no-model"), "--url", base_url]) == 2
        assert "not a model directory" in capsys.readouterr().err
        assert main(["activate-model", "trained", "--url", base_url]) == 0
        assert trained_embedder.model_id in capsys.readouterr().out
        view = httpx.get(f"{base_url}/admin/model", headers=admin).json()
        assert view["model"] == "trained" and view["change"]["state"] == "done"
