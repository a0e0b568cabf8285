"""Running the app under uvicorn, with deadlines for slow clients."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from gateway.settings import ServerSettings

logger = logging.getLogger(__name__)


class HeaderDeadline:
    """The timer of a header deadline, for a uvicorn protocol: armed when a request's
    headers are due, disarmed when they are complete; when it fires, the connection is
    closed if `_waiting_for_headers()` still says so."""

    header_timeout = 10.0
    _header_timer: asyncio.TimerHandle | None = None
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport

    def _waiting_for_headers(self) -> bool:
        return True

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_late)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self._waiting_for_headers() and not self.transport.is_closing():
            self.transport.close()


class GuardedH11(HeaderDeadline, H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a deadline for request headers.

    uvicorn closes a connection that stays idle between requests, but any byte postpones
    that, so a client trickling a header a byte at a time would hold a connection for ever.
    Here the headers of each request must be complete within `header_timeout` seconds of
    the connection opening or the previous response ending; the body has its own deadline
    (`server.body_timeout_s`, a 408 from the route)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.conn.their_state is h11.IDLE:
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _waiting_for_headers(self) -> bool:
        return self.conn.their_state is h11.IDLE


def _guarded_httptools() -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol (llhttp, a C parser) with the same header deadline."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class GuardedHttpTools(HeaderDeadline, HttpToolsProtocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.pipeline and not self.transport.is_closing():
                self._arm()  # the next request's headers are due

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return GuardedHttpTools


def http_protocol(choice: str) -> str:
    """`server.http`: httptools (a C parser) where installed, unless configured h11."""
    if choice == "auto":
        return "httptools" if importlib.util.find_spec("httptools") is not None else "h11"
    return choice


def guarded_protocol(header_timeout: float, choice: str = "auto") -> type[asyncio.Protocol]:
    """The HTTP/1.1 protocol class `choice` names, with the header deadline."""
    base = _guarded_httptools() if http_protocol(choice) == "httptools" else GuardedH11
    return type(base.__name__, (base,), {"header_timeout": header_timeout})


def event_loop(choice: str) -> str:
    """uvicorn's `loop`: uvloop (libuv, a faster event loop) where installed, unless the
    configuration names asyncio."""
    if choice == "auto":
        return "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"
    return choice


def uvicorn_config(app: Any, server: ServerSettings, **options: Any) -> uvicorn.Config:
    """The uvicorn configuration for `app`: the server's deadlines, loop and protocol."""
    return uvicorn.Config(
        app,
        host=server.host,
        port=server.port,
        http=guarded_protocol(server.header_timeout_s, server.http),
        loop=event_loop(server.event_loop),
        timeout_keep_alive=max(1, round(server.idle_timeout_s)),
        proxy_headers=False,  # no client address is used, so X-Forwarded-For is not read
        **options,
    )


def _listening(server: ServerSettings) -> socket.socket:
    """A socket bound to the server's address with SO_REUSEPORT: each worker binds its
    own, and the kernel spreads new connections evenly among them."""
    sock = socket.socket(socket.AF_INET6 if ":" in server.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((server.host, server.port))
    return sock


def serve_workers(make_app: Callable[[int], Any], server: ServerSettings, **options: Any) -> None:
    """`server.workers` processes serving one port, each a fork of this one with its own
    app (`make_app(number)`) and its own listening socket (SO_REUSEPORT: the kernel
    spreads connections among them). A worker that dies is started again; SIGTERM or
    SIGINT stops them all, each finishing its requests. Whatever must be made once
    (migrations, the tenant salt) is made before this is called."""
    _listening(server).close()  # the port is free (else this fails now, not in a worker)
    children: dict[int, int] = {}  # pid -> worker number
    stopping = False

    def start(number: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                for signum in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(signum, signal.SIG_DFL)  # uvicorn installs its own
                config = uvicorn_config(make_app(number), server, **options)
                uvicorn.Server(config).run(sockets=[_listening(server)])
                code = 0
            finally:
                os._exit(code)
        children[pid] = number

    def stop(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    for number in range(server.workers):
        start(number)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    logger.info("serving on %s:%d with %d workers", server.host, server.port, server.workers)
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        if pid in children and not stopping:
            number = children.pop(pid)
            logger.error("worker %d exited (%d): starting it again", number, status)
            time.sleep(1.0)
            start(number)
        else:
            children.pop(pid, None)
