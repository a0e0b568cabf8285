"""A cheap check before a semantic hit is served.

Embeddings place "turn on dark mode" next to "turn off dark mode" and "weather in Boston"
next to "weather in Paris". These are the wrong hits users of semantic caches report most,
so a candidate is rejected when the two prompts differ in polarity (negation, opposite
verbs or directions), in numbers, dates or units, or in named entities.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_WORD = re.compile(r"[A-Za-z][A-Za-z'\-]*|\d+(?:[.,]\d+)*")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*\s*(?:%|[a-zA-Z]{1,3}\b)?")
NEGATIONS = frozenset(
    {
        "not",
        "no",
        "never",
        "without",
        "none",
        "nobody",
        "nothing",
        "neither",
        "nor",
        "cannot",
        "can't",
        "don't",
        "doesn't",
        "didn't",
        "isn't",
        "aren't",
        "wasn't",
        "weren't",
        "won't",
        "wouldn't",
        "shouldn't",
        "couldn't",
        "mustn't",
        "hasn't",
        "haven't",
        "hadn't",
    }
)
OPPOSITES = (
    ("on", "off"),
    ("enable", "disable"),
    ("enabled", "disabled"),
    ("ascending", "descending"),
    ("asc", "desc"),
    ("with", "without"),
    ("increase", "decrease"),
    ("add", "remove"),
    ("before", "after"),
    ("max", "min"),
    ("maximum", "minimum"),
    ("true", "false"),
    ("open", "close"),
    ("start", "stop"),
    ("lock", "unlock"),
    ("show", "hide"),
    ("include", "exclude"),
    ("allow", "deny"),
    ("upper", "lower"),
    ("uppercase", "lowercase"),
    ("import", "export"),
    ("encrypt", "decrypt"),
    ("encode", "decode"),
    ("buy", "sell"),
    ("first", "last"),
    ("largest", "smallest"),
    ("best", "worst"),
    ("pros", "cons"),
    ("advantages", "disadvantages"),
    ("above", "below"),
    ("more", "less"),
)
_OPPOSITE = {a: b for a, b in OPPOSITES} | {b: a for a, b in OPPOSITES}
# Capitalised words that are not names.
_NOT_NAMES = frozenset(
    {
        "i",
        "what",
        "how",
        "why",
        "who",
        "when",
        "where",
        "which",
        "is",
        "are",
        "can",
        "do",
        "does",
        "should",
        "will",
        "would",
        "could",
        "the",
        "a",
        "an",
        "in",
        "on",
        "of",
        "to",
        "and",
        "or",
        "my",
        "it",
        "if",
        "was",
        "were",
        "has",
        "have",
        "please",
        "tell",
        "give",
        "explain",
        "write",
        "list",
        "describe",
        "english",
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    }
)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str = ""


def _words(text: str) -> list[str]:
    return _WORD.findall(text)


def _numbers(text: str) -> set[str]:
    return {re.sub(r"\s+", "", m.group(0)).lower().replace(",", "") for m in _NUMBER.finditer(text)}


def _names(words: list[str], lowered: set[str]) -> set[str]:
    names = set()
    for i, word in enumerate(words):
        if i > 0 and word[:1].isupper() and word.lower() not in _NOT_NAMES:
            names.add(word.lower())
    return names


def check(query: str, cached: str) -> Verdict:
    """Whether the answer cached for `cached` may be served for `query`."""
    q_words, c_words = _words(query), _words(cached)
    q_lower = {w.lower() for w in q_words}
    c_lower = {w.lower() for w in c_words}
    if bool(q_lower & NEGATIONS) != bool(c_lower & NEGATIONS):
        return Verdict(False, "negation")
    for word in q_lower - c_lower:
        opposite = _OPPOSITE.get(word)
        if opposite and opposite in c_lower and opposite not in q_lower:
            return Verdict(False, f"polarity: {word} / {opposite}")
    if _numbers(query) != _numbers(cached):
        return Verdict(False, "numbers, dates or units differ")
    q_names = _names(q_words, q_lower) - c_lower
    c_names = _names(c_words, c_lower) - q_lower
    if q_names and c_names:
        return Verdict(False, "named entities differ")
    return Verdict(True)
