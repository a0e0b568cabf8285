"""An ASGI app under uvicorn, in a thread, on a free port of 127.0.0.1: for tests and
benchmarks that need real sockets."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from gateway.serving import uvicorn_config
from gateway.settings import ServerSettings


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


@contextmanager
def serve_on_loopback(
    app: Any, server: ServerSettings | None = None, **options: Any
) -> Iterator[str]:
    """Serve `app` as `gateway serve` would (with `server`'s deadlines) and yield its base
    URL; the server is stopped on exit. `options` go to `uvicorn.Config`."""
    sock = socket.socket()
    # A socket handed to uvicorn keeps Nagle's algorithm unless told otherwise; with delayed
    # ACKs that adds about 40 ms to every response (uvicorn's own sockets set this).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn_config(app, server or ServerSettings(), **{"log_level": "warning", **options})
    runner = _Server(config)
    thread = threading.Thread(target=runner.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        if not runner.ready.wait(120) or not runner.started:
            raise RuntimeError("the server did not start")
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        runner.should_exit = True
        thread.join(timeout=30)
        sock.close()
