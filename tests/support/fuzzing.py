"""Fuzzing the gateway over real HTTP: the gateway served by uvicorn on loopback, and a
probe that sends each case (from `tests.support.fuzz_cases`) on one keep-alive connection
and checks that the answer is not a 5xx and that the connection survived.

tests/gateway/test_fuzz.py asserts on every case; bench/fuzz.py runs ten thousand and
reports each distinct failure with its smallest example instead of stopping at the first.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import traceback
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from embeddings.protocol import Embedder
from gateway.app import create_app
from gateway.settings import Settings
from gateway.upstream import SimulatedUpstream, SimulationProfile
from tests.support.fake_upstream import serve_fake_upstream
from tests.support.fuzz_cases import KEY_ENV, PROXIED, SIMULATED, FuzzCase
from tests.support.loopback import serve_on_loopback
from tests.support.stores import store_url

_ROOT = str(Path(__file__).resolve().parents[2]) + os.sep


# --------------------------------------------------------------------------- the server


class ErrorLog(logging.Handler):
    """Error records of the in-process servers (uvicorn's "Exception in ASGI application",
    the gateway's own), kept until the probe collects them after each case."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self._records: list[ServerError] = []
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:  # never raise into the code that logged (LiteLLM catches and logs that too)
            error = ServerError.of(record)
        except Exception:
            self.handleError(record)
            return
        with self._guard:
            self._records.append(error)

    def drain(self) -> tuple[ServerError, ...]:
        with self._guard:
            records, self._records = tuple(self._records), []
        return records


@dataclass(frozen=True)
class ServerError:
    logger: str
    message: str
    signature: str  # the exception and the innermost frame in this repository
    traceback: str
    ours: bool  # the exception went through this repository's code, not only a library's

    @classmethod
    def of(cls, record: logging.LogRecord) -> ServerError:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # arguments that do not fit the format
            message = str(record.msg)
        if record.exc_info is None or record.exc_info[1] is None:
            return cls(record.name, message, f"{record.name}: {message[:120]}", "", False)
        exc = record.exc_info[1]
        frames = traceback.extract_tb(exc.__traceback__)
        ours = [f for f in frames if f.filename.startswith(_ROOT) and "-packages" not in f.filename]
        where = ours[-1] if ours else (frames[-1] if frames else None)
        place = f" at {_short(where.filename)}:{where.lineno} ({where.name})" if where else ""
        text = "".join(traceback.format_exception(exc))
        return cls(record.name, message, f"{type(exc).__name__}{place}", text, bool(ours))


def _short(filename: str) -> str:
    return filename.removeprefix(_ROOT)


def fuzz_settings(directory: Path, upstream_base_url: str) -> Settings:
    return Settings.from_dict(
        {
            "store": {"url": store_url(directory / "fuzz.db")},
            # Long deadlines: a pause between cases (shrinking, a slow machine) must never
            # close the connection, so that every reset the probe sees is the case's doing.
            "server": {"idle_timeout_s": 300, "header_timeout_s": 300},
            "cache": {"lookup_deadline_ms": 5000},
            "models": [
                {"name": SIMULATED, "litellm_model": "simulated/gpt-4o-mini"},
                {
                    "name": PROXIED,
                    "litellm_model": "openai/gpt-4o-mini",
                    "api_base": upstream_base_url,
                    "api_key_env": KEY_ENV,
                    "timeout_s": 10.0,
                },
            ],
        },
        {},
    )


@dataclass
class FuzzTarget:
    base_url: str
    errors: ErrorLog


@contextmanager
def serve_gateway(directory: Path, embedder: Embedder) -> Iterator[FuzzTarget]:
    """The gateway under uvicorn on a free loopback port, with the fake upstream behind
    its second model; both stopped on exit, and the environment and logging restored."""
    errors = ErrorLog()
    previous_key = os.environ.get(KEY_ENV)
    os.environ[KEY_ENV] = "sk-fuzz-upstream"
    try:
        with serve_fake_upstream() as upstream, _errors_to(errors):
            settings = fuzz_settings(directory, upstream.base_url)
            app = create_app(
                settings,
                embedder=embedder,
                salt=b"fuzz-salt",
                simulated=SimulatedUpstream(SimulationProfile(0.0, 0.0)),
            )
            # log_config=None leaves the process's logging as it is.
            with serve_on_loopback(
                app, settings.server, log_config=None, access_log=False
            ) as base_url:
                yield FuzzTarget(base_url, errors)
    finally:
        if previous_key is None:
            os.environ.pop(KEY_ENV, None)
        else:
            os.environ[KEY_ENV] = previous_key


@contextmanager
def _errors_to(handler: logging.Handler) -> Iterator[None]:
    """Error records to `handler`: the gateway's through the root logger, uvicorn's from
    "uvicorn.error", kept from its stderr handler while the probe reports them with the case.
    (After the fake upstream started: its uvicorn configures logging.)"""
    root, server = logging.getLogger(), logging.getLogger("uvicorn.error")
    propagate = server.propagate
    root.addHandler(handler)
    server.addHandler(handler)
    server.propagate = False
    try:
        yield
    finally:
        server.propagate = propagate
        server.removeHandler(handler)
        root.removeHandler(handler)


# ---------------------------------------------------------------------------- the probe


@dataclass(frozen=True)
class Result:
    case: FuzzCase
    status: int | None  # None: no response came back
    body: bytes
    reset: str | None  # how the connection failed to survive, if it did not
    server_errors: tuple[ServerError, ...]

    @property
    def ok(self) -> bool:
        return self.status is not None and self.status < 500 and self.reset is None

    def signature(self) -> str:
        """What tells two failures apart: the server's exception and where it was raised,
        else the status and the error's type and message (digits masked)."""
        traced = [e for e in self.server_errors if e.ours]
        if traced:
            return f"{self.status} {traced[0].signature}"
        try:
            error = json.loads(self.body)["error"]
            detail = f"{error.get('type')}: {str(error.get('message'))[:160]}"
        except (ValueError, KeyError, TypeError):
            detail = repr(self.body[:80])
        if self.reset is not None and (self.status or 0) < 500:
            detail = f"reset ({self.reset.split(':')[0]})"
        detail = re.sub(r"\\u[0-9a-fA-F]{4}", r"\\u####", " ".join(detail.split()))
        return f"{self.status} {re.sub(r'[0-9]+', '#', detail)}"

    def explain(self) -> str:
        lines = [
            f"status {self.status}, reset: {self.reset}",
            self.case.describe(),
            f"response: {self.body[:300]!r}",
        ]
        # The gateway and uvicorn both log an unhandled exception: one traceback per signature.
        logged = {e.signature: e.traceback or e.message for e in self.server_errors}
        return "\n".join(lines + list(logged.values()))


class Probe:
    """One `httpx.Client` (HTTP/1.1 keep-alive) for every case. After each case a
    `GET /healthz` on the same client must answer 200 from the same local port, that is on
    the same connection."""

    def __init__(self, target: FuzzTarget, *, timeout_s: float = 30.0) -> None:
        self.target = target
        self.client = httpx.Client(base_url=target.base_url, timeout=timeout_s)
        self._port: int | None = None

    def __enter__(self) -> Probe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    def _request(self, seen: _Exchange, method: str, path: str, **kwargs: Any) -> None:
        with self.client.stream(method, path, **kwargs) as response:
            seen.status = response.status_code
            stream = response.extensions.get("network_stream")
            address = stream.get_extra_info("client_addr") if stream is not None else None
            seen.port = address[1] if address else None
            seen.body = response.read()

    def send(self, case: FuzzCase) -> Result:
        sent, health = _Exchange(), _Exchange()
        content: Any = iter([case.body]) if case.chunked else case.body
        reset: str | None = None
        stage = "the request"
        try:
            self._request(sent, "POST", case.path, content=content, headers=list(case.headers))
            stage = "GET /healthz"
            self._request(health, "GET", "/healthz")
        except httpx.LocalProtocolError:
            raise  # the case itself is not valid HTTP: a bug in the strategies
        except httpx.TransportError as exc:
            if stage == "the request" and sent.status is not None:
                stage = "the response body"
            reset = f"{type(exc).__name__} during {stage}: {exc}"
        if reset is None:
            if self._port is not None and sent.port != self._port:
                reset = "the connection was replaced before this request"
            elif health.status != 200:
                reset = f"GET /healthz answered {health.status}"
            elif health.port != sent.port:
                reset = f"reconnected for GET /healthz (port {sent.port} then {health.port})"
        self._port = health.port
        return Result(case, sent.status, sent.body, reset, self.target.errors.drain())


@dataclass
class _Exchange:
    status: int | None = None
    port: int | None = None
    body: bytes = b""


@dataclass
class Findings:
    """Statuses, resets, and each distinct failure with its smallest example."""

    cases: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    resets: int = 0
    failures: dict[str, list[Result]] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    logged: Counter[str] = field(default_factory=Counter)  # errors logged by passing cases

    def add(self, result: Result) -> None:
        self.cases += 1
        self.statuses[str(result.status) if result.status is not None else "none"] += 1
        self.resets += result.reset is not None
        if result.ok:
            for error in result.server_errors:
                self.logged[error.signature] += 1
            return
        key = result.signature()
        self.counts[key] += 1
        kept = self.failures.setdefault(key, [])
        kept.append(result)
        kept.sort(key=lambda r: r.case.size())
        del kept[1:]

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status.startswith("5"))

    def summary(self) -> list[dict[str, Any]]:
        return [
            {
                "signature": key,
                "count": self.counts[key],
                "status": kept[0].status,
                "reset": kept[0].reset,
                "example": kept[0].case.describe(),
                "response": kept[0].body[:300].decode("utf-8", "replace"),
                "traceback": next((e.traceback for e in kept[0].server_errors if e.traceback), ""),
            }
            for key, kept in sorted(self.failures.items(), key=lambda item: -self.counts[item[0]])
        ]
