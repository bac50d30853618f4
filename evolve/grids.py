"""Does a campaign's MAP-Elites grid fit what its programs reach? The warning status displays give when it does not.

A grid only diversifies the search if the programs spread over it: an axis
whose range is far wider than the values the programs take puts every
program into one or two of its bins, and the archive is one-dimensional in
practice. The elites' cells are exactly the cells any valid program fell
into, so the bins an axis has filled are the distinct indices of that axis
among the elite cells; their programs' feature values say what range the
programs actually cover.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from evolve.problem import FeatureAxis
from evolve.store import Store

__all__ = ["MIN_PROGRAMS", "AxisFit", "grid_fit", "grid_warnings"]

_GRID_CELL = re.compile(r"\d+(,\d+)*")
MIN_PROGRAMS = 100  # proposals before a judgement: fewer say little about where programs go
_FEW_BINS = 2


@dataclass(frozen=True, slots=True)
class AxisFit:
    name: str
    bins: int
    filled: int
    low: float | None  # the elites' smallest and largest value of the feature
    high: float | None
    range_min: float
    range_max: float

    @property
    def too_wide(self) -> bool:
        return self.bins > _FEW_BINS and self.filled <= _FEW_BINS

    def warning(self, programs: int) -> str:
        seen = "" if self.low is None or self.high is None else f" (its elites' values lie in [{self.low:.4g}, {self.high:.4g}])"
        return (f"grid axis '{self.name}': after {programs} programs only {self.filled} of its {self.bins} bins hold any "
                f"program{seen}, so the archive barely diversifies along it; narrow its range [{self.range_min:g}, "
                f"{self.range_max:g}] in the problem's problem.yaml to what the programs reach")


def grid_fit(store: Store, campaign_id: str, axes: list[FeatureAxis]) -> list[AxisFit]:
    """How many bins of each axis the campaign's programs have filled, and the values its elites have."""
    elites = [(cell, features) for cell, features in store.elite_features(campaign_id) if _GRID_CELL.fullmatch(cell)]
    if not elites:  # a CVT archive's cells (evolve.cvt) are not bins of the axes
        return []
    out = []
    for i, axis in enumerate(axes):
        indices = {cell.split(",")[i] for cell, _ in elites if len(cell.split(",")) == len(axes)}
        values = [f[axis.name] for _, f in elites if axis.name in f]
        out.append(AxisFit(name=axis.name, bins=axis.bins, filled=len(indices), low=min(values, default=None),
                           high=max(values, default=None), range_min=axis.min, range_max=axis.max))
    return out


def grid_warnings(store: Store, campaign_id: str, axes: list[FeatureAxis], *, programs: int) -> list[str]:
    """A warning per axis of which at most two bins are filled after ``MIN_PROGRAMS`` programs (none before)."""
    if programs < MIN_PROGRAMS or not axes:
        return []
    return [fit.warning(programs) for fit in grid_fit(store, campaign_id, axes) if fit.too_wide]
