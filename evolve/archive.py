"""MAP-Elites logic over the store: cells, parent sampling, inspirations.

The grid's axes are fixed by the problem (values outside clamp to the edge
bins; bins never rescale, so a stored elite never drifts out of its cell).
Each island has its own grid. Parent sampling mixes

* **exploit**: an elite, weighted by ``sigmoid(2·(f − median)/MAD) / (1 + children)``,
  which favours good parents that have not been expanded much;
* **explore**: an elite uniformly over the island's filled cells;
* **random**: any valid program of the island.

The two baseline strategies use the same store but not the grid:
``repeated-sampling`` always proposes from the initial program with nothing
from the archive in the prompt; ``hill-climb`` always from the campaign's best
program (with the island's recent failures, so it does not repeat them). A
crossover's second parent (``mate``) is an elite of another island, or of
another cell of the same island when there is one island.

All randomness comes from the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from evolve.config import ArchiveConfig, SamplingConfig
from evolve.cvt import WARMUP_CELL, Centroids
from evolve.problem import FeatureAxis
from evolve.store import EliteRow, Store
from evolve.values import Program

__all__ = ["Archive", "Sample", "SampleMode", "cell_key", "exploit_weights"]


class SampleMode(enum.StrEnum):
    EXPLOIT = "exploit"
    EXPLORE = "explore"
    RANDOM = "random"
    INITIAL = "initial"  # repeated sampling
    BEST = "best"  # hill climbing


def cell_key(features: dict[str, float], axes: list[FeatureAxis]) -> str:
    """The grid cell of a feature vector, as ``"i,j,..."`` (``"0"`` with no axes).

    Raises:
        KeyError: when a feature of an axis is missing (callers validate first).
    """
    if not axes:
        return "0"
    return ",".join(str(axis.bin(features[axis.name])) for axis in axes)


def exploit_weights(elites: list[EliteRow]) -> np.ndarray:
    """Sampling weights of elites for exploitation (positive, summing to 1)."""
    f = np.array([e.fitness for e in elites], dtype=np.float64)
    children = np.array([e.n_children for e in elites], dtype=np.float64)
    median = float(np.median(f))
    mad = float(np.median(np.abs(f - median))) * 1.4826
    z = (f - median) / mad if mad > 0 else np.zeros_like(f)
    w: np.ndarray = 1.0 / (1.0 + np.exp(-2.0 * np.clip(z, -30, 30))) / (1.0 + children)
    normalized: np.ndarray = w / w.sum()
    return normalized


@dataclass(frozen=True, slots=True)
class Sample:
    """A parent and the context that goes into its prompt."""

    parent: Program
    mode: SampleMode
    inspirations: list[Program]
    failures: list[Program]


class Archive:
    """Reads and samples one campaign's per-island MAP-Elites grids."""

    def __init__(self, store: Store, campaign_id: str, *, axes: list[FeatureAxis], sampling: SamplingConfig,
                 cells: ArchiveConfig | None = None) -> None:
        self._store = store
        self._campaign_id = campaign_id
        self.axes = axes
        self._sampling = sampling
        self._initial_program: Program | None = None
        self.cvt = cells is not None and cells.kind == "cvt"
        self.centroids: Centroids | None = None  # a CVT archive's, once chosen (evolve.cvt)

    def _initial(self) -> Program:
        if self._initial_program is None:
            self._initial_program = self._store.initial_program(self._campaign_id)
        return self._initial_program

    def cell(self, features: dict[str, float]) -> str:
        if not self.cvt:
            return cell_key(features, self.axes)
        return WARMUP_CELL if self.centroids is None else self.centroids.cell(features)

    def choose_mode(self, rng: np.random.Generator) -> SampleMode:
        s = self._sampling
        modes = [SampleMode.EXPLOIT, SampleMode.EXPLORE, SampleMode.RANDOM]
        return modes[int(rng.choice(3, p=[s.exploit, s.explore, s.random]))]

    def failures(self, island: int) -> list[Program]:
        return [
            p for p in self._store.recent_programs(self._campaign_id, island, 20) if not p.status.is_ok
        ][: self._sampling.recent_failures]

    def sample(self, island: int, rng: np.random.Generator, *, strategy: str = "evolve") -> Sample:
        """Draw a parent (and inspirations, recent failures) for ``island`` as ``strategy`` says."""
        if strategy == "repeated-sampling":
            return Sample(parent=self._initial(), mode=SampleMode.INITIAL, inspirations=[], failures=[])
        if strategy == "hill-climb":
            best = self._store.best_program(self._campaign_id) or self._initial()
            return Sample(parent=best, mode=SampleMode.BEST, inspirations=[], failures=self.failures(island))
        elites = self._store.elites(self._campaign_id, island)
        if not elites:  # an island is seeded with the initial program, so this means a broken store
            elites = self._store.elites(self._campaign_id)
        mode = self.choose_mode(rng)
        parent_id: str | None = None
        if mode is SampleMode.RANDOM:
            parent_id = self._store.random_program_id(self._campaign_id, island, float(rng.random()))
        if parent_id is None and mode is SampleMode.EXPLOIT:
            parent_id = elites[int(rng.choice(len(elites), p=exploit_weights(elites)))].program_id
        if parent_id is None:
            parent_id = elites[int(rng.integers(len(elites)))].program_id
        inspiration_ids = self._inspirations(elites, parent_id, rng)
        loaded = self._store.get_programs([parent_id, *inspiration_ids])
        return Sample(
            parent=loaded[parent_id],
            mode=mode,
            inspirations=[loaded[i] for i in inspiration_ids if i in loaded],
            failures=self.failures(island),
        )

    def mate(self, island: int, parent: Program, rng: np.random.Generator, *, islands: int) -> Program | None:
        """A second parent for a crossover with ``parent``: an elite of another island (weighted as exploitation), or of
        another cell when there is one island; None when every elite is the parent's own program or code."""
        pool = self._store.elites(self._campaign_id)
        others = [e for e in pool if e.island != island] if islands > 1 else [e for e in pool if e.cell != parent.cell]
        programs = self._store.get_programs(sorted({e.program_id for e in others}))
        # an elite row may be a migrated copy of this island's own program, and the initial program is every island's
        usable = [e for e in others if (p := programs.get(e.program_id)) is not None and p.iteration > 0
                  and p.id != parent.id and p.code != parent.code and (islands == 1 or p.island != island)]
        if not usable:
            return None
        return programs[usable[int(rng.choice(len(usable), p=exploit_weights(usable)))].program_id]

    def _inspirations(self, elites: list[EliteRow], parent_id: str, rng: np.random.Generator) -> list[str]:
        others = [e for e in elites if e.program_id != parent_id]
        seen: set[str] = set()
        top: list[str] = []
        for e in others:  # elites arrive best first
            if len(top) >= self._sampling.top_inspirations:
                break
            if e.program_id not in seen:
                seen.add(e.program_id)
                top.append(e.program_id)
        rest = [e.program_id for e in others if e.program_id not in seen]
        k = min(self._sampling.diverse_inspirations, len(rest))
        diverse = [rest[int(i)] for i in rng.choice(len(rest), size=k, replace=False)] if k else []
        return top + diverse
