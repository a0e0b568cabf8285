"""Activating another similarity model while serving: nothing fails, nothing is compared
across versions, the choice survives a restart, and a bad model is refused."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from embeddings.runtime import OnnxEmbedder
from tests.gateway.conftest import ADMIN, AppFactory, chat, stored_entries

QUESTIONS = [
    "How do I turn on dark mode?",
    "What is the capital of Australia?",
    "How many legs does a spider have?",
    "Who painted the Mona Lisa?",
    "What is the boiling point of water at sea level?",
    "How do I make a cup of green tea?",
    "What causes the seasons on Earth?",
    "How far is the Moon from the Earth?",
]


def _wait_for(condition: Callable[[], bool], limit_s: float = 60) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, "the load generator stalled"
        time.sleep(0.01)


def _wait_done(client: TestClient, limit_s: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        view: dict[str, Any] = client.get("/admin/model", headers=ADMIN).json()
        if view["change"] and view["change"]["state"] in ("done", "failed"):
            return view
        time.sleep(0.05)
    raise AssertionError("the model change did not finish")


def test_a_model_is_activated_under_load_without_a_failed_request(
    make_app: AppFactory, model_cache: Path, trained_embedder: OnnxEmbedder, tmp_path: Path
) -> None:
    db = tmp_path / "change.db"
    # fp32, as the model fixtures the served ids are compared with
    embedding = {"model": "base", "cache_dir": str(model_cache), "int8": False}
    sections: dict[str, Any] = {"embedding": embedding}
    with make_app(db=db, **sections) as client:
        for question in QUESTIONS:
            assert client.post("/v1/chat/completions", json=chat(question)).status_code == 200
        before = client.get("/admin/model", headers=ADMIN).json()
        assert before["model"] == "base" and "+" not in before["model_id"]

        statuses: list[int] = []
        stop = threading.Event()

        ends = time.monotonic() + 300  # bounded in time: it outlasts the change

        def load(worker: int) -> None:
            n = 0
            while not stop.is_set() and time.monotonic() < ends:
                text = QUESTIONS[n % len(QUESTIONS)] if n % 3 else f"New question {worker}-{n}?"
                statuses.append(client.post("/v1/chat/completions", json=chat(text)).status_code)
                n += 1
                time.sleep(0.02)  # paced: steady traffic, not a saturated loop

        workers = [threading.Thread(target=load, args=(w,)) for w in range(4)]
        for worker in workers:
            worker.start()
        try:
            _wait_for(lambda: len(statuses) >= 8)  # load is running when the change starts
            started = client.post("/admin/model", json={"model": "trained"}, headers=ADMIN)
            assert started.status_code == 202, started.text
            view = _wait_done(client)
            during = len(statuses)
            _wait_for(lambda: len(statuses) >= during + 8)  # and goes on on the new model
        finally:
            stop.set()
            for worker in workers:
                worker.join()
        assert view["change"]["state"] == "done", view
        assert view["model"] == "trained" and view["model_id"] == trained_embedder.model_id
        assert statuses and set(statuses) == {200}, sorted(set(statuses))
        entries = stored_entries(client)
        assert {e["embedding_model"] for e in entries} == {trained_embedder.model_id}
        # exact repeats still hit, and the trained model now tells on from off
        assert (
            client.post("/v1/chat/completions", json=chat(QUESTIONS[1])).headers["x-cache"] == "hit"
        )
        off = client.post("/v1/chat/completions", json=chat("How do I turn off dark mode?"))
        assert off.headers["x-cache"] == "miss"

    with make_app(db=db, own_model=True, **sections) as client:  # a restart keeps it
        view = client.get("/admin/model", headers=ADMIN).json()
        assert view["model"] == "trained" and view["model_id"] == trained_embedder.model_id
        assert (
            client.post("/v1/chat/completions", json=chat(QUESTIONS[2])).headers["x-cache"] == "hit"
        )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model": "/nowhere/at/all"}, "not a model directory"),
        ({"model": ""}, "model must be"),
        ({"model": 7}, "model"),
        ({"model": "trained", "extra": 1}, "unknown field"),
    ],
)
def test_a_bad_model_is_refused_and_the_old_one_serves(
    make_fast_app: AppFactory, body: dict[str, Any], message: str
) -> None:
    with make_fast_app() as client:
        before = client.get("/admin/model", headers=ADMIN).json()
        refused = client.post("/admin/model", json=body, headers=ADMIN)
        assert refused.status_code == 400 and message in refused.json()["error"]["message"]
        assert client.get("/admin/model", headers=ADMIN).json() == before
        assert client.post("/v1/chat/completions", json=chat("Hello")).status_code == 200
