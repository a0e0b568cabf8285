"""The replay report as one self-contained HTML page: inline SVG charts, no script, style
or font from the network. The figures are embedded as JSON (`<script id="replay-data">`)."""

from __future__ import annotations

import html
import json
from itertools import pairwise
from typing import Any

W, H, PAD = 640, 260, 44


def _scale(
    values: list[float], low: float | None = None, high: float | None = None
) -> tuple[float, float]:
    lo = min(values) if low is None else low
    hi = max(values) if high is None else high
    return (lo, hi if hi > lo else lo + 1.0)


def _frame(chart_id: str, title: str, body: str, x_label: str, y_label: str) -> str:
    return (
        f"<figure><figcaption>{html.escape(title)}</figcaption>"
        f'<svg id="{chart_id}" viewBox="0 0 {W} {H}" role="img" aria-label="{html.escape(title)}">'
        f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - 10}" y2="{H - PAD}" class="axis"/>'
        f'<line x1="{PAD}" y1="10" x2="{PAD}" y2="{H - PAD}" class="axis"/>'
        f'<text x="{W // 2}" y="{H - 8}" class="label">{html.escape(x_label)}</text>'
        f'<text x="12" y="{H // 2}" class="label" transform="rotate(-90 12 {H // 2})">'
        f"{html.escape(y_label)}</text>{body}</svg></figure>"
    )


def _xy(
    x: float, y: float, xs: tuple[float, float], ys: tuple[float, float]
) -> tuple[float, float]:
    px = PAD + (x - xs[0]) / (xs[1] - xs[0]) * (W - PAD - 10)
    py = H - PAD - (y - ys[0]) / (ys[1] - ys[0]) * (H - PAD - 10)
    return round(px, 1), round(py, 1)


def _ticks(ys: tuple[float, float], fmt: str) -> str:
    out = []
    for i in range(5):
        value = ys[0] + (ys[1] - ys[0]) * i / 4
        _, py = _xy(0, value, (0, 1), ys)
        out.append(f'<text x="{PAD - 4}" y="{py}" class="tick">{format(value, fmt)}</text>')
    return "".join(out)


def savings_chart(series: list[float]) -> str:
    if not series:
        return _frame("chart-savings", "Cumulative savings", "", "request", "USD saved")
    xs, ys = (0.0, float(max(len(series) - 1, 1))), _scale(series, 0.0)
    step = max(1, len(series) // 400)
    points = " ".join(
        f"{x},{y}"
        for x, y in (
            _xy(i, v, xs, ys) for i, v in enumerate(series) if i % step == 0 or i == len(series) - 1
        )
    )
    body = f'<polyline points="{points}" class="line"/>' + _ticks(ys, ".4f")
    return _frame(
        "chart-savings", "Cumulative savings over the replay", body, "request", "USD saved"
    )


def bypass_table(by_category: dict[str, dict[str, Any]]) -> str:
    """Why requests bypassed the cache, per category: where money was not saved."""
    rows = "".join(
        f"<tr><th>{html.escape(name)}</th><td>{html.escape(reason)}</td><td>{count}</td></tr>"
        for name, tally in by_category.items()
        for reason, count in tally.get("bypass_reasons", {}).items()
    )
    if not rows:
        return ""
    head = "<tr><th>category</th><th>bypass reason</th><th>requests</th></tr>"
    return f"<h2>Bypassed, and why</h2><table>{head}{rows}</table>"


def category_chart(by_category: dict[str, dict[str, Any]]) -> str:
    names = list(by_category)
    bars = []
    width = (W - PAD - 20) / max(len(names), 1)
    for i, name in enumerate(names):
        rate = float(by_category[name]["hit_rate"])
        x = PAD + 5 + i * width
        _, top = _xy(0, rate, (0, 1), (0.0, 1.0))
        bars.append(
            f'<rect x="{x:.1f}" y="{top}" width="{width * 0.7:.1f}" height="{H - PAD - top:.1f}" '
            f'class="bar" data-category="{html.escape(name)}" data-value="{rate}"/>'
            f'<text x="{x + width * 0.35:.1f}" y="{H - PAD + 14}" class="tick-x">{html.escape(name)}</text>'
        )
    return _frame(
        "chart-categories",
        "Hit rate per category",
        "".join(bars) + _ticks((0.0, 1.0), ".0%"),
        "category",
        "hit rate",
    )


def similarity_chart(hits: list[float], misses: list[float], threshold: float | None) -> str:
    edges = [round(0.5 + 0.02 * i, 2) for i in range(26)]  # 0.50 ... 1.00

    def counts(values: list[float]) -> list[int]:
        return [
            sum(1 for v in values if lo <= v < hi or (hi == 1.0 and v >= 1.0))
            for lo, hi in pairwise(edges)
        ]

    hit_counts, miss_counts = counts(hits), counts(misses)
    ys = _scale([float(c) for c in hit_counts + miss_counts] or [0.0], 0.0)
    xs = (0.5, 1.0)
    bars = []
    for lo, h, m in zip(edges, hit_counts, miss_counts, strict=False):
        for offset, count, kind in ((0.0, m, "miss"), (0.01, h, "hit")):
            x, top = _xy(lo + offset, count, xs, ys)
            x2, _ = _xy(lo + offset + 0.01, 0, xs, ys)
            bars.append(
                f'<rect x="{x}" y="{top}" width="{x2 - x:.1f}" height="{H - PAD - top:.1f}" class="{kind}" data-bin="{lo}" data-count="{count}"/>'
            )
    if threshold is not None:
        x, _ = _xy(threshold, 0, xs, ys)
        bars.append(
            f'<line x1="{x}" y1="10" x2="{x}" y2="{H - PAD}" class="threshold" data-threshold="{threshold}"/>'
        )
    for value in (0.5, 0.6, 0.7, 0.8, 0.9, 1.0):
        x, _ = _xy(value, 0, xs, ys)
        bars.append(f'<text x="{x}" y="{H - PAD + 14}" class="tick-x">{value:.1f}</text>')
    title = "Similarity of hits (served) and misses (nearest entry), threshold marked"
    return _frame(
        "chart-similarity",
        title,
        "".join(bars) + _ticks(ys, ".0f"),
        "cosine similarity",
        "requests",
    )


def sweep_chart(rows: list[dict[str, Any]]) -> str:
    falses = [float(r["false_hits"] or 0) for r in rows]
    saved = [float(r["cost_saved_usd"]) for r in rows]
    xs, ys = _scale(falses, 0.0), _scale(saved, 0.0)
    points = [_xy(f, s, xs, ys) for f, s in zip(falses, saved, strict=True)]
    body = '<polyline points="{}" class="line"/>'.format(" ".join(f"{x},{y}" for x, y in points))
    for (x, y), row in zip(points, rows, strict=True):
        body += f'<circle cx="{x}" cy="{y}" r="3" class="dot" data-threshold="{row["threshold"]}"/><text x="{x + 4}" y="{y - 4}" class="tick-x">{row["threshold"]:.2f}</text>'
    return _frame(
        "chart-sweep",
        "Savings versus false hits per threshold (one threshold for every category)",
        body + _ticks(ys, ".4f"),
        "false hits",
        "USD saved",
    )


STYLE = """
body{font:14px system-ui,sans-serif;margin:2em auto;max-width:720px;color:#222}
table{border-collapse:collapse}td,th{padding:2px 10px;border-bottom:1px solid #ddd;text-align:right}
td:first-child,th:first-child{text-align:left}figure{margin:1.5em 0}figcaption{font-weight:600}
svg{width:100%;height:auto;background:#fafafa}.axis{stroke:#888}.line{fill:none;stroke:#1f6feb;stroke-width:2}
.bar,.hit{fill:#1f6feb}.miss{fill:#bbb}.threshold{stroke:#d1242f;stroke-dasharray:4}.dot{fill:#d1242f}
.label{font-size:11px;text-anchor:middle}.tick{font-size:9px;text-anchor:end}.tick-x{font-size:9px;text-anchor:middle}
"""


def page(figures: dict[str, Any]) -> str:
    series = figures["series"]
    summary = [
        ("requests", figures["requests"]),
        ("hit rate", f"{figures['hit_rate']:.1%}"),
        (
            "money saved (USD)",
            f"{figures['cost_saved_usd']:.4f} of {figures['cost_without_cache_usd']:.4f}",
        ),
        ("tokens saved", figures["tokens_saved"]),
        ("false hits", figures["false_hits"]),
        ("precision", figures["precision"]),
        ("recall", figures["recall"]),
        ("gateway-added latency p50 (ms)", figures["latency_ms"]["gateway_added"]["p50"]),
        ("upstream latency p50 (ms)", figures["latency_ms"]["upstream"]["p50"]),
        ("cache size", figures["cache_size"]),
    ]
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in summary
    )
    charts = [
        savings_chart(series["cumulative_saved_usd"]),
        category_chart(figures["by_category"]),
        similarity_chart(series["hit_similarity"], series["miss_nearest"], series["threshold"]),
    ]
    if figures.get("threshold_sweep"):
        charts.append(sweep_chart(figures["threshold_sweep"]))
    charts.append(bypass_table(figures["by_category"]))
    # No "<" at all inside the script element ("</script>" or "<!--" in a name would end or
    # derail it): JSON's own escape.
    data = json.dumps(figures).replace("<", "\\u003c")
    name = html.escape(figures["workload"]["name"])
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>gateway replay: {name}</title><style>{STYLE}</style></head><body>"
        f"<h1>gateway replay: {name}</h1><table>{rows}</table>{''.join(charts)}"
        f'<script type="application/json" id="replay-data">{data}</script></body></html>'
    )
