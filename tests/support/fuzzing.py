"""Fuzzing the gateway over real HTTP: hypothesis strategies for request bodies and headers,
the gateway served by uvicorn on loopback, and a probe that sends each case on one keep-alive
connection and checks that the answer is not a 5xx and that the connection survived.

tests/gateway/test_fuzz.py asserts on every case; bench/fuzz.py runs ten thousand and
reports each distinct failure with its smallest example instead of stopping at the first.

Nothing leaves loopback: the models are the simulated upstream and the fake OpenAI-compatible
server, the URLs among the provider options point at a closed port on 127.0.0.1, and the
providers named are ones LiteLLM calls at the model's `api_base` (no cloud credential chains).
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
from hypothesis import strategies as st

from embeddings.protocol import Embedder
from gateway.app import create_app
from gateway.settings import Settings
from gateway.upstream import SimulatedUpstream, SimulationProfile
from tests.support.fake_upstream import serve_fake_upstream
from tests.support.loopback import serve_on_loopback

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
EMBEDDINGS = "/v1/embeddings"
SIMULATED = "gpt-4o-mini"  # the built-in simulated upstream
PROXIED = "upstream-mini"  # LiteLLM, to the fake upstream on loopback
MODELS = (SIMULATED, PROXIED)
KEY_ENV = "FUZZ_UPSTREAM_KEY"
CLOSED = "http://127.0.0.1:9/v1"  # the discard port: nothing listens there
BODY_CAP = 256 * 1024  # generated bodies stay well under the gateway's 1 MiB limit
_ROOT = str(Path(__file__).resolve().parents[2]) + os.sep

# ---------------------------------------------------------------------------- strategies


def _unmarked(text: str) -> str:
    # The fake upstream fails on purpose when a prompt holds [[500]] and the like.
    return text.replace("[[", "[ [")


surrogates = st.integers(0xD800, 0xDFFF).map(chr)
plain_text = st.text(max_size=60).map(_unmarked)
texts = st.one_of(
    plain_text,
    st.tuples(plain_text, surrogates, plain_text).map("".join),
    st.sampled_from(["", " ", "\x00", "\u2028", "\ufeff", "e\u0301", "🙂" * 20, "a" * 3000]),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(10**399, 10**400),
    st.floats(),  # NaN and infinities included: json.dumps writes them as NaN/Infinity
    texts,
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(plain_text, inner, max_size=4),
    max_leaves=12,
)

odd_parts = st.one_of(
    json_values,
    st.fixed_dictionaries({"type": st.just("text")}, optional={"text": json_values}),
    st.fixed_dictionaries({"type": json_values}),
    st.fixed_dictionaries(
        {"type": st.just("image_url")},
        optional={
            "image_url": st.one_of(
                json_values,
                st.fixed_dictionaries(
                    {"url": st.sampled_from(["data:image/png;base64,AAAA", CLOSED, "", "x"])}
                ),
            )
        },
    ),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["input_audio", "file", "refusal", "tool_result"])},
        optional={"text": texts, "input_audio": json_values, "file": json_values},
    ),
)
roles = st.one_of(
    st.sampled_from(["user", "system", "assistant", "tool", "function", "developer", ""]),
    json_values,
)


@st.composite
def odd_messages(draw: st.DrawFn) -> Any:
    message: dict[str, Any] = {"role": draw(roles), "content": draw(texts)}
    changes = st.lists(st.sampled_from(["content", "role", "name", "tool_calls"]), max_size=4)
    for name in draw(changes):
        if name == "content":
            content = st.one_of(st.none(), json_values, st.lists(odd_parts, max_size=4))
            message["content"] = draw(content)
        elif draw(st.booleans()):
            message[name] = draw(json_values)
        else:
            message.pop(name, None)
    return message


def _turn(role: str, text: str) -> dict[str, Any]:
    return {"role": role, "content": text}


@st.composite
def valid_chats(draw: st.DrawFn, models: tuple[str, ...] = MODELS) -> dict[str, Any]:
    history = draw(
        st.lists(
            st.tuples(st.sampled_from(["system", "user", "assistant"]), plain_text), max_size=3
        )
    )
    body: dict[str, Any] = {
        "model": draw(st.sampled_from(models)),
        "messages": [_turn(r, t) for r, t in history] + [_turn("user", draw(plain_text))],
    }
    options = st.fixed_dictionaries(
        {},
        optional={
            "stream": st.booleans(),
            "stream_options": st.just({"include_usage": True}),
            "temperature": st.floats(0, 2),
            "top_p": st.floats(0, 1),
            "max_tokens": st.integers(1, 512),
            "seed": st.integers(0, 2**31),
            "stop": st.lists(plain_text, max_size=2),
        },
    )
    return {**body, **draw(options)}


CHAT_FIELDS = (
    "model",
    "messages",
    "stream",
    "temperature",
    "top_p",
    "n",
    "max_tokens",
    "stop",
    "seed",
    "logit_bias",
    "response_format",
    "tools",
    "tool_choice",
    "stream_options",
    "logprobs",
    "user",
)
PROVIDER_FIELDS = (
    "base_url",
    "api_base",
    "api_key",
    "api_version",
    "extra_headers",
    "extra_body",
    "headers",
    "timeout",
    "num_retries",
    "mock_response",
    "input_cost_per_token",
    "output_cost_per_token",
    "custom_llm_provider",
    "metadata",
    "caching",
    "fallbacks",
)
_PROVIDER_VALUES: dict[str, list[Any]] = {
    "base_url": [CLOSED, "not a url", "file:///etc/passwd", ""],
    "api_base": [CLOSED, "not a url", ""],
    "api_key": ["sk-fuzz", ""],
    "extra_headers": [{"x-a": "b"}, {"x-a": 1}, {"": ""}, {"Host": "127.0.0.1:9"}],
    "extra_body": [{"a": 1}, {"model": "other"}],
    "timeout": [1e-9, 0, -1, "1", 30, 1e300],
    "num_retries": [-1, 0, 1, "2", 1.5],
    "mock_response": ["mocked", "litellm.RateLimitError", "litellm.InternalServerError", ""],
    "input_cost_per_token": [1000.0, -1, "free"],
    "custom_llm_provider": ["openai", "text-completion-openai", "anthropic", "nope", ""],
    "fallbacks": [[PROXIED], ["nope/x"], [{"model": "x"}]],
}
# Strings only from the lists above where a string names a provider or a model: a random one
# could name a provider with a default endpoint or credential chain off loopback.
_NAMING = ("custom_llm_provider", "fallbacks")
provider_values = {
    name: st.one_of(
        st.sampled_from(_PROVIDER_VALUES.get(name, [None])),
        json_values.filter(lambda v: not isinstance(v, str | list))
        if name in _NAMING
        else json_values,
    )
    for name in PROVIDER_FIELDS
}


@st.composite
def mutated_chats(draw: st.DrawFn, models: tuple[str, ...] = MODELS) -> dict[str, Any]:
    """A valid chat request with one to four fields mutated: a wrong type, removed, a provider
    option, odd messages or content parts."""
    body = draw(valid_chats(models))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["type", "drop", "provider", "message", "messages"]))
        if kind == "type":
            body[draw(st.sampled_from(CHAT_FIELDS))] = draw(json_values)
        elif kind == "drop":
            body.pop(draw(st.sampled_from(CHAT_FIELDS)), None)
        elif kind == "provider":
            name = draw(st.sampled_from(PROVIDER_FIELDS))
            body[name] = draw(provider_values[name])
        elif kind == "message" and isinstance(body.get("messages"), list) and body["messages"]:
            messages = body["messages"]
            messages[draw(st.integers(0, len(messages) - 1))] = draw(odd_messages())
        else:
            body["messages"] = draw(st.lists(odd_messages(), max_size=4))
    return body


@st.composite
def passthrough_bodies(draw: st.DrawFn, path: str) -> dict[str, Any]:
    field_name = "prompt" if path == COMPLETIONS else "input"
    good = st.one_of(plain_text.filter(bool), st.lists(plain_text, min_size=1, max_size=8))
    body: dict[str, Any] = {"model": draw(st.sampled_from(MODELS)), field_name: draw(good)}
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["type", "drop", "provider"]))
        name = draw(st.sampled_from(["model", field_name, "stream", "max_tokens", "user"]))
        if kind == "type":
            lists = st.lists(texts, max_size=8) | st.lists(json_values, min_size=1, max_size=3)
            body[name] = draw(st.one_of(json_values, lists))
        elif kind == "drop":
            body.pop(name, None)
        else:
            name = draw(st.sampled_from(PROVIDER_FIELDS))
            body[name] = draw(provider_values[name])
    return body


@st.composite
def encoded(draw: st.DrawFn, body: Any) -> bytes:
    """JSON text of `body`; lone surrogates either escaped or as raw (invalid) UTF-8."""
    ascii_only = draw(st.booleans())
    return json.dumps(body, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


def _with(field_name: str, token: str, model: str = SIMULATED) -> bytes:
    head = f'{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]'
    return f'{head},"{field_name}":{token}}}'.encode("utf-8", "surrogatepass")


NUMERIC = ("temperature", "top_p", "n", "max_tokens", "seed", "timeout", "presence_penalty")
NUMBER_TOKENS = (
    "NaN",
    "Infinity",
    "-Infinity",
    "1" + "0" * 399,
    "-" + "9" * 400,
    "9" * 5000,
    "1e400",
    "-1e400",
    "1e-400",
    "0." + "0" * 500 + "1",
    "1E+2",
    "-0",
)


@st.composite
def raw_bodies(draw: st.DrawFn, models: tuple[str, ...] = MODELS) -> bytes:
    """Bodies no JSON library would write: bytes, truncations, deep nesting, non-finite and
    huge numbers, lone surrogates, and JSON that is valid but not an object."""
    model = draw(st.sampled_from(models))
    kind = draw(
        st.sampled_from(
            ["bytes", "truncated", "deep", "number", "surrogate", "empty", "not_object", "odd"]
        )
    )
    if kind == "bytes":
        return draw(st.binary(max_size=512))
    if kind == "truncated":
        full = draw(encoded(draw(valid_chats((model,)))))
        return full[: draw(st.integers(0, max(0, len(full) - 1)))]
    if kind == "deep":
        depth = draw(st.integers(1, 6000))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}"), ('[{"a":', "}]")]))
        leaf = "1" if opener != "[" else ""
        closers = closer * depth if draw(st.booleans()) else ""
        nested = opener * depth + leaf + closers
        where = draw(st.sampled_from(["body", "content", "metadata", "messages"]))
        if where == "body":
            return nested.encode()
        if where == "messages":
            return f'{{"model":"{model}","messages":{nested}}}'.encode()
        if where == "metadata":
            return _with("metadata", nested, model)
        return f'{{"model":"{model}","messages":[{{"role":"user","content":{nested}}}]}}'.encode()
    if kind == "number":
        token = draw(st.sampled_from(NUMBER_TOKENS))
        return _with(draw(st.sampled_from(NUMERIC)), token, model)
    if kind == "surrogate":
        escaped = ['"\\ud800"', '"a\\udfffb"', '"\\udc00\\ud800"', '"\\u0000"']
        invalid = [b"\xed\xa0\x80", b"\xff", b"\xc3", b"\xc0\xaf", b"\xf4\x90"]
        quoted = draw(
            st.sampled_from(escaped).map(str.encode)
            | st.sampled_from(invalid).map(lambda raw: b'"a' + raw + b'b"')
        )
        place = draw(st.sampled_from(["content", "model", "role", "stop", "key"]))
        if place == "model":
            return b'{"model":' + quoted + b',"messages":[{"role":"user","content":"hi"}]}'
        if place == "key":
            return _with("x", "1", model)[:-1] + b"," + quoted + b":1}"
        if place == "stop":
            return _with("stop", "[]", model)[:-3] + b"[" + quoted + b"]}"
        inner = b'{"role":"user","content":' + quoted + b"}"
        if place == "role":
            inner = b'{"role":' + quoted + b',"content":"hi"}'
        return f'{{"model":"{model}","messages":['.encode() + inner + b"]}"
    if kind == "empty":
        return draw(st.sampled_from([b"", b" ", b"\n", b"null", b"{}", b"[]"]))
    if kind == "not_object":
        value = draw(json_values.filter(lambda v: not isinstance(v, dict)))
        return draw(encoded(value))
    body = draw(encoded(draw(valid_chats((model,)))))
    return draw(
        st.sampled_from(
            [
                b"\xef\xbb\xbf" + body,  # a byte-order mark
                body.decode("utf-8", "surrogatepass").encode("utf-16", "surrogatepass"),
                body + b"garbage",
                body[:-1] + b',"model":"nope"}',  # a duplicate key
                body.replace(b":", b" : ", 3),
            ]
        )
    )


HEADER_NAMES = (
    "x-cache-ttl",
    "cache-control",
    "x-cache-namespace",
    "x-cache-category",
    "content-type",
    "authorization",
)
_HEADER_VALUES: dict[str, list[str]] = {
    "x-cache-ttl": [
        "nan",
        "NaN",
        "inf",
        "-inf",
        "-1",
        "0",
        "1e400",
        "1e-400",
        "9" * 400,
        "1_000",
        "0x10",
        "+5e0",
        "3600",
    ],
    "cache-control": ["no-cache", "no-store", "no-cache, no-store", "max-age=0", ",,,", "NO-STORE"],
    "x-cache-namespace": ["team-a", "a/b", "../..", "x" * 65, "a b", "é"],
    "x-cache-category": ["code", "CODE", "Code\tx", "default", "nope", "time_sensitive"],
    "content-type": ["application/json", "text/plain", "application/x-www-form-urlencoded"],
    "authorization": ["Bearer sk-fuzz", "Bearer", "bearer  x", "Basic YTpi", "Bearer é", "x"],
}
# What h11 lets a client send: no control characters, no surrounding whitespace.
header_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=40,
).map(str.strip)


@st.composite
def header_sets(draw: st.DrawFn, min_size: int = 0) -> dict[str, bytes]:
    names = draw(st.lists(st.sampled_from(HEADER_NAMES), unique=True, min_size=min_size))
    values = {n: draw(st.sampled_from(_HEADER_VALUES[n]) | header_text) for n in names}
    return {n: v.encode("latin-1", "replace") for n, v in values.items()}


# --------------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class FuzzCase:
    """One request: a route, a body, headers, and whether the body is sent chunked."""

    path: str
    body: bytes
    headers: tuple[tuple[str, bytes], ...] = ()
    chunked: bool = False
    kind: str = ""

    def size(self) -> int:
        return len(self.body) + sum(len(k) + len(v) for k, v in self.headers)

    def describe(self, limit: int = 400) -> str:
        body = repr(self.body if len(self.body) <= limit else self.body[:limit] + b"...")
        headers = {k: v.decode("latin-1") for k, v in self.headers}
        size = f" ({len(self.body)} bytes)" if len(self.body) > limit else ""
        chunked = " chunked" if self.chunked else ""
        kind = f"[{self.kind}] " if self.kind else ""
        return f"{kind}POST {self.path}{chunked} headers={headers} body={body}{size}"


@st.composite
def cases(
    draw: st.DrawFn,
    bodies: st.SearchStrategy[bytes],
    *,
    paths: tuple[str, ...] = (CHAT,),
    kind: str = "",
) -> FuzzCase:
    chosen = draw(header_sets()) if draw(st.booleans()) else {}
    if "cache-control" not in chosen and draw(st.booleans()):
        # Else a prompt seen before is a hit, and the upstream never sees the odd fields.
        chosen["cache-control"] = b"no-cache"
    body = draw(bodies)
    return FuzzCase(
        path=draw(st.sampled_from(paths)),
        body=body[:BODY_CAP],
        headers=tuple(chosen.items()),
        chunked=draw(st.integers(0, 9)) == 0,
        kind=kind,
    )


def raw_cases() -> st.SearchStrategy[FuzzCase]:
    return cases(raw_bodies(), kind="raw")


def mutated_cases() -> st.SearchStrategy[FuzzCase]:
    return cases(mutated_chats().flatmap(encoded), kind="mutated")


def header_cases() -> st.SearchStrategy[FuzzCase]:
    """Valid requests with at least one odd header."""
    return st.builds(
        lambda body, headers: FuzzCase(CHAT, body, tuple(headers.items()), kind="headers"),
        valid_chats().flatmap(encoded),
        header_sets(min_size=1),
    )


def passthrough_cases() -> st.SearchStrategy[FuzzCase]:
    structured = st.sampled_from([COMPLETIONS, EMBEDDINGS]).flatmap(
        lambda path: (
            passthrough_bodies(path)
            .flatmap(encoded)
            .map(lambda body: FuzzCase(path, body, kind="passthrough"))
        )
    )
    raw = cases(raw_bodies(), paths=(COMPLETIONS, EMBEDDINGS), kind="passthrough-raw")
    return st.one_of(structured, raw)


def all_cases() -> st.SearchStrategy[FuzzCase]:
    return st.one_of(raw_cases(), mutated_cases(), header_cases(), passthrough_cases())


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
            "store": {"url": f"sqlite:///{directory / 'fuzz.db'}"},
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
