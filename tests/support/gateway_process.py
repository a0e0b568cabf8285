"""A real `gateway serve` subprocess on loopback, for the tests that need one (kill -9
included): a config file, a free port, and a context manager that always stops it."""

from __future__ import annotations

import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support.stores import store_url

STARTUP_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(
    directory: Path,
    *,
    upstream_base_url: str,
    model_cache: Path,
    extra: str = "",
    embedding: str = "",
    store: str | None = None,
) -> Path:
    """A config with a store for `directory` (or the store URL `store`, shared), the bundled
    embedder cached in `model_cache`, and one model, gpt-4o-mini, answered by the fake
    upstream."""
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "gateway.toml"
    config.write_text(f"""
[store]
url = "{store or store_url(directory / "gateway.db")}"
index_dir = "{directory / "gateway.db.index"}"

[embedding]
cache_dir = "{model_cache}"
{embedding}

[[models]]
name = "gpt-4o-mini"
litellm_model = "openai/gpt-4o-mini"
api_base = "{upstream_base_url}"
api_key_env = "E2E_UPSTREAM_KEY"
{extra}
""")
    return config


def gateway_env() -> dict[str, str]:
    """The environment `write_config`'s gateway expects: the upstream key and a tenant salt."""
    return {**os.environ, "E2E_UPSTREAM_KEY": "sk-e2e", "GATEWAY_TENANT_SALT": "e2e-salt"}


def _wait_ready(
    process: subprocess.Popen[str], port: int, lines: queue.Queue[str], workers: int = 1
) -> None:
    """Until uvicorn says the lifespan finished (in every worker) and /readyz answers 200;
    fails fast with the gateway's stderr when it exits or takes longer than
    STARTUP_TIMEOUT_S."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    seen: list[str] = []
    started = 0
    while started < workers:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError("the gateway did not start: " + "".join(seen)) from None
        seen.append(line)
        started += "Application startup complete" in line
        if line == "":
            raise AssertionError("the gateway exited: " + "".join(seen))
    # uvicorn logs the lifespan's end before it binds the port: poll until it answers.
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5.0) as client:
        while not _ready(client):
            if time.monotonic() > deadline or process.poll() is not None:
                raise AssertionError("the gateway never became ready: " + "".join(seen))
            time.sleep(0.05)  # the poll interval of a bounded wait on the condition above


def _ready(client: httpx.Client) -> bool:
    try:
        return client.get("/readyz").status_code == 200
    except httpx.TransportError:
        return False


@contextmanager
def gateway_process(
    config: Path, env: dict[str, str], *, log: list[str] | None = None, workers: int = 1
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`gateway serve --config CONFIG [--workers N]` on a free loopback port, ready; yields
    the process and its /v1 base URL, and stops it on the way out (if the test has not
    killed it). Its stderr lines are appended to `log` when one is given."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "serve",
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *(["--workers", str(workers)] if workers > 1 else []),
        ],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            if log is not None:
                log.append(line)
            lines.put(line)
        lines.put("")

    threading.Thread(target=pump, daemon=True).start()
    try:
        _wait_ready(process, port, lines, workers)
        yield process, f"http://127.0.0.1:{port}/v1"
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)
