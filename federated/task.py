"""The model, the losses and the training step shared by central and federated training.

The model is the base sentence encoder (all-MiniLM-L6-v2: mean pooling, unit length) with a
LoRA adapter (`peft`) on every attention and feed-forward projection; only the adapter
trains, so one client's update is about 1.3 MB. The losses are the two of MeanCache:

- multiple negatives ranking: each duplicate's question must pick its partner out of every
  second question in the batch (cross-entropy over scaled cosines);
- online contrastive: the hard pairs of the batch (duplicates further apart than the
  closest non-duplicate, non-duplicates closer than the furthest duplicate) are pulled
  together or pushed past a margin.

They follow sentence-transformers' `MultipleNegativesRankingLoss` and
`OnlineContrastiveLoss`, written against the Hugging Face model so that training needs only
torch, transformers and peft.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embeddings.model import ModelSource
from federated.pairs import Pair

TARGETS = ("query", "key", "value", "dense")  # every linear layer of the encoder
SCALE = 20.0  # cosine scale of the ranking loss
MARGIN = 0.5  # cosine distance a non-duplicate must keep


@dataclass(frozen=True)
class TrainOptions:
    epochs: float = 1.0  # passes over the data; a fraction trains on a sample
    batch: int = 64
    learning_rate: float = 2e-4
    max_tokens: int = 64  # questions are short; serving still takes 256
    rank: int = 8
    seed: int = 0
    proximal_mu: float = 0.0  # FedProx: pull towards the round's global adapter
    device: str = "cpu"


class SimilarityModel:
    """The base encoder with a trainable LoRA adapter."""

    def __init__(self, source: ModelSource, options: TrainOptions) -> None:
        import torch
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModel, AutoTokenizer

        torch.manual_seed(options.seed)
        self.options = options
        self.device = torch.device(options.device)
        self.tokenizer = AutoTokenizer.from_pretrained(str(source.directory))
        base = AutoModel.from_pretrained(str(source.directory)).float()  # weights may be fp16
        config = LoraConfig(
            r=options.rank,
            lora_alpha=2 * options.rank,
            lora_dropout=0.05,
            target_modules=list(TARGETS),
            bias="none",
        )
        self.model = get_peft_model(base, config).to(self.device)

    # -- weights that travel -------------------------------------------------------------

    def adapter_arrays(self) -> list[np.ndarray]:
        """The adapter's weights, in a fixed order: all that leaves a client."""
        from peft import get_peft_model_state_dict

        state = get_peft_model_state_dict(self.model)
        return [state[name].detach().cpu().numpy().copy() for name in sorted(state)]

    def load_adapter_arrays(self, arrays: Sequence[np.ndarray]) -> None:
        import torch
        from peft import get_peft_model_state_dict, set_peft_model_state_dict

        names = sorted(get_peft_model_state_dict(self.model))
        if len(names) != len(arrays):
            raise ValueError(f"expected {len(names)} adapter arrays, got {len(arrays)}")
        state = {
            name: torch.from_numpy(np.asarray(a)) for name, a in zip(names, arrays, strict=True)
        }
        set_peft_model_state_dict(self.model, state)

    def save_adapter(self, directory: Path) -> None:
        self.model.save_pretrained(str(directory))

    # -- encoding --------------------------------------------------------------------------

    def encode(self, texts: Sequence[str]) -> Any:
        """Unit-length sentence embeddings (a torch tensor, with gradients when training)."""
        import torch

        batch = self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.options.max_tokens,
            return_tensors="pt",
        ).to(self.device)
        hidden = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    def embed(self, texts: Sequence[str], batch: int = 256) -> np.ndarray:
        import torch

        self.model.eval()
        out = []
        with torch.no_grad():
            for start in range(0, len(texts), batch):
                out.append(self.encode(texts[start : start + batch]).cpu().numpy())
        if not out:
            return np.zeros((0, 384), dtype=np.float32)
        return np.concatenate(out).astype(np.float32)

    # -- training ----------------------------------------------------------------------------

    def train(
        self, pairs: Sequence[Pair], *, progress: Callable[[int, int, float], None] | None = None
    ) -> float:
        """Train on `pairs` for `options.epochs`; returns the mean loss."""
        import torch

        options = self.options
        rng = random.Random(options.seed)
        order = list(pairs)
        steps_per_epoch = max(1, len(order) // options.batch)
        total = max(1, round(steps_per_epoch * options.epochs))
        anchor = None
        if options.proximal_mu > 0:
            anchor = [p.detach().clone() for p in self._trainable()]
        optimiser = torch.optim.AdamW(self._trainable(), lr=options.learning_rate)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimiser, lambda step: min(1.0, (step + 1) / max(1, total // 10))
        )
        self.model.train()
        losses = []
        step = 0
        while step < total:
            rng.shuffle(order)
            for start in range(0, max(1, len(order) - options.batch + 1), options.batch):
                chunk = order[start : start + options.batch]
                loss = self._loss(chunk)
                if anchor is not None:
                    drift = sum(
                        ((p - a) ** 2).sum() for p, a in zip(self._trainable(), anchor, strict=True)
                    )
                    loss = loss + options.proximal_mu / 2 * drift
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                schedule.step()
                losses.append(float(loss.detach()))
                step += 1
                if progress is not None:
                    progress(step, total, losses[-1])
                if step >= total:
                    break
        self.model.eval()
        return float(np.mean(losses)) if losses else 0.0

    def _trainable(self) -> list[Any]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def _loss(self, chunk: Sequence[Pair]) -> Any:
        return pair_loss(
            self.encode([p.a for p in chunk]),
            self.encode([p.b for p in chunk]),
            [p.label for p in chunk],
        )


def pair_loss(a: Any, b: Any, labels: Sequence[int]) -> Any:
    """Ranking loss over the duplicates plus online contrastive loss over every pair."""
    import torch

    label = torch.tensor(labels, device=a.device, dtype=torch.bool)
    cosine = a @ b.T
    loss = torch.zeros((), device=a.device)
    positives = torch.nonzero(label).flatten()
    if len(positives):
        # every b of the batch is a candidate; a non-duplicate's b is a hard one
        logits = SCALE * cosine[positives]
        loss = loss + torch.nn.functional.cross_entropy(logits, positives)
    distance = 1 - cosine.diagonal()
    pos, neg = distance[label], distance[~label]
    if len(pos) and len(neg):
        hard_pos = pos[pos > neg.min()]
        hard_neg = neg[neg < pos.max()]
        contrastive = hard_pos.pow(2).sum() + torch.relu(MARGIN - hard_neg).pow(2).sum()
        loss = loss + contrastive / len(labels)
    return loss
