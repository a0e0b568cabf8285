"""kill -9 under concurrent load, again and again: every answer the gateway acknowledged is
served from the cache after a restart, and the SQLite file is intact.

An answer is acknowledged when the client has all of it: a JSON miss (status 200,
`x-cache: miss`) read to the end, or a streamed miss whose `data: [DONE]` arrived. Each life
of the server ends with SIGKILL at a moment drawn from a seeded random generator: right
after the k-th streamed acknowledgement, right after the k-th JSON one (the worst moments
for durability), or as the k-th request goes out (anywhere in a request's life).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import httpx
import pytest
from sqlalchemy import func, select

from gateway.cache.keys import normalise
from gateway.store import RequestEvent, open_store
from tests.support.fake_upstream import FakeUpstream, serve_fake_upstream
from tests.support.gateway_process import gateway_env, gateway_process, write_config
from tests.support.stores import on_postgres, store_url

SEED = 20240611
KILLS = 6
CLIENTS = 8
REQUESTS_PER_CLIENT = 80  # per life: bounds each client's loop
WAIT_S = 60.0  # for a kill's trigger, for the clients to wind down
MODEL = "gpt-4o-mini"
HEADERS = {"authorization": "Bearer sk-crash-test"}
Kind = Literal["json", "stream"]
Moment = Literal["stream ack", "json ack", "request sent"]
MOMENTS: tuple[Moment, ...] = ("stream ack", "json ack", "request sent")

# Under eight clients a 2-core machine can take longer than the default 250 ms to embed;
# such a lookup fails open to a bypass, which is neither stored nor acknowledged.
CONFIG = """
[cache]
lookup_deadline_ms = 10000
"""


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with serve_fake_upstream() as fake:
        yield fake


@dataclass(frozen=True)
class Ack:
    prompt: str
    kind: Kind
    content: str
    life: int


@dataclass(frozen=True)
class Reply:
    status: int
    cache: str  # the x-cache header
    content: str | None  # None unless the answer arrived whole


def chat_body(prompt: str, *, stream: bool) -> dict[str, object]:
    return {"model": MODEL, "stream": stream, "messages": [{"role": "user", "content": prompt}]}


def ask_json(client: httpx.Client, prompt: str) -> Reply:
    response = client.post("/chat/completions", json=chat_body(prompt, stream=False))
    cache = response.headers.get("x-cache", "")
    if response.status_code != 200:
        return Reply(response.status_code, cache, None)
    return Reply(200, cache, str(response.json()["choices"][0]["message"]["content"]))


def ask_stream(client: httpx.Client, prompt: str, report: Callable[[Reply], None]) -> None:
    """Reports the reply as soon as `data: [DONE]` arrives, then reads the rest of the body
    as an SDK does; the kill may cut that rest off without undoing the acknowledgement."""
    with client.stream("POST", "/chat/completions", json=chat_body(prompt, stream=True)) as r:
        cache = r.headers.get("x-cache", "")
        if r.status_code != 200:
            r.read()
            return report(Reply(r.status_code, cache, None))
        parts: list[str] = []
        lines = r.iter_lines()
        for line in lines:
            data = line.removeprefix("data: ")
            if data == line:
                continue
            if data == "[DONE]":
                report(Reply(200, cache, "".join(parts)))
                with contextlib.suppress(httpx.TransportError):
                    for _rest in lines:
                        pass
                return None
            chunk = json.loads(data)
            if "error" in chunk:
                return report(Reply(200, cache, None))
            for choice in chunk.get("choices") or []:
                parts.append((choice.get("delta") or {}).get("content") or "")
        return report(Reply(200, cache, None))


class Feed:
    """Distinct prompts, each handed out once; odd positions are streamed."""

    def __init__(self, prompts: list[str]) -> None:
        self._items = iter(enumerate(prompts))
        self._lock = threading.Lock()

    def next(self) -> tuple[str, Kind] | None:
        with self._lock:
            item = next(self._items, None)
        if item is None:
            return None
        position, prompt = item
        return prompt, "stream" if position % 2 else "json"


class Load:
    """CLIENTS threads asking the server for prompts from `feed` until it dies or they are
    told to stop; what they saw is counted under one condition, for the kill to wait on."""

    def __init__(self, base_url: str, feed: Feed, life: int) -> None:
        self.base_url = base_url
        self.feed = feed
        self.life = life
        self.acks: list[Ack] = []
        self.seen: Counter[str] = Counter()  # acknowledgements, requests and what else happened
        self.changed = threading.Condition()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._client) for _ in range(CLIENTS)]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=WAIT_S)
        if exc_type is None:
            assert not any(t.is_alive() for t in self.threads), "a client did not wind down"

    def wait_for(self, moment: Moment, count: int) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: self.seen[moment] >= count, timeout=WAIT_S)

    def _note(self, what: str, ack: Ack | None = None) -> None:
        with self.changed:
            self.seen[what] += 1
            if ack is not None:
                self.acks.append(ack)
            self.changed.notify_all()

    def _client(self) -> None:
        with httpx.Client(base_url=self.base_url, headers=HEADERS, timeout=30.0) as client:
            for _ in range(REQUESTS_PER_CLIENT):
                item = None if self.stop.is_set() else self.feed.next()
                if item is None:
                    return
                prompt, kind = item
                self._note("request sent")

                def report(reply: Reply, prompt: str = prompt, kind: Kind = kind) -> None:
                    if reply.content is not None and reply.cache == "miss":
                        self._note(f"{kind} ack", Ack(prompt, kind, reply.content, self.life))
                    else:
                        self._note(f"{kind} {reply.status} x-cache={reply.cache or '-'}")

                try:
                    if kind == "stream":
                        ask_stream(client, prompt, report)
                    else:
                        report(ask_json(client, prompt))
                except httpx.TransportError:  # the server is gone: this client is done
                    self._note(f"{kind} cut off")
                    return
                except Exception as exc:  # a malformed answer: counted, and fails the test
                    self._note(f"{kind} client error {exc!r}")
                    return


def distinct(prompts: list[str], rng: random.Random) -> list[str]:
    """The prompts in a seeded order, one per exact-cache key (the key is normalised)."""
    unique = list({normalise(p): p for p in prompts}.values())
    rng.shuffle(unique)
    return unique


def live_and_die(config: Path, feed: Feed, life: int, moment: Moment, count: int) -> Load:
    """One life of the server: start it, load it, SIGKILL it at the `count`-th `moment`."""
    with (
        gateway_process(config, gateway_env()) as (process, base_url),
        Load(base_url, feed, life) as load,
    ):
        reached = load.wait_for(moment, count)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=WAIT_S)
    assert reached, f"life {life}: no {count} x {moment} in {WAIT_S} s: {dict(load.seen)}"
    return load


def lost_answers(config: Path, acks: list[Ack]) -> list[tuple[Ack, str]]:
    """Each acknowledged prompt asked again as JSON: those not served from the cache with
    the content that was acknowledged, and what came instead."""
    lost: list[tuple[Ack, str]] = []
    with (
        gateway_process(config, gateway_env()) as (_process, base_url),
        httpx.Client(base_url=base_url, headers=HEADERS, timeout=30.0) as client,
    ):
        for ack in acks:
            response = client.post("/chat/completions", json=chat_body(ack.prompt, stream=False))
            content = (
                response.json()["choices"][0]["message"]["content"]
                if response.status_code == 200
                else None
            )
            cache = response.headers.get("x-cache")
            if cache != "hit" or content != ack.content:
                tier = response.headers.get("x-cache-tier", "-")
                same = content == ack.content
                why = f"status {response.status_code} x-cache={cache} tier={tier} same={same}"
                lost.append((ack, why))
    return lost


def test_acknowledged_answers_survive_repeated_kill_9(
    tmp_path: Path, upstream: FakeUpstream, model_cache: Path, prompts: list[str]
) -> None:
    rng = random.Random(SEED)
    config = write_config(
        tmp_path, upstream_base_url=upstream.base_url, model_cache=model_cache, extra=CONFIG
    )
    feed = Feed(distinct(prompts, rng))
    acks: list[Ack] = []
    lives: list[str] = []
    errors: list[str] = []
    for life in range(KILLS):
        began = time.monotonic()
        moment = MOMENTS[life % len(MOMENTS)]
        count = rng.randint(CLIENTS, 4 * CLIENTS) if moment == "request sent" else rng.randint(1, 4)
        load = live_and_die(config, feed, life, moment, count)
        acks += load.acks
        errors += [f"life {life}: {what}" for what in load.seen if "client error" in what]
        took = time.monotonic() - began
        lives.append(f"life {life} ({took:.1f} s), killed at {moment} #{count}: {dict(load.seen)}")

    lost = lost_answers(config, acks)
    integrity = ["ok"]
    if not on_postgres():  # a SQLite file survives kill -9 whole (PostgreSQL is a server)
        with contextlib.closing(sqlite3.connect(tmp_path / "gateway.db")) as db:
            integrity = [row[0] for row in db.execute("PRAGMA integrity_check")]
    # every acknowledged miss has its event row: journaled before it was acknowledged
    store = open_store(store_url(tmp_path / "gateway.db"))
    with store.session() as session:
        miss_events = int(
            session.scalar(
                select(func.count()).select_from(RequestEvent).where(RequestEvent.outcome == "miss")
            )
            or 0
        )
    store.engine.dispose()

    acked = Counter(ack.kind for ack in acks)
    missing = Counter(ack.kind for ack, _ in lost)
    summary = "\n".join(
        [
            f"seed {SEED}, {KILLS} kills: lost {missing['stream']} of {acked['stream']} "
            f"acknowledged streams and {missing['json']} of {acked['json']} acknowledged JSON "
            "answers",
            *(f"{a.kind} of life {a.life}: {why}: {a.prompt!r}" for a, why in lost),
            *lives,
        ]
    )
    assert integrity == ["ok"], f"PRAGMA integrity_check: {integrity}; {summary}"
    assert not errors, f"clients got malformed answers: {errors}; {summary}"
    assert acked["json"] and acked["stream"], f"nothing to check: {summary}"
    print(summary)  # the counts, in the log of a passing run too (pytest -rP)
    assert not lost, summary
    assert miss_events >= len(acks), f"{miss_events} miss events for {len(acks)} acknowledged"
