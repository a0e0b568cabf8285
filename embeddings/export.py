"""One-time export of the reference model to ONNX, and its int8 variant.

Files are cached under `<cache_dir>/<model name>-<fingerprint>/` (the weights' SHA-256, and
the adapter's when a trained adapter is merged in), so a new model, new weights or a new
adapter never reuses an old export. Each file is written to a temporary
name and renamed, so a crash or a concurrent export never leaves a half-written model.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

from embeddings.errors import ModelExportError
from embeddings.model import ModelSource

logger = logging.getLogger(__name__)

OPSET = 17
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "sentence_embedding"


def export_dir(cache_dir: Path, source: ModelSource) -> Path:
    return cache_dir / f"{source.name}-{source.fingerprint}"


def ensure_onnx(source: ModelSource, cache_dir: Path, *, int8: bool = False) -> Path:
    """Return the path of the ONNX model (fp32 or int8), exporting it first if needed."""
    directory = export_dir(cache_dir, source)
    fp32 = directory / "model.onnx"
    if not fp32.is_file():
        _atomic_write(fp32, lambda tmp: _export_fp32(source, tmp))
    if not int8:
        return fp32
    quantized = directory / "model-int8.onnx"
    if not quantized.is_file():
        _atomic_write(quantized, lambda tmp: _quantize(fp32, tmp))
    return quantized


def _atomic_write(target: Path, write: Callable[[Path], None]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=target.name, suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.replace(tmp, target)
    except ModelExportError:
        raise
    except Exception as exc:
        raise ModelExportError(f"could not write {target}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)


def _export_fp32(source: ModelSource, target: Path) -> None:
    """Export encoder + mean pooling + L2 normalisation as one graph.

    Pooling inside the graph keeps the output at (batch, dim) instead of
    (batch, tokens, dim), and computes exactly what sentence-transformers computes.
    """
    import torch
    import transformers

    logger.info("exporting %s to ONNX (opset %d) at %s", source.name, OPSET, target)
    encoder = transformers.AutoModel.from_pretrained(str(source.directory)).float()
    if source.adapter is not None:
        from peft import PeftModel

        logger.info("merging the adapter %s into the weights", source.adapter)
        encoder = PeftModel.from_pretrained(encoder, str(source.adapter)).merge_and_unload()
    encoder = encoder.eval()

    class SentenceEncoder(torch.nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(
            self,
            input_ids: torch.Tensor,
            attention_mask: torch.Tensor,
            token_type_ids: torch.Tensor,
        ) -> torch.Tensor:
            hidden = self.encoder(
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=token_type_ids,
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    sample = torch.ones(2, 8, dtype=torch.long)
    dynamic = {name: {0: "batch", 1: "tokens"} for name in INPUT_NAMES}
    dynamic[OUTPUT_NAME] = {0: "batch"}
    # The tracer warns about shape-dependent Python branches in transformers' masking code;
    # they are constant for this encoder (no causal mask), and parity is tested.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            SentenceEncoder(),
            (),
            str(target),
            kwargs={
                "input_ids": sample,
                "attention_mask": sample,
                "token_type_ids": torch.zeros_like(sample),
            },
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            dynamic_axes=dynamic,
            opset_version=OPSET,
            dynamo=False,
        )


def _quantize(fp32: Path, target: Path) -> None:
    # Per-channel weights keep cosine to fp32 above 0.99; per-tensor drifts to about 0.92.
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logger.info("quantising %s to int8 (dynamic, per channel)", fp32)
    quantize_dynamic(str(fp32), str(target), per_channel=True, weight_type=QuantType.QInt8)
