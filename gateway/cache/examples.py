"""In-context examples: earlier large-model answers, near a missed request, given to the
small model as prior turns (IC-Cache).

Selection is two stages. Relevance: a candidate is a live entry of the caller's own tenant
and namespace (the indexes searched are theirs), answered by a large model, whose
similarity to the request is at least the category's `example_floor` and below the hit
threshold (above it the request is a hit, not a miss). Then utility: each example's learned
share of the times it helped (feedback and `gateway refine`), so the score is
`similarity x utility`. Examples are taken greedily by score while they fit the category's
token budget, at most `example_k_max`; the guard drops a candidate that contradicts the
request (negation, numbers, entities).

The format: after the request's leading system (or developer) messages, each example is a
user turn (the earlier prompt) and an assistant turn (the large model's answer), the best
example last, nearest the request; then the request's own messages, unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from gateway.cache.guard import check
from gateway.store.entries import LookupEntry

PRIOR_GOOD = 1.0  # utility starts at (good + 1) / (good + bad + 2) = 0.5
PRIOR_BAD = 1.0
CHARS_PER_TOKEN = 4  # estimate for the budget: no tokenizer on the request path


@dataclass(frozen=True)
class ExampleLimits:
    """What a category allows: examples at all, their floor, token budget and count."""

    enabled: bool = True
    floor: float = 0.6
    budget_tokens: int = 1024
    k_max: int = 2


@dataclass(frozen=True)
class Example:
    entry_id: int
    similarity: float
    utility: float
    prompt: str  # the earlier request's last user turn
    answer: str  # the large model's answer to it
    category: str = ""  # the entry's: a category without examples lends none either

    @property
    def score(self) -> float:
        return self.similarity * self.utility

    @property
    def tokens(self) -> int:
        return estimate_tokens(self.prompt) + estimate_tokens(self.answer) + 8  # two turns


def estimate_tokens(text: str) -> int:
    return max(1, len(text) // CHARS_PER_TOKEN)


def utility(good: float, bad: float) -> float:
    """The share of judged uses an example helped, with a uniform prior: 0.5 unjudged."""
    return (good + PRIOR_GOOD) / (good + bad + PRIOR_GOOD + PRIOR_BAD)


def answer_text(response_json: str) -> str | None:
    """The assistant's text in a stored response; None for tool calls or no text."""
    try:
        stored = json.loads(response_json)
        message = stored["choices"][0]["message"]
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, str) or not content.strip() or message.get("tool_calls"):
        return None
    return content


def candidate(row: LookupEntry, similarity: float, now: float) -> Example | None:
    """A stored entry as an example, if it may be one: live, answered by a large model, not
    retired, with an answer in text."""
    if row.answered_tier != "large" or row.example_retired:
        return None
    if row.expires_at is not None and row.expires_at <= now:
        return None
    answer = answer_text(row.response_json)
    if answer is None:
        return None
    quality = utility(row.example_good, row.example_bad)
    return Example(row.id, similarity, quality, row.text, answer, row.category)


def choose(
    candidates: Iterable[Example],
    limits: ExampleLimits,
    *,
    threshold: float,
    query: str,
    guard: bool = True,
) -> list[Example]:
    """The examples to give, best first: candidates in [floor, threshold), not contradicting
    the query (when `guard`), by score, greedily while under the token budget, at most k_max."""
    if not limits.enabled or limits.k_max < 1:
        return []
    eligible = [
        c
        for c in candidates
        if limits.floor <= c.similarity < threshold and c.utility > 0 and c.answer.strip()
    ]
    eligible.sort(key=lambda c: (-c.score, c.entry_id))
    chosen: list[Example] = []
    spent = 0
    seen: set[str] = set()
    for candidate in eligible:
        if len(chosen) == limits.k_max:
            break
        if candidate.prompt in seen or spent + candidate.tokens > limits.budget_tokens:
            continue
        if guard and not check(query, candidate.prompt).ok:
            continue
        chosen.append(candidate)
        seen.add(candidate.prompt)
        spent += candidate.tokens
    return chosen


def with_examples(messages: list[dict[str, Any]], examples: list[Example]) -> list[dict[str, Any]]:
    """The request's messages with the examples as prior turns (see the module's format):
    after the leading system/developer messages, the best example last."""
    if not examples:
        return messages
    lead = 0
    while lead < len(messages) and messages[lead].get("role") in ("system", "developer"):
        lead += 1
    turns: list[dict[str, Any]] = []
    for example in reversed(examples):  # best last
        turns.append({"role": "user", "content": example.prompt})
        turns.append({"role": "assistant", "content": example.answer})
    return [*messages[:lead], *turns, *messages[lead:]]
