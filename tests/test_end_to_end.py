"""A real `gateway serve` process on loopback, the official SDK as the client, and a fake
upstream: the path a user takes, including a kill -9 in the middle."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.fake_upstream import FakeUpstream, answer_for, serve_fake_upstream
from tests.support.gateway_process import gateway_env, gateway_process, write_config

openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with serve_fake_upstream() as fake:
        yield fake


def test_sdk_against_a_real_server_survives_kill_9(
    tmp_path: Path, upstream: FakeUpstream, model_cache: Path
) -> None:
    config = write_config(tmp_path, upstream_base_url=upstream.base_url, model_cache=model_cache)
    env = gateway_env()
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
