"""A trivial Starlette route under the gateway's own server settings (uvicorn, its loop and
HTTP protocol, its deadlines): the floor that `bench/gateway.py` measures the gateway
against. It reads the JSON body and answers a small JSON object.

    python -m bench.trivial --port 8081
"""

from __future__ import annotations

import argparse

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.serving import uvicorn_config
from gateway.settings import ServerSettings


async def chat(request: Request) -> Response:
    body = await request.json()
    return JSONResponse({"object": "chat.completion", "model": body.get("model")})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    server = ServerSettings(host="127.0.0.1", port=args.port)
    uvicorn.Server(uvicorn_config(app, server, log_level="warning", access_log=False)).run()


if __name__ == "__main__":
    main()
