"""The pass test of a cascade stage, shared by the evaluator process and the controller.

Kept free of heavy imports: the evaluator process loads it at start-up.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["threshold_failure"]


def threshold_failure(threshold: dict[str, Any] | None, metrics: Any) -> str | None:
    """Why ``metrics`` do not pass ``threshold`` (``{metric, at_least, at_most}``), or None when they do."""
    if threshold is None:
        return None
    name = threshold["metric"]
    value = metrics.get(name) if isinstance(metrics, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return f"the threshold metric '{name}' is missing or not a finite number"
    if threshold.get("at_least") is not None and not value >= threshold["at_least"]:
        return f"{name} = {value:.6g} is below the threshold (at least {threshold['at_least']:.6g})"
    if threshold.get("at_most") is not None and not value <= threshold["at_most"]:
        return f"{name} = {value:.6g} is above the threshold (at most {threshold['at_most']:.6g})"
    return None
