"""A fake OpenAI-compatible upstream on loopback, for the tests.

Answers deterministically from the prompt. Markers in the last user message choose a
failure: [[429]], [[500]], [[garbage]] (a body that is not JSON), [[slow:SECONDS]],
[[length]] (finish_reason "length"), [[cut]] (a stream that stops without finishing),
[[html]] (an HTML page with status 200, as a misconfigured proxy sends), [[empty]] (a
complete answer with no content).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass
class FakeUpstream:
    base_url: str = ""
    calls: list[dict[str, Any]] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)


def answer_for(prompt: str) -> str:
    digest = hashlib.sha256(prompt.encode()).hexdigest()[:8]
    return f"Answer {digest}: the reply to {prompt!r} is forty-two."


def _app(state: FakeUpstream) -> Starlette:
    async def chat(request: Request) -> Response:
        body = await request.json()
        state.calls.append(body)
        state.keys.append(request.headers.get("authorization", ""))
        prompt = str(body["messages"][-1].get("content", ""))
        slow = re.search(r"\[\[slow:([\d.]+)\]\]", prompt)
        if slow:
            await asyncio.sleep(float(slow.group(1)))
        if "[[429]]" in prompt:
            return JSONResponse({"error": {"message": "slow down", "type": "rate_limit"}}, 429)
        if "[[500]]" in prompt:
            return JSONResponse({"error": {"message": "boom", "type": "server_error"}}, 500)
        if "[[html]]" in prompt:
            return Response("<html><body>Sign in</body></html>", 200, media_type="text/html")
        if "[[garbage]]" in prompt:
            return Response("<html>not json</html>", 200, media_type="application/json")
        text = "" if "[[empty]]" in prompt else answer_for(prompt)
        finish = "length" if "[[length]]" in prompt else "stop"
        usage = {
            "prompt_tokens": 20,
            "completion_tokens": len(text.split()),
            "total_tokens": 20 + len(text.split()),
        }
        base = {"id": "chatcmpl-fake", "created": int(time.time()), "model": body["model"]}
        if not body.get("stream"):
            return JSONResponse(
                {
                    **base,
                    "object": "chat.completion",
                    "usage": usage,
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": finish,
                            "message": {"role": "assistant", "content": text},
                        }
                    ],
                }
            )

        async def events() -> AsyncIterator[bytes]:
            chunk = {**base, "object": "chat.completion.chunk"}
            first = {"index": 0, "delta": {"role": "assistant", "content": ""}}
            yield f"data: {json.dumps({**chunk, 'choices': [first]})}\n\n".encode()
            for word in text.split(" ") if text else []:
                delta = {"index": 0, "delta": {"content": word + " "}}
                yield f"data: {json.dumps({**chunk, 'choices': [delta]})}\n\n".encode()
            if "[[cut]]" in prompt:
                raise RuntimeError("connection lost mid-stream")
            end = {"index": 0, "delta": {}, "finish_reason": finish}
            yield f"data: {json.dumps({**chunk, 'choices': [end]})}\n\n".encode()
            if (body.get("stream_options") or {}).get("include_usage"):
                yield f"data: {json.dumps({**chunk, 'choices': [], 'usage': usage})}\n\n".encode()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


class _Server(uvicorn.Server):
    ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


@contextmanager
def serve_fake_upstream() -> Iterator[FakeUpstream]:
    state = FakeUpstream()
    sock = socket.socket()
    # A socket handed to uvicorn keeps Nagle's algorithm unless told otherwise; with
    # delayed ACKs that adds about 40 ms to every response (uvicorn's own sockets set this).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = _Server(uvicorn.Config(_app(state), log_level="warning", lifespan="off"))
    server.ready = threading.Event()
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    if not server.ready.wait(30):
        raise RuntimeError("the fake upstream did not start")
    state.base_url = f"http://127.0.0.1:{port}/v1"
    try:
        yield state
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
