"""A real `gateway serve` process on loopback, the official SDK as the client, and a fake
upstream: the path a user takes, including a kill -9 in the middle."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.fake_upstream import FakeUpstream, answer_for, serve_fake_upstream

openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with serve_fake_upstream() as fake:
        yield fake


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def gateway_process(
    config: Path, env: dict[str, str]
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "serve",
            "--config",
            str(config),
            "--port",
            str(port),
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
            lines.put(line)
        lines.put("")

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    while True:
        try:
            line = lines.get(timeout=120)
        except queue.Empty:
            process.kill()
            raise AssertionError("the gateway did not start: " + "".join(seen)) from None
        seen.append(line)
        if "Application startup complete" in line:
            break
        if line == "":
            raise AssertionError("the gateway exited: " + "".join(seen))
    try:
        yield process, f"http://127.0.0.1:{port}/v1"
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=30)


def test_sdk_against_a_real_server_survives_kill_9(
    tmp_path: Path, upstream: FakeUpstream, model_cache: Path
) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(f"""
[store]
url = "sqlite:///{tmp_path / "gateway.db"}"

[embedding]
cache_dir = "{model_cache}"

[[models]]
name = "gpt-4o-mini"
litellm_model = "openai/gpt-4o-mini"
api_base = "{upstream.base_url}"
api_key_env = "E2E_UPSTREAM_KEY"
""")
    env = {**os.environ, "E2E_UPSTREAM_KEY": "sk-e2e", "GATEWAY_TENANT_SALT": "e2e-salt"}
    question = "What is the difference between a process and a thread?"
    with gateway_process(config, env) as (process, base_url):
        client = openai.OpenAI(base_url=base_url, api_key="sk-team-a", max_retries=0)
        first = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": question}]
        )
        assert first.headers["x-cache"] == "miss"
        assert first.parse().choices[0].message.content == answer_for(question)

        paraphrase = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini",
            messages=[
                {"role": "user", "content": "what's the difference between a thread and a process"}
            ],
        )
        assert paraphrase.headers["x-cache"] == "hit"

        stream = client.chat.completions.create(
            model="gpt-4o-mini", stream=True, messages=[{"role": "user", "content": question}]
        )
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == answer_for(
            question
        )

        other_tenant = openai.OpenAI(base_url=base_url, api_key="sk-team-b", max_retries=0)
        isolated = other_tenant.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": question}]
        )
        assert isolated.headers["x-cache"] == "miss"

        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(
                model="no-such-model", messages=[{"role": "user", "content": "hi"}]
            )
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    calls = len(upstream.calls)
    with gateway_process(config, env) as (_process, base_url):
        client = openai.OpenAI(base_url=base_url, api_key="sk-team-a", max_retries=0)
        after = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": question}]
        )
        assert after.headers["x-cache"] == "hit"
        assert after.parse().choices[0].message.content == answer_for(question)
    assert len(upstream.calls) == calls
