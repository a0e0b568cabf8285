"""Adding a compressed form to a model directory: a PCA projection fitted on the model's
vectors of training questions, with the thresholds calibrated on projected vectors.

    python -m federated.compression MODEL_DIR --pairs qqp_pairs.jsonl --dims 128

(`gateway train --compress 128` does the same as it writes a model.)
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embeddings.card import CARD
from embeddings.compress import PROJECTION_FILE, Projection
from embeddings.model import file_sha256
from federated.evaluate import cache_view
from federated.pairs import Pair

FIT_QUESTIONS = 20000  # training questions the projection is fitted on, at most

Embed = Callable[[Sequence[str]], np.ndarray]


def add_projection(
    directory: Path, embed: Embed, train: Sequence[Pair], validation: Sequence[Pair], dims: int
) -> dict[str, Any]:
    """Fit, calibrate on validation, write `projection.npz` and record it in the card."""
    questions = list(dict.fromkeys(text for p in train for text in (p.a, p.b)))
    random.Random(0).shuffle(questions)
    projection = Projection.fit(embed(questions[:FIT_QUESTIONS]), dims)
    a = projection.apply(embed([p.a for p in validation]))
    b = projection.apply(embed([p.b for p in validation]))
    view = cache_view(validation, a, b)
    floor = view.recall_at_precision(0.85)
    projection.save(directory / PROJECTION_FILE)
    (directory / PROJECTION_FILE).chmod(0o644)
    compression = {
        "dims": dims,
        "fitted_on": min(len(questions), FIT_QUESTIONS),
        "bytes_per_vector": dims * 4,
        "threshold": view.best().threshold,
        "thresholds": {},
        "validation": {
            "best": view.best().to_dict(),
            "recall_at_precision_0.85": floor.to_dict() if floor else None,
        },
    }
    card = json.loads((directory / CARD).read_text())
    card["files"][PROJECTION_FILE] = file_sha256(directory / PROJECTION_FILE)
    card["compression"] = compression
    (directory / CARD).write_text(json.dumps(card, indent=2) + "\n")
    return compression


def main(argv: Sequence[str] | None = None) -> int:
    from embeddings.options import EmbedderOptions
    from embeddings.protocol import embed_all
    from embeddings.runtime import load_embedder
    from federated.pairs import read_pairs, split

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("directory", type=Path)
    parser.add_argument("--pairs", type=Path, required=True)
    parser.add_argument("--dims", type=int, default=128)
    parser.add_argument("--cache-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    parts = split(read_pairs(args.pairs).pairs)
    embedder = load_embedder(EmbedderOptions(cache_dir=args.cache_dir, model=args.directory))
    result = add_projection(
        args.directory,
        lambda texts: embed_all(embedder, texts),
        parts.train,
        parts.validation,
        args.dims,
    )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
