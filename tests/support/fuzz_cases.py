"""Hypothesis strategies for fuzzing the OpenAI routes: raw bodies (broken JSON, deep
nesting, NaN, lone surrogates, huge numbers), valid chats with fields mutated (wrong types,
provider options), passthrough bodies and odd headers; and the cases they make.

Nothing they generate leaves loopback: URLs among the provider options point at a closed
port on 127.0.0.1, and the providers named are ones LiteLLM calls at the model's `api_base`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
EMBEDDINGS = "/v1/embeddings"
SIMULATED = "gpt-4o-mini"  # the built-in simulated upstream
PROXIED = "upstream-mini"  # LiteLLM, to the fake upstream on loopback
MODELS = (SIMULATED, PROXIED)
KEY_ENV = "FUZZ_UPSTREAM_KEY"
CLOSED = "http://127.0.0.1:9/v1"  # the discard port: nothing listens there
BODY_CAP = 256 * 1024  # generated bodies stay well under the gateway's 1 MiB limit

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
