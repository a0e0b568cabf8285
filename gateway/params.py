"""Which request parameters reach the upstream: an allow-list per route, taken from the
OpenAI API reference, with each value's type and range checked.

A client influences only what the OpenAI API lets it. Anything else in a body is a 400 that
names the field, never dropped silently: LiteLLM reads many keyword arguments as provider,
transport or pricing options (`base_url`, `api_key`, `extra_headers`, `mock_response`,
`input_cost_per_token`, `num_retries`, ...), and a client must never reach those. An operator
may let more through for one model (`[[models]] allow_params`), except the names in `NEVER`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any

from gateway.errors import InvalidRequest, ModelNotFound

if TYPE_CHECKING:
    from gateway.settings import ModelSettings

Check = Callable[[str, Any], None]

INT64 = 2**63 - 1
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def _fail(name: str, what: str) -> None:
    raise InvalidRequest(f"{name} must be {what}", param=name)


def _integer(low: int, high: int) -> Check:
    def check(name: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            _fail(name, f"an integer from {low} to {high}")

    return check


def _number(low: float, high: float) -> Check:
    def check(name: str, value: Any) -> None:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or not low <= value <= high
        ):
            _fail(name, f"a number from {low:g} to {high:g}")

    return check


def _boolean(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        _fail(name, "a boolean")


def _string(max_length: int, choices: Collection[str] = ()) -> Check:
    def check(name: str, value: Any) -> None:
        if not isinstance(value, str) or not 0 < len(value) <= max_length:
            _fail(name, f"a string of 1 to {max_length} characters")
        if choices and value not in choices:
            _fail(name, "one of " + ", ".join(sorted(choices)))

    return check


def _object(name: str, value: Any) -> None:
    if not isinstance(value, dict):
        _fail(name, "an object")


def _objects(max_items: int) -> Check:
    def check(name: str, value: Any) -> None:
        if not isinstance(value, list) or len(value) > max_items:
            _fail(name, f"an array of at most {max_items} objects")
        for i, item in enumerate(value):
            _object(f"{name}[{i}]", item)

    return check


def _choice_or_object(choices: Collection[str]) -> Check:
    def check(name: str, value: Any) -> None:
        if isinstance(value, dict):
            return
        if value not in choices:
            _fail(name, "an object or one of " + ", ".join(sorted(choices)))

    return check


def _stop(name: str, value: Any) -> None:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not 1 <= len(items) <= 4:
        _fail(name, "a string or an array of 1 to 4 strings")
    for item in items:
        if not isinstance(item, str) or len(item) > 1_000:
            _fail(name, "a string or an array of 1 to 4 strings of at most 1000 characters")


def _logit_bias(name: str, value: Any) -> None:
    if not isinstance(value, dict) or len(value) > 1_024:
        _fail(name, "an object of at most 1024 token ids")
    bias = _number(-100, 100)
    for token, weight in value.items():
        if not token.isascii() or not token.isdigit() or len(token) > 10:
            _fail(name, "an object whose keys are token ids")
        bias(f"{name}.{token}", weight)


def _response_format(name: str, value: Any) -> None:
    _object(name, value)
    if value.get("type") not in ("text", "json_object", "json_schema"):
        _fail(f"{name}.type", "one of json_object, json_schema, text")


def _stream_options(name: str, value: Any) -> None:
    _object(name, value)
    for option, flag in value.items():
        if option not in ("include_usage", "include_obfuscation"):
            raise InvalidRequest(
                f"{name}.{option} is not a supported stream option", param=f"{name}.{option}"
            )
        _boolean(f"{name}.{option}", flag)


def _modalities(name: str, value: Any) -> None:
    if not isinstance(value, list) or not all(m in ("text", "audio") for m in value):
        _fail(name, "an array of text and audio")


_TEMPERATURE = _number(0, 2)
_PENALTY = _number(-2, 2)
_TOKENS = _integer(1, 100_000_000)
_SEED = _integer(-INT64 - 1, INT64)
_USER = _string(512)

# POST /v1/chat/completions (messages are checked by `gateway.cache.keys`).
CHAT: Mapping[str, Check | None] = {
    "model": None,
    "messages": None,
    "stream": _boolean,
    "stream_options": _stream_options,
    "temperature": _TEMPERATURE,
    "top_p": _number(0, 1),
    "n": _integer(1, 128),
    "max_tokens": _TOKENS,
    "max_completion_tokens": _TOKENS,
    "stop": _stop,
    "presence_penalty": _PENALTY,
    "frequency_penalty": _PENALTY,
    "logit_bias": _logit_bias,
    "logprobs": _boolean,
    "top_logprobs": _integer(0, 20),
    "seed": _SEED,
    "response_format": _response_format,
    "tools": _objects(128),
    "tool_choice": _choice_or_object(("none", "auto", "required")),
    "parallel_tool_calls": _boolean,
    "functions": _objects(128),
    "function_call": _choice_or_object(("none", "auto")),
    "user": _USER,
    "reasoning_effort": _string(16, ("none", "minimal", "low", "medium", "high", "xhigh")),
    "verbosity": _string(8, ("low", "medium", "high")),
    "modalities": _modalities,
    "audio": _object,
    "prediction": _object,
    "web_search_options": _object,
}

# POST /v1/completions (legacy).
COMPLETIONS: Mapping[str, Check | None] = {
    "model": None,
    "prompt": None,
    "stream": _boolean,
    "temperature": _TEMPERATURE,
    "top_p": _number(0, 1),
    "n": _integer(1, 128),
    "best_of": _integer(1, 20),
    "max_tokens": _TOKENS,
    "stop": _stop,
    "presence_penalty": _PENALTY,
    "frequency_penalty": _PENALTY,
    "logit_bias": _logit_bias,
    "logprobs": _integer(0, 5),
    "echo": _boolean,
    "suffix": _string(100_000),
    "seed": _SEED,
    "user": _USER,
}

# POST /v1/embeddings.
EMBEDDINGS: Mapping[str, Check | None] = {
    "model": None,
    "input": None,
    "encoding_format": _string(8, ("float", "base64")),
    "dimensions": _integer(1, 65_536),
    "user": _USER,
}

# Never from a client, and never allowed by an operator either: credentials, where requests
# go, how they are retried or timed, prices, canned answers, and LiteLLM's own machinery.
_NEVER_NAMES = """
    api_base base_url api_key api_version api_type organization extra_headers headers
    extra_body extra_query timeout request_timeout num_retries max_retries mock_response
    mock_tool_calls mock_timeout custom_llm_provider deployment_id metadata fallbacks
    context_window_fallbacks model_list caching cache callbacks logger_fn client aclient
    azure_ad_token azure_ad_token_provider aws_access_key_id aws_secret_access_key
    aws_session_token vertex_credentials vertex_project vertex_location base_model
    proxy_server_request no-log no_log hf_model_name custom_prompt_dict input_cost_per_token
    output_cost_per_token input_cost_per_second output_cost_per_second
"""
NEVER = frozenset(_NEVER_NAMES.split())
_NEVER_PARTS = ("cost", "price", "secret", "token_provider", "credential", "litellm", "url")


def never_allowed(name: str) -> bool:
    """Whether `name` may not reach LiteLLM even when an operator asks for it."""
    lowered = name.lower()
    return lowered in NEVER or any(part in lowered for part in _NEVER_PARTS)


def check(
    body: Mapping[str, Any], route: Mapping[str, Check | None], *, extra: Collection[str] = ()
) -> dict[str, Any]:
    """The parameters of `body` that go upstream (all but model, the input and streaming),
    each checked against the route's allow-list; `extra` names the operator's additions for
    this model. Raises `InvalidRequest` naming the first field that is not allowed."""
    forwarded: dict[str, Any] = {}
    for name, value in body.items():
        if name in route:
            validate = route[name]
            if validate is None:
                continue
            if value is not None:
                validate(name, value)
        elif name not in extra or never_allowed(name):
            reason = (
                "is a provider or transport option that clients may not set"
                if never_allowed(name)
                else "is not a supported parameter of this route"
            )
            raise InvalidRequest(f"{name!r} {reason}", param=name, code="unsupported_parameter")
        if name not in ("stream", "stream_options"):
            forwarded[name] = value
    return forwarded


def requested_model(models: Mapping[str, ModelSettings], body: Any) -> ModelSettings:
    """The configured model a request body names: 400 without one, 404 for an unknown one."""
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    name = body.get("model")
    if not isinstance(name, str) or not name:
        raise InvalidRequest("model is required and must be a string", param="model")
    model = models.get(name)
    if model is None:
        raise ModelNotFound(f"the model {name!r} does not exist", param="model")
    return model


def valid_extra(name: str) -> bool:
    """Whether an operator may allow `name` for a model (`[[models]] allow_params`)."""
    return bool(_NAME.match(name)) and not never_allowed(name)
