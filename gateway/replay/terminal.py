"""The replay report in the terminal (rich tables)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def _money(value: float | None) -> str:
    return "-" if value is None else f"${value:,.4f}"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f} ms"


def _pair(values: dict[str, float | None]) -> str:
    return f"{_ms(values['p50'])} / {_ms(values['p95'])}"


def _reasons(reasons: dict[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in reasons.items()) or "-"


def show(figures: dict[str, Any], console: Console) -> None:
    workload = figures["workload"]
    title = (
        f"replay of {workload['name']} ({figures['upstream']} upstream, "
        f"priced as {figures['model']})"
    )
    summary = Table(title=title, show_header=False)
    summary.add_column(style="bold")
    summary.add_column(justify="right")
    latency = figures["latency_ms"]
    tiers = (
        f"({figures['hits_exact']} exact, {figures['hits_semantic']} semantic, "
        f"{figures['hits_coalesced']} coalesced)"
    )
    saved = f"{_money(figures['cost_saved_usd'])} of {_money(figures['cost_without_cache_usd'])}"
    rows = [
        ("requests", f"{figures['requests']:,}"),
        ("hit rate", f"{_share(figures['hit_rate'])}  {tiers}"),
        (
            "misses / bypasses / errors",
            f"{figures['misses']} / {figures['bypasses']} / {figures['errors']}",
        ),
        ("tokens saved", f"{figures['tokens_saved']:,}"),
        ("money saved", saved),
        ("cache size", f"{figures['cache_size']:,} entries"),
        ("gateway-added latency p50 / p95", _pair(latency["gateway_added"])),
        ("hit latency p50 / p95", _pair(latency["hit"])),
        ("upstream latency p50 / p95", _pair(latency["upstream"])),
        ("replay time", f"{figures['duration_s']:.1f} s"),
    ]
    routing = figures.get("routing")
    if routing:
        rows += [
            (
                "misses routed small / large",
                f"{routing['routed_small']} / {routing['routed_large']} "
                f"({_share(routing['offloaded_share'])} offloaded, "
                f"{routing['with_examples']} with examples)",
            ),
            (
                "money saved by routing",
                f"{_money(routing['routing_saved_usd'])} of "
                f"{_money(routing['cost_all_large_usd'])}",
            ),
        ]
    if workload["labelled"]:
        rows += [
            ("false hits", str(figures["false_hits"])),
            ("precision / recall", f"{_share(figures['precision'])} / {_share(figures['recall'])}"),
            (
                f"F{figures['beta']}",
                "-" if figures["f_beta"] is None else f"{figures['f_beta']:.3f}",
            ),
        ]
    for name, value in rows:
        summary.add_row(name, value)
    console.print(summary)

    categories = Table(title="per category")
    for column in (
        "category",
        "requests",
        "hit rate",
        "saved",
        "false hits",
        "precision",
        "break-even hit rate",
        "bypassed: why",
    ):
        categories.add_column(column, justify="right" if column != "category" else "left")
    for name, c in figures["by_category"].items():
        categories.add_row(
            name,
            str(c["requests"]),
            _share(c["hit_rate"]),
            _money(c["cost_saved_usd"]),
            str(c["false_hits"]) if workload["labelled"] else "-",
            _share(c["precision"]),
            _share(c["break_even_hit_rate"]),
            _reasons(c["bypass_reasons"]),
        )
    console.print(categories)

    if figures["near_misses"]:
        near = Table(title="misses nearest to their threshold")
        for column in ("line", "category", "nearest", "threshold", "prompt"):
            near.add_column(column)
        for m in figures["near_misses"]:
            near.add_row(
                str(m["line"]),
                m["category"],
                f"{m['nearest']:.3f}",
                f"{m['threshold']:.3f}",
                m["text"][:70],
            )
        console.print(near)

    if figures["threshold_sweep"]:
        sweep = Table(title="one threshold for every category (estimate)")
        for column in ("threshold", "hit rate", "false hits", "precision", "saved"):
            sweep.add_column(column, justify="right")
        for row in figures["threshold_sweep"]:
            sweep.add_row(
                f"{row['threshold']:.2f}",
                _share(row["hit_rate"]),
                "-" if row["false_hits"] is None else str(row["false_hits"]),
                _share(row["precision"]),
                _money(row["cost_saved_usd"]),
            )
        console.print(sweep)
    if workload["malformed"]:
        lines = ", ".join(str(m["line"]) for m in workload["malformed"][:20])
        console.print(
            f"[yellow]{len(workload['malformed'])} malformed line(s) skipped: {lines}[/yellow]"
        )
