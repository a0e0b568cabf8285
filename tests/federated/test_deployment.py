"""The recipe of the README's "Federated across machines": Flower's deployment engine on
loopback, a SuperLink and two SuperNodes (each naming its own pairs file), `flwr run` with
the app in `federated/deployment/`. Every process started is stopped."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from importlib import resources
from pathlib import Path

import pytest

from embeddings.card import load_card
from embeddings.model import bundled_minilm
from federated.pairs import read_pairs, split, write_pairs

pytestmark = pytest.mark.model  # the clients and the server load the real model's weights

APP = Path(__file__).resolve().parents[2] / "federated" / "deployment"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, limit_s: float = 180) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"nothing listens on {port}")


@contextmanager
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for process in started:  # each in its own session: its SuperExec children too
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in started:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def test_two_supernodes_train_through_a_superlink(tmp_path: Path) -> None:
    sample = resources.files("gateway").joinpath("data/qqp_sample.jsonl").read_text("utf-8")
    (tmp_path / "all.jsonl").write_text("\n".join(sample.split("\n")[:800]) + "\n")
    parts = split(read_pairs(tmp_path / "all.jsonl").pairs)
    write_pairs(tmp_path / "tenant-a.jsonl", parts.train[:40])
    write_pairs(tmp_path / "tenant-b.jsonl", parts.train[40:80])
    write_pairs(tmp_path / "validation.jsonl", parts.validation[:60])
    link = free_port()
    home = tmp_path / "flwr-home"
    home.mkdir()
    (home / "config.toml").write_text(
        '[superlink]\ndefault = "local-deployment"\n\n'
        f'[superlink.local-deployment]\naddress = "127.0.0.1:{link}"\ninsecure = true\n'
    )
    env = {
        **os.environ,
        "FLWR_HOME": str(home),
        # the SuperLink starts `flower-superexec` by name: from this environment
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
        "HF_HUB_OFFLINE": "1",
    }
    logs = tmp_path / "logs"
    logs.mkdir()

    def start(name: str, *args: str) -> subprocess.Popen[bytes]:
        with (logs / f"{name}.log").open("wb") as log:
            return subprocess.Popen(
                [str(BIN / args[0]), *args[1:]],
                env=env,
                cwd=tmp_path,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    with processes() as started:
        started.append(start("superlink", "flower-superlink", "--insecure", "--port", str(link)))
        wait_for_port(link)
        for tenant in ("a", "b"):
            node = free_port()
            started.append(
                start(
                    f"supernode-{tenant}",
                    "flower-supernode",
                    "--insecure",
                    "--superlink",
                    f"127.0.0.1:{link}",
                    "--port",
                    str(node),
                    "--node-config",
                    f"pairs-file='{tmp_path / f'tenant-{tenant}.jsonl'}'",
                )
            )
        run_config = (
            f"validation-file='{tmp_path / 'validation.jsonl'}' "
            f"result-file='{tmp_path / 'result.npz'}' out-dir='{tmp_path / 'models'}' "
            "name='tenants' version='v1' rounds=1"
        )
        run = subprocess.run(
            [str(BIN / "flwr"), "run", str(APP), "local-deployment", "--stream",
             "--run-config", run_config],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=400,
        )  # fmt: skip
        output = run.stdout + run.stderr
        assert run.returncode == 0, output
        assert "Received 2 results and 0 failures" in output, output
        directory = tmp_path / "models" / "tenants-v1"
        deadline = time.monotonic() + 60  # the ServerApp writes it as it finishes
        while not (directory / "card.json").exists() and time.monotonic() < deadline:
            time.sleep(0.5)
    load_card(directory, base_sha256=bundled_minilm().sha256, dim=384)
    card = json.loads((directory / "card.json").read_text())
    assert card["training"]["engine"] == "deployment"
    assert [r["round"] for r in card["training"]["rounds"]] == [0, 1]
    assert card["data"]["train_pairs"] == 0  # the clients' pairs never left them
