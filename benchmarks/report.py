"""The one place for the benchmarks' statistics and output: interleaved runs, warm-ups, spreads, JSON and markdown.

- ``interleave`` runs the things compared round-robin, one run of each per
  repetition (the order rotating from one repetition to the next), and drops
  the first ``warmups`` repetitions, so a drift of the machine (another job,
  the page cache, a CPU's clock) falls on all of them alike.
- ``summarize`` gives the median of a figure's runs and its spread: the 90th
  percentile by nearest rank when there are at least ``P90_MIN_RUNS`` runs,
  else the minimum and the maximum (with 7 runs the nearest-rank p90 is the
  maximum, so it is labelled as one); ``cell`` and ``spread_note`` say which.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["P90_MIN_RUNS", "cell", "interleave", "machine", "spread_note", "summarize", "write_results"]

P90_MIN_RUNS = 10
T = TypeVar("T")
R = TypeVar("R")


def machine() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{platform.node()} · {os.cpu_count()} cores · Python {platform.python_version()} · load average at the end {load}"


def interleave(configs: Sequence[T], run: Callable[[T], R], *, runs: int, warmups: int = 1,
               log: Callable[[T, R], None] | None = None) -> list[list[R]]:
    """``runs`` measured runs of every config (after ``warmups`` discarded ones), round-robin; results per config, in order."""
    kept: list[list[R]] = [[] for _ in configs]
    for rep in range(warmups + runs):
        for k in range(len(configs)):
            index = (rep + k) % len(configs)
            result = run(configs[index])
            if log is not None:
                log(configs[index], result)
            if rep >= warmups:
                kept[index].append(result)
    return kept


def summarize(samples: Sequence[float], digits: int = 1) -> dict[str, Any]:
    """``n`` and ``median``; ``p90`` (nearest rank) with at least ``P90_MIN_RUNS`` samples, else ``min`` and ``max``."""
    ordered = sorted(samples)
    if not ordered:
        return {"n": 0}
    out: dict[str, Any] = {"n": len(ordered), "median": round(statistics.median(ordered), digits)}
    if len(ordered) >= P90_MIN_RUNS:
        out["p90"] = round(ordered[math.ceil(0.9 * len(ordered)) - 1], digits)
    else:
        out["min"], out["max"] = round(ordered[0], digits), round(ordered[-1], digits)
    return out


def cell(summary: dict[str, Any], digits: int = 1, *, signed: bool = False) -> str:
    """A table cell: ``median (p90 X)`` or ``median (min to max)``, the median alone for one run; ``—`` for nothing measured."""
    if not summary.get("n"):
        return "—"
    sign = "+" if signed else ""
    median = f"{summary['median']:{sign}.{digits}f}"
    if summary["n"] == 1:
        return median
    if "p90" in summary:
        return f"{median} (p90 {summary['p90']:{sign}.{digits}f})"
    return f"{median} ({summary['min']:{sign}.{digits}f} to {summary['max']:{sign}.{digits}f})"


def spread_note(n: int) -> str:
    """What a cell of ``cell`` means, for a table's caption."""
    if n == 1:
        return "one run (no spread)"
    if n >= P90_MIN_RUNS:
        return f"median (nearest-rank 90th percentile) of {n} runs"
    return f"median (minimum to maximum) of {n} runs, too few for a 90th percentile"


def write_results(out: Path, name: str, data: dict[str, Any], tables: dict[str, list[str]]) -> None:
    """``NAME.json`` (``data`` with the machine added) and one markdown file per table (``TABLE.md``) under ``out``; prints them."""
    out.mkdir(parents=True, exist_ok=True)
    data = {**data, "meta": {"machine": machine(), **data.get("meta", {})}}
    (out / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
    for table, lines in tables.items():
        text = "\n".join(lines) + "\n"
        (out / f"{table}.md").write_text(text)
        print(f"{table}.md:\n{text}")
