"""What every benchmark shares: the machine's description, median and 90th percentile, writing JSON and markdown."""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
from pathlib import Path
from typing import Any

__all__ = ["machine", "percentiles", "write_results"]


def machine() -> str:
    return f"{platform.node()} · {os.cpu_count()} cores · Python {platform.python_version()}"


def percentiles(samples: list[float], digits: int = 1) -> dict[str, float]:
    """Median and 90th percentile (nearest rank) of timings in milliseconds."""
    ordered = sorted(samples)
    p90 = ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]
    return {"median_ms": round(statistics.median(ordered), digits), "p90_ms": round(p90, digits)}


def write_results(out: Path, name: str, data: dict[str, Any], lines: list[str]) -> None:
    """``NAME.json`` (``data`` with the machine added) and ``NAME.md`` (``lines``) under ``out``; prints the table."""
    out.mkdir(parents=True, exist_ok=True)
    data = {**data, "meta": {"machine": machine(), **data.get("meta", {})}}
    (out / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
    table = "\n".join(lines) + "\n"
    (out / f"{name}.md").write_text(table)
    print(table)
