"""A load generator to run in its own process, so that it does not share the gateway's
cores' interpreter: `clients` keep-alive HTTP/1.1 connections, each sending POSTs one after
another until `requests` have been sent in all.

It speaks just enough HTTP/1.1 for JSON answers with a Content-Length (what the gateway
sends to a non-streaming request), on raw asyncio streams: an HTTP client library costs more
CPU per request than the gateway's exact hit, and would measure itself.

    python -m bench.loadgen --url http://127.0.0.1:8080/v1/chat/completions \
        --bodies bodies.jsonl --clients 32 --requests 10000 [--header 'name: value']

Prints one JSON object: elapsed seconds, requests per second, latency percentiles, and
counts by status and by the `x-cache` and `x-cache-tier` headers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np


def _request(host: str, path: str, body: bytes, headers: list[str]) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        f"host: {host}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        *headers,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _one(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, dict[str, str]]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    await reader.readexactly(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), headers


async def run(
    url: str, bodies: list[bytes], clients: int, requests: int, headers: list[str]
) -> dict[str, Any]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    prepared = [_request(parts.netloc, parts.path, body, headers) for body in bodies]
    counter = iter(range(requests))
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    cache: Counter[str] = Counter()

    async def client() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for i in counter:
                t0 = time.perf_counter()
                status, got = await _one(reader, writer, prepared[i % len(prepared)])
                latencies.append((time.perf_counter() - t0) * 1000)
                statuses[status] += 1
                tier = got.get("x-cache-tier")
                cache[got.get("x-cache", "none") + (f"_{tier}" if tier else "")] += 1
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - t0
    data = np.asarray(latencies)
    return {
        "clients": clients,
        "requests": len(latencies),
        "elapsed_s": elapsed,
        "per_s": len(latencies) / elapsed,
        "latency_ms": {
            "p50": float(np.percentile(data, 50)),
            "p95": float(np.percentile(data, 95)),
            "mean": float(data.mean()),
        },
        "status": {str(k): v for k, v in sorted(statuses.items())},
        "cache": dict(sorted(cache.items())),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--bodies", type=Path, required=True, help="JSON lines, one body each")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--header", action="append", default=[])
    args = parser.parse_args()
    bodies = [line.encode() for line in args.bodies.read_text().splitlines() if line.strip()]
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(run(args.url, bodies, args.clients, args.requests, args.header))
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
