"""Contrast pairs: a training question and the same question with one word turned into its
opposite ("turn on" / "turn off", "ascending" / "descending") or one number changed.

Labelled question pairs rarely hold such near-misses, yet they are the cache's most harmful
wrong hits: the two texts share every other word, so an untrained encoder scores them 0.93
and above. Each contrast pair is a labelled non-duplicate; training on them teaches the
model that the changed word is the question.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from federated.pairs import Pair

OPPOSITES = (
    ("on", "off"),
    ("enable", "disable"),
    ("enabled", "disabled"),
    ("ascending", "descending"),
    ("increase", "decrease"),
    ("before", "after"),
    ("add", "remove"),
    ("buy", "sell"),
    ("minimum", "maximum"),
    ("min", "max"),
    ("open", "close"),
    ("start", "stop"),
    ("upload", "download"),
    ("import", "export"),
    ("encrypt", "decrypt"),
    ("win", "lose"),
    ("with", "without"),
    ("more", "less"),
    ("best", "worst"),
    ("first", "last"),
    ("cheap", "expensive"),
    ("positive", "negative"),
    ("input", "output"),
    ("male", "female"),
    ("men", "women"),
    ("advantages", "disadvantages"),
    ("pros", "cons"),
    ("true", "false"),
    ("higher", "lower"),
    ("largest", "smallest"),
    ("north", "south"),
    ("east", "west"),
    ("hot", "cold"),
    ("young", "old"),
    ("inside", "outside"),
    ("above", "below"),
    ("legal", "illegal"),
    ("possible", "impossible"),
)
_SWAP = {a: b for a, b in OPPOSITES} | {b: a for a, b in OPPOSITES}
_WORD = re.compile(r"\b(" + "|".join(sorted(_SWAP, key=len, reverse=True)) + r")\b", re.I)
_NUMBER = re.compile(r"\b\d+\b")


def contrast(text: str, rng: random.Random) -> str | None:
    """The text with one opposite word swapped or one number changed; None if it has
    neither."""
    words = list(_WORD.finditer(text))
    numbers = list(_NUMBER.finditer(text))
    if words and (not numbers or rng.random() < 0.7):
        match = rng.choice(words)
        found = match.group(0)
        other = _SWAP[found.lower()]
        if found[0].isupper():
            other = other.capitalize()
        return text[: match.start()] + other + text[match.end() :]
    if numbers:
        match = rng.choice(numbers)
        value = int(match.group(0))
        changed = value + rng.choice((1, 2, 5, 10)) if value < 10**9 else value - 1
        return text[: match.start()] + str(changed) + text[match.end() :]
    return None


def contrast_pairs(pairs: Sequence[Pair], limit: int, *, seed: int = 0) -> list[Pair]:
    """Up to `limit` contrast non-duplicates made from the pairs' questions."""
    rng = random.Random(seed)
    questions = list(dict.fromkeys(text for p in pairs for text in (p.a, p.b)))
    rng.shuffle(questions)
    made: list[Pair] = []
    for question in questions:
        if len(made) >= limit:
            break
        changed = contrast(question, rng)
        if changed is not None and changed != question:
            made.append(Pair(question, changed, 0))
    return made
