"""The server's deadlines for slow clients, over real sockets on loopback."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from embeddings.runtime import OnnxEmbedder
from gateway.app import create_app
from tests.gateway.conftest import gateway_settings
from tests.support.fake_upstream import FakeUpstream
from tests.support.loopback import serve_on_loopback


@contextmanager
def _serving(
    tmp_path: Path, upstream: FakeUpstream, embedder: OnnxEmbedder, http: str
) -> Iterator[int]:
    server_section = {"header_timeout_s": 0.3, "body_timeout_s": 0.3, "http": http}
    settings = gateway_settings(tmp_path / "gateway.db", upstream, server=server_section)
    app = create_app(settings, embedder=embedder, salt=b"test-salt")
    with serve_on_loopback(app, settings.server) as base_url:
        yield int(base_url.rsplit(":", 1)[1])


def _exchange(port: int, data: bytes) -> bytes:
    """Send `data`, then read until the server closes the connection (at most 10 s)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(data)
        received = b""
        while chunk := client.recv(65536):
            received += chunk
        return received


@pytest.fixture(params=["httptools", "h11"])
def port(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    upstream: FakeUpstream,
    embedder: OnnxEmbedder,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[int]:
    """A gateway on loopback, under each HTTP/1.1 protocol it may serve with."""
    monkeypatch.setenv("FAKE_UPSTREAM_KEY", "sk-upstream")
    with _serving(tmp_path, upstream, embedder, request.param) as bound:
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


def _response(client: socket.socket) -> bytes:
    """One whole HTTP response (headers, then a body of Content-Length bytes)."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = client.recv(65536)
        assert chunk, f"the server closed the connection: {received!r}"
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = client.recv(65536)
        assert chunk, "the server closed the connection mid-body"
        body += chunk
    return head + b"\r\n\r\n" + body


def test_a_keep_alive_connection_serves_request_after_request(port: int) -> None:
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        for _ in range(3):
            client.sendall(request)
            answer = _response(client)
            assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b'{"status":"ok"}')


def test_the_event_loop_is_uvloop_where_installed_unless_configured() -> None:
    import importlib.util

    from gateway.serving import event_loop, uvicorn_config
    from gateway.settings import ServerSettings, SettingsError

    installed = importlib.util.find_spec("uvloop") is not None
    assert event_loop("auto") == ("uvloop" if installed else "asyncio")
    assert uvicorn_config(None, ServerSettings(event_loop="asyncio")).loop == "asyncio"
    with pytest.raises(SettingsError, match="event_loop"):
        ServerSettings(event_loop="trio")


def test_the_http_protocol_is_httptools_where_installed_unless_configured() -> None:
    import importlib.util

    from gateway.serving import http_protocol, uvicorn_config
    from gateway.settings import ServerSettings, SettingsError

    installed = importlib.util.find_spec("httptools") is not None
    assert http_protocol("auto") == ("httptools" if installed else "h11")
    configured = uvicorn_config(None, ServerSettings(http="h11")).http
    assert isinstance(configured, type) and configured.__name__ == "GuardedH11"
    with pytest.raises(SettingsError, match=r"server\.http"):
        ServerSettings(http="h3")
