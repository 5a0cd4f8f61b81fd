"""Number formats and Markdown tables for the benchmark's report."""

from __future__ import annotations

from typing import Optional


def f0(v: Optional[float]) -> str:
    return "–" if v is None else f"{v:,.0f}"


def f1(v: Optional[float]) -> str:
    return "–" if v is None else f"{v:,.1f}"


def us(v: Optional[float]) -> str:
    """Microseconds, shown in ms from 1,000 µs up."""
    if v is None:
        return "–"
    return f"{v / 1000:,.2f} ms" if v >= 1000 else f"{v:,.0f} µs"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)
