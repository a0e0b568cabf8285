"""Reading a workload: JSONL of chat-completion bodies (with optional `id`, `timestamp`,
`tenant` and `duplicate_of`), or labelled pairs (`{"a", "b", "label"}`), detected from the
first valid line. Bad lines are reported with their numbers and skipped."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

DEMOS = {"qqp": "qqp_demo.jsonl", "multiturn": "multiturn_demo.jsonl"}
_META = ("id", "timestamp", "tenant", "duplicate_of")
UNLABELLED = object()  # a line without a `duplicate_of` key


class WorkloadError(ValueError):
    """The workload cannot be replayed at all (or, with --strict, has a bad line)."""


@dataclass(frozen=True)
class Request:
    line: int
    id: str
    body: dict[str, Any]
    timestamp: float | None = None
    tenant: str | None = None
    duplicate_of: object = UNLABELLED  # an earlier id, None (a new question), or UNLABELLED

    @property
    def text(self) -> str:
        content = self.body["messages"][-1].get("content")
        return content if isinstance(content, str) else json.dumps(content)


@dataclass
class Workload:
    name: str
    format: str  # "chat" or "pairs"
    requests: list[Request]
    malformed: list[tuple[int, str]] = field(default_factory=list)

    @property
    def labelled(self) -> bool:
        return any(r.duplicate_of is not UNLABELLED for r in self.requests)


def demo_path(name: str) -> Path:
    return Path(str(resources.files("gateway").joinpath("data", "replay", DEMOS[name])))


def load(source: str | None, *, model: str, limit: int = 0, strict: bool = False) -> Workload:
    """A file path, a bundled demo's name (`qqp`, `multiturn`), or None for the QQP demo."""
    name = source or "qqp"
    path = demo_path(name) if name in DEMOS else Path(name)
    try:
        lines = path.read_text("utf-8").split("\n")
    except FileNotFoundError:
        demos = ", ".join(DEMOS)
        raise WorkloadError(
            f"no workload {name!r}: not a file nor a bundled demo ({demos})"
        ) from None
    except UnicodeDecodeError:
        raise WorkloadError(f"{path}: not UTF-8 text") from None
    workload = Workload(path.name if name not in DEMOS else name, "", [])
    pairs: list[tuple[int, dict[str, Any]]] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            kind = _kind(row)
            if not workload.format:
                workload.format = kind
            elif kind != workload.format:
                raise ValueError(f"a {kind} line in a {workload.format} workload")
            if kind == "pairs":
                ok = isinstance(row["a"], str) and isinstance(row["b"], str)
                if not ok or row["label"] not in (0, 1):
                    raise ValueError('a pair needs string "a" and "b" and a label 0 or 1')
                pairs.append((number, row))
            else:
                request = _chat(number, row, model, seen)
                seen.add(request.id)
                workload.requests.append(request)
        except (ValueError, TypeError) as exc:
            reason = str(exc) if not isinstance(exc, json.JSONDecodeError) else f"not JSON ({exc})"
            if strict:
                raise WorkloadError(f"{path}:{number}: {reason}") from None
            workload.malformed.append((number, reason))
    if workload.format == "pairs":
        workload.requests = _from_pairs(pairs, model)
    if not workload.requests:
        raise WorkloadError(f"{path}: no valid lines ({len(workload.malformed)} malformed)")
    if limit:
        workload.requests = workload.requests[:limit]
    return workload


def _kind(row: Any) -> str:
    if not isinstance(row, dict):
        raise ValueError("a line must be a JSON object")
    if {"a", "b", "label"} <= set(row):
        return "pairs"
    if "messages" in row:
        return "chat"
    raise ValueError('neither a chat request ("messages") nor a pair ("a", "b", "label")')


def _chat(number: int, row: dict[str, Any], model: str, seen: set[str]) -> Request:
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages must be a non-empty array")
    if not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
        raise ValueError("every message must be an object with a role")
    ident = str(row.get("id", f"line-{number}"))
    if ident in seen:
        raise ValueError(f"duplicate id {ident!r}")
    duplicate_of: object = UNLABELLED
    if "duplicate_of" in row:
        duplicate_of = row["duplicate_of"]
        if duplicate_of is not None:
            duplicate_of = str(duplicate_of)
            if duplicate_of not in seen:
                raise ValueError(f"duplicate_of {duplicate_of!r} is not an earlier line's id")
    tenant = row.get("tenant")
    if tenant is not None and not isinstance(tenant, str):
        raise ValueError("tenant must be a string")
    body = {k: v for k, v in row.items() if k not in _META}
    body.setdefault("model", model)
    return Request(number, ident, body, _time(row.get("timestamp")), tenant, duplicate_of)


def _time(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).timestamp()
        except ValueError:
            pass
    raise ValueError(f"timestamp must be Unix seconds or ISO 8601, not {value!r}")


def _from_pairs(pairs: list[tuple[int, dict[str, Any]]], model: str) -> list[Request]:
    """Every pair's `a` first (stored), then every `b` (asked), labelled by the pair."""
    firsts, seconds = [], []
    for number, row in pairs:
        first = f"a{number}"
        firsts.append(Request(number, first, _body(row["a"], model), duplicate_of=None))
        same = row["label"] == 1
        seconds.append(
            Request(
                number, f"b{number}", _body(row["b"], model), duplicate_of=first if same else None
            )
        )
    return firsts + seconds


def _body(text: str, model: str) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}]}
