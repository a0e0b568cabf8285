"""From a chat-completion body to what the cache needs: validation, the text to embed,
the context chain, the exact-match hash, and whether the request may be cached at all."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import InvalidRequest
from gateway.params import CHAT, check

# Checked parameters that do not change the answer, so they are not in the key; the
# temperature is in the exact key and decides cacheability through the category's policy.
NOT_IN_KEY = ("user", "temperature")
ROLES = ("system", "developer", "user", "assistant", "tool", "function")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class RequestKey:
    model: str  # the configured model name the client asked for (the model family)
    text: str  # the last user turn: what is embedded
    context_hash: str  # system prompt, earlier turns and answer-changing parameters
    exact_hash: str  # the whole normalised request
    stream: bool
    include_usage: bool
    temperature: float | None
    bypass: str | None  # why the request may not be cached (a reason code), if it may not
    # The checked parameters that go upstream besides the model and messages.
    params: dict[str, Any] = field(default_factory=dict)


def normalise(text: str) -> str:
    return _SPACE.sub(" ", text).strip().lower()


def _sha(value: object) -> str:
    encoded = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(encoded.encode()).hexdigest()


# Content parts by type, and the field each must carry (an object, or text).
PARTS = {
    "text": ("text", str),
    "image_url": ("image_url", dict),
    "input_audio": ("input_audio", dict),
    "file": ("file", dict),
    "refusal": ("refusal", str),
}


def _valid_part(part: Any) -> bool:
    kind = part.get("type") if isinstance(part, dict) else None
    if not isinstance(kind, str) or kind not in PARTS:
        return False
    field, shape = PARTS[kind]
    return isinstance(part.get(field), shape)


def _content_text(content: Any, where: str, *, required: bool) -> tuple[str, bool]:
    """The text of a message's content and whether it is text only."""
    if content is None:
        if required:
            raise InvalidRequest(f"{where} is required", param=where)
        return "", True
    if isinstance(content, str):
        return content, True
    if isinstance(content, list) and content:
        texts: list[str] = []
        only_text = True
        for i, part in enumerate(content):
            if not _valid_part(part):
                raise InvalidRequest(
                    f"{where}[{i}] must be a content part ({', '.join(PARTS)}) with its field",
                    param=f"{where}[{i}]",
                )
            if part["type"] == "text":
                texts.append(part["text"])
            else:
                only_text = False
        return "\n".join(texts), only_text
    raise InvalidRequest(f"{where} must be a string or a non-empty array of parts", param=where)


TOOL_PARAMS = ("tools", "functions", "tool_choice", "function_call", "parallel_tool_calls")


def parse_chat(
    body: Any, *, cache_tools: bool = False, extra_params: Collection[str] = ()
) -> RequestKey:
    """Validate a chat-completion request body and derive its cache key. `extra_params` are
    the parameters the operator lets through for this model beyond the OpenAI API's."""
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("model is required and must be a string", param="model")
    params = check(body, CHAT, extra=extra_params)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages must be a non-empty array", param="messages")
    turns: list[tuple[str, str]] = []
    only_text = True
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidRequest(f"messages[{i}] must be an object", param=f"messages[{i}]")
        role = message.get("role")
        if role not in ROLES:
            raise InvalidRequest(
                f"messages[{i}].role must be one of {', '.join(ROLES)}",
                param=f"messages[{i}].role",
            )
        tool_calls = message.get("tool_calls")
        if tool_calls is not None and (role != "assistant" or not isinstance(tool_calls, list)):
            raise InvalidRequest(
                f"messages[{i}].tool_calls must be an array on an assistant message",
                param=f"messages[{i}].tool_calls",
            )
        for name in ("name", "tool_call_id"):
            if message.get(name) is not None and not isinstance(message[name], str):
                raise InvalidRequest(
                    f"messages[{i}].{name} must be a string", param=f"messages[{i}].{name}"
                )
        text, plain = _content_text(
            message.get("content"),
            f"messages[{i}].content",
            required=role != "assistant" or not (tool_calls or message.get("function_call")),
        )
        only_text = only_text and plain and not tool_calls
        turns.append((role, text))
    stream = body.get("stream") or False
    options = body.get("stream_options") or {}
    temperature = params.get("temperature")

    bypass = None
    if turns[-1][0] != "user":
        bypass = "not_user_turn"
    elif not only_text:
        bypass = "non_text_content"
    elif (params.get("n") or 1) > 1:
        bypass = "n_above_1"
    elif any(params.get(k) for k in TOOL_PARAMS) and (not cache_tools or stream):
        # Cached tool calls are served as JSON only: streamed tool-call deltas are not kept.
        bypass = "tools"
    elif params.get("logprobs") or params.get("top_logprobs"):
        bypass = "logprobs"
    elif params.get("audio") or "audio" in (params.get("modalities") or ()):
        bypass = "audio_output"
    elif params.get("web_search_options") is not None:
        bypass = "web_search"

    key_params = {k: v for k, v in params.items() if k not in NOT_IN_KEY and v is not None}
    context = {
        "turns": [(role, normalise(text)) for role, text in turns[:-1]],
        "params": key_params,
    }
    exact = {
        "model": model,
        "turns": [(r, normalise(t)) for r, t in turns],
        "params": key_params,
        "temperature": temperature,
    }
    return RequestKey(
        model=model,
        text=turns[-1][1],
        context_hash=_sha(context),
        exact_hash=_sha(exact),
        stream=stream,
        include_usage=bool(options.get("include_usage")),
        temperature=None if temperature is None else float(temperature),
        bypass=bypass,
        params={k: v for k, v in params.items() if k not in ("model", "messages")},
    )
