"""OpenAI-shaped response bodies and server-sent event streams for cache hits."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

_PIECES = re.compile(r"\S+\s*|\s+")


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def hit_body(
    stored: dict[str, Any], *, model: str, prompt_tokens: int, completion_tokens: int
) -> dict[str, Any]:
    """The stored answer with a fresh id and time, the requested model, and usage."""
    return {
        **stored,
        "id": completion_id(),
        "created": int(time.time()),
        "model": model,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def event(payload: dict[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {data}\n\n".encode()


def hit_chunks(body: dict[str, Any], *, include_usage: bool) -> Iterator[dict[str, Any]]:
    """A stored completion as stream chunks: role, words, finish, usage if asked."""
    base = {
        "id": body["id"],
        "object": "chat.completion.chunk",
        "created": body["created"],
        "model": body["model"],
    }
    for choice in body.get("choices", []):
        index = choice.get("index", 0)
        message = choice.get("message") or {}
        yield {
            **base,
            "choices": [
                {
                    "index": index,
                    "delta": {"role": "assistant", "content": ""},
                    "finish_reason": None,
                }
            ],
        }
        for piece in _PIECES.findall(message.get("content") or ""):
            yield {
                **base,
                "choices": [{"index": index, "delta": {"content": piece}, "finish_reason": None}],
            }
        yield {
            **base,
            "choices": [
                {
                    "index": index,
                    "delta": {},
                    "finish_reason": choice.get("finish_reason") or "stop",
                }
            ],
        }
    if include_usage:
        yield {**base, "choices": [], "usage": body.get("usage")}


async def hit_stream(body: dict[str, Any], *, include_usage: bool) -> AsyncIterator[bytes]:
    for chunk in hit_chunks(body, include_usage=include_usage):
        yield event(chunk)
    yield event("[DONE]")


class StreamCollector:
    """Rebuilds a chat.completion from the chunks of a stream, to store it afterwards."""

    def __init__(self) -> None:
        self.content: list[str] = []
        self.role = "assistant"
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.model = ""
        self.id = ""
        self.substantive = False  # content, a refusal or a tool call has arrived

    def add(self, chunk: dict[str, Any]) -> None:
        self.model = chunk.get("model") or self.model
        self.id = chunk.get("id") or self.id
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if str(delta.get("content") or "").strip() or any(
                delta.get(k) for k in ("refusal", "tool_calls", "function_call")
            ):
                self.substantive = True
            if choice.get("index", 0) != 0:
                continue
            if delta.get("content"):
                self.content.append(delta["content"])
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]

    def completion(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "finish_reason": self.finish_reason,
                    "message": {"role": self.role, "content": "".join(self.content)},
                }
            ],
            "usage": self.usage or {},
        }
