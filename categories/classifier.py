"""Which category a prompt belongs to, decided in order of cost: an explicit header, the
categories' rules, the nearest prototype (reusing the request's embedding), the default."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from categories.policy import DEFAULT, PolicySet
from categories.rules import PREFIX_CHARS, Rule
from embeddings.protocol import Embedder, Vectors

STEPS = ("header", "rule", "prototype", "default")
# Rule verdicts remembered per prompt prefix (at most PREFIX_CHARS each): a repeated prompt
# (an exact hit) is not matched against every rule again.
RULED_PROMPTS = 4096


@dataclass(frozen=True)
class Classification:
    category: str
    step: str  # one of STEPS: what decided
    score: float | None = None  # the prototype's cosine, when a prototype decided


class Classifier:
    """Thread-safety: immutable after construction (but for the memo of rule verdicts, which
    is thread-safe); `nearest` may run in any thread."""

    def __init__(
        self,
        policies: PolicySet,
        prototype_vectors: Vectors,
        prototype_categories: list[str],
    ) -> None:
        self.policies = policies
        self._rules = [
            (policy.name, Rule(rule)) for policy in policies.policies for rule in policy.rules
        ]
        self._vectors = np.asarray(prototype_vectors, dtype=np.float32)
        self._categories = np.asarray(prototype_categories)
        self._ruled = lru_cache(maxsize=RULED_PROMPTS)(self._rule)

    @classmethod
    def build(cls, policies: PolicySet, embedder: Embedder) -> Classifier:
        """Embeds every prototype once (blocking: call it from a worker thread)."""
        texts = [text for policy in policies.policies for text in policy.prototypes]
        owners = [policy.name for policy in policies.policies for _ in policy.prototypes]
        vectors = embedder.embed(texts) if texts else np.zeros((0, embedder.dim), np.float32)
        return cls(policies, vectors, owners)

    def with_policies(self, policies: PolicySet) -> Classifier:
        """The same prototypes and rules under changed policies (no embedding)."""
        return Classifier(policies, self._vectors, self._categories.tolist())

    def cheap(self, text: str, header: str | None = None) -> Classification | None:
        """The header or a rule, when one decides; None when the embedding is needed."""
        if header is not None:
            name = header.strip().lower()
            if name in self.policies:
                return Classification(name, "header")
        return self._ruled(text[:PREFIX_CHARS])  # once: each rule's own cut is then free

    def _rule(self, prefix: str) -> Classification | None:
        for name, rule in self._rules:
            if rule.search(prefix):
                return Classification(name, "rule")
        return None

    def nearest(self, vector: Vectors) -> Classification:
        """The nearest prototype's category, or the default when none is near enough."""
        if len(self._vectors):
            scores = self._vectors @ np.asarray(vector, dtype=np.float32).reshape(-1)
            best = int(np.argmax(scores))
            score = float(scores[best])
            if score >= self.policies.prototype_min_similarity:
                return Classification(str(self._categories[best]), "prototype", score)
        return Classification(DEFAULT, "default")

    def classify(
        self, text: str, vector: Vectors | None, header: str | None = None
    ) -> Classification:
        decided = self.cheap(text, header)
        if decided is not None:
            return decided
        if vector is None:
            return Classification(DEFAULT, "default")
        return self.nearest(vector)
