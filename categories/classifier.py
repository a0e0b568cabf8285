"""Which category a prompt belongs to, decided in order of cost: an explicit header, the
categories' rules, then from the request's embedding (computed for the cache anyway): the
prototypes of categories the category model was not trained on, the model, the default.
Without a model that fits the embedder, the nearest prototype of any category decides."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from categories.model import CategoryModel
from categories.policy import DEFAULT, PolicySet
from categories.rules import PREFIX_CHARS, Rule
from embeddings.protocol import Embedder, Vectors

logger = logging.getLogger(__name__)

STEPS = ("header", "rule", "prototype", "model", "default")
# Rule verdicts remembered per prompt prefix (at most PREFIX_CHARS each): a repeated prompt
# (an exact hit) is not matched against every rule again.
RULED_PROMPTS = 4096


@dataclass(frozen=True)
class Classification:
    category: str
    step: str  # one of STEPS: what decided
    # the prototype's cosine, or the model's probability, when one of them decided
    score: float | None = None


class Classifier:
    """Thread-safety: immutable after construction (but for the memo of rule verdicts, which
    is thread-safe); `nearest` may run in any thread."""

    def __init__(
        self,
        policies: PolicySet,
        prototype_vectors: Vectors,
        prototype_categories: list[str],
        model: CategoryModel | None = None,
    ) -> None:
        """`model` must fit the embedder whose vectors `nearest` gets (`Classifier.build`
        checks it); the prototypes of the categories it knows are then not consulted."""
        self.policies = policies
        self.model = model
        self._rules = [
            (policy.name, Rule(rule)) for policy in policies.policies for rule in policy.rules
        ]
        vectors = np.asarray(prototype_vectors, dtype=np.float32)
        categories = np.asarray(prototype_categories, dtype=object)
        self._all = (vectors, categories)  # for `with_policies`
        if model is not None and len(categories):
            untrained = np.asarray([c not in model.categories for c in categories], dtype=bool)
            vectors, categories = vectors[untrained], categories[untrained]
        self._vectors, self._categories = vectors, categories
        self._ruled = lru_cache(maxsize=RULED_PROMPTS)(self._rule)

    @classmethod
    def build(
        cls, policies: PolicySet, embedder: Embedder, model: CategoryModel | None = None
    ) -> Classifier:
        """Embeds every prototype once (blocking: call it from a worker thread). A model
        trained on another embedder's vectors is not used (logged)."""
        texts = [text for policy in policies.policies for text in policy.prototypes]
        owners = [policy.name for policy in policies.policies for _ in policy.prototypes]
        vectors = embedder.embed(texts) if texts else np.zeros((0, embedder.dim), np.float32)
        if model is not None and not model.fits(embedder.model_id, embedder.dim):
            logger.warning(
                "the category model was trained on %s, not on %s: classifying by rules and "
                "prototypes (run `gateway train-classifier`)",
                model.embedding,
                embedder.model_id,
            )
            model = None
        return cls(policies, vectors, owners, model)

    def with_policies(self, policies: PolicySet) -> Classifier:
        """The same prototypes, model and rules under changed policies (no embedding)."""
        vectors, categories = self._all
        return Classifier(policies, vectors, categories.tolist(), self.model)

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
        """From the embedding: a near prototype of a category the model does not know, else
        the model's category when it is sure enough, else the default. Categories that are
        no longer configured are never returned."""
        settings = self.policies.classifier
        if len(self._vectors):
            scores = self._vectors @ np.asarray(vector, dtype=np.float32).reshape(-1)
            best = int(np.argmax(scores))
            score = float(scores[best])
            minimum = (
                settings.prototype_min_similarity
                if self.model is None
                else settings.untrained_min_similarity
            )
            name = str(self._categories[best])
            if score >= minimum and name in self.policies:
                return Classification(name, "prototype", score)
        if self.model is not None:
            name, probability = self.model.predict(vector)
            confident = settings.min_confidence
            if confident is None:
                confident = self.model.min_confidence
            if probability >= confident and name in self.policies:
                return Classification(name, "model", probability)
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
