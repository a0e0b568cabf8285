"""A `gateway replay --json` document read back, for the admin dashboard's Replay view:
checked, by pydantic, to hold exactly what the HTML report draws (`gateway.replay.html`),
with the right types, so that a file from elsewhere is drawn by the same code or refused
with the place it is wrong. What the report does not draw is dropped."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

MAX_POINTS = 1_000_000  # of one series: a replay of a million requests
MAX_CATEGORIES = 256
MAX_NAME = 256  # characters of a name, and of a wrong field's path in an error

Name = Annotated[str, Field(max_length=MAX_NAME)]
Count = Annotated[int, Field(ge=0)]
Series = Annotated[list[float], Field(max_length=MAX_POINTS)]


class _Part(BaseModel):
    # Strict: "0.5" is not a number, true is not a count; NaN and infinities are refused.
    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="ignore")


class Workload(_Part):
    name: Name


class Percentiles(_Part):
    p50: float | None = None


class Latency(_Part):
    gateway_added: Percentiles
    upstream: Percentiles


class CategoryFigures(_Part):
    hit_rate: Annotated[float, Field(ge=0.0, le=1.0)]
    bypass_reasons: Annotated[dict[Name, Count], Field(max_length=64)] = {}


class ReplaySeries(_Part):
    cumulative_saved_usd: Series
    hit_similarity: Series
    miss_nearest: Series
    threshold: float | None = None


class SweepRow(_Part):
    threshold: Annotated[float, Field(ge=-1.0, le=1.0)]
    false_hits: Count | None = None
    cost_saved_usd: float


class ReplayFigures(_Part):
    workload: Workload
    requests: Count
    hit_rate: Annotated[float, Field(ge=0.0, le=1.0)]
    cost_saved_usd: float
    cost_without_cache_usd: float
    tokens_saved: Count
    false_hits: Count | None = None
    precision: float | None = None
    recall: float | None = None
    latency_ms: Latency
    cache_size: Count | None = None
    series: ReplaySeries
    by_category: Annotated[dict[Name, CategoryFigures], Field(max_length=MAX_CATEGORIES)]
    threshold_sweep: Annotated[list[SweepRow], Field(max_length=1000)] | None = None


class DocumentError(ValueError):
    """Not a replay document: `where` is the first wrong field's path (`series.threshold`)."""

    def __init__(self, message: str, where: str) -> None:
        super().__init__(message)
        self.where = where


def read_figures(document: Any) -> dict[str, Any]:
    """The figures of a replay document, as `gateway.replay.html.page` takes them."""
    try:
        return ReplayFigures.model_validate(document).model_dump()
    except ValidationError as exc:
        first = exc.errors()[0]
        # cut: a client's own dictionary key may be part of the path
        where = (".".join(str(part) for part in first["loc"]) or "body")[:MAX_NAME]
        raise DocumentError(
            f"not a gateway replay --json document: {where}: {first['msg']}", where
        ) from None
