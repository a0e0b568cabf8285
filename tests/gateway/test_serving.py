"""The server's deadlines for slow clients, over real sockets on loopback."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn

from embeddings.runtime import OnnxEmbedder
from gateway.app import create_app
from gateway.serving import uvicorn_config
from tests.gateway.conftest import gateway_settings
from tests.support.fake_upstream import FakeUpstream


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


@contextmanager
def _serving(tmp_path: Path, upstream: FakeUpstream, embedder: OnnxEmbedder) -> Iterator[int]:
    server_section = {"header_timeout_s": 0.3, "body_timeout_s": 0.3}
    settings = gateway_settings(tmp_path / "gateway.db", upstream, server=server_section)
    app = create_app(settings, embedder=embedder, salt=b"test-salt")
    sock = socket.socket()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    server = _Server(uvicorn_config(app, settings.server, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        assert server.ready.wait(60), "the gateway did not start"
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def _exchange(port: int, data: bytes) -> bytes:
    """Send `data`, then read until the server closes the connection (at most 10 s)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(data)
        received = b""
        while chunk := client.recv(65536):
            received += chunk
        return received


@pytest.fixture
def port(
    tmp_path: Path, upstream: FakeUpstream, embedder: OnnxEmbedder, monkeypatch: pytest.MonkeyPatch
) -> Iterator[int]:
    monkeypatch.setenv("FAKE_UPSTREAM_KEY", "sk-upstream")
    with _serving(tmp_path, upstream, embedder) as bound:
        yield bound


def test_headers_that_never_finish_lose_the_connection(port: int) -> None:
    # a recv() that returns b"" is the server closing: without the deadline it never would
    assert _exchange(port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n") == b""


def test_a_body_that_stalls_is_a_408(port: int) -> None:
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\nConnection: close\r\n\r\n"
    )
    answer = _exchange(port, head + b'{"model": ')
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"request_timeout" in answer


def test_a_keep_alive_connection_serves_request_after_request(port: int) -> None:
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        for _ in range(3):
            client.sendall(request)
            answer = client.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200"), answer
