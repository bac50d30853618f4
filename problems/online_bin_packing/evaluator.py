"""Trusted evaluator of online_bin_packing: this process owns the items and packs them one at a time.

Every evaluation draws new instances from a seed that only this process
knows (``secrets``): FunSearch's Weibull 5k items (capacity 100) and
OR-Library-style uniform items (capacity 150). The bins follow FunSearch's
rule: all of them exist from the start, empty, at full capacity, and each
item goes into the bin with the highest priority among the bins that can
hold it, ties to the lowest index. This process keeps the bins. For each item
it sends the candidate, through one sandboxed session, the item and the
remaining capacities of the bins that can hold it — the non-empty ones in
order of first use, then one empty bin (all empty bins are alike, and a tie
would go to the first) — and puts the item where ``priority`` scores highest.
The instances are packed side by side, one item of each per round trip.

So the candidate never sees an item before it must place it: it cannot plan
ahead, regenerate the instances or replay a packing, whatever it keeps
between calls. The score is the percent of bins used over the L1 lower bound
ceil(total size / capacity).
"""

from __future__ import annotations

import math
import secrets
from typing import Any, NamedTuple

import numpy as np

from evolve.evaluators import Candidate, Invalid, as_array, as_list

# A packing that has used this many times its lower bound is stopped: its excess is certain to be over 25%,
# six times best fit's, and a priority that bad keeps so many bins with room open that each item's query grows
# into the thousands (worst fit would take minutes).
GIVE_UP = 1.25
ENTRY = "priorities"  # the initial program's frozen wrapper: ``priority`` on a list of [item, bins] queries


class Family(NamedTuple):
    """A distribution of instances and how many of them an evaluation packs (a NamedTuple: evaluator.py is
    loaded outside ``sys.modules``, where dataclasses cannot resolve their module)."""

    kind: str
    items: int
    capacity: int
    instances: int


WEIBULL = Family("weibull", items=5000, capacity=100, instances=10)
UNIFORM = Family("uniform", items=500, capacity=150, instances=10)
FAMILIES = (WEIBULL, UNIFORM)


def draw(family: Family, rng: np.random.Generator) -> np.ndarray:
    """The item sizes of one instance of ``family``."""
    if family.kind == "weibull":
        # floor(45 * Weibull(3)) in [1, 100]: the mean item of FunSearch's five published instances is 39.75;
        # floor gives 39.7, rounding would give 40.2
        return np.clip(np.floor(45.0 * rng.weibull(3.0, size=family.items)), 1, family.capacity)
    return rng.integers(20, 101, size=family.items).astype(np.float64)


def secret_instances(families: tuple[Family, ...] = FAMILIES, *, scale: int = 1) -> list[tuple[str, np.ndarray, int]]:
    """Fresh instances (``scale`` times each family's count) from a seed drawn here and never shown to the candidate.

    Each is ``(label, items, capacity)``.
    """
    streams = iter(np.random.SeedSequence(secrets.randbits(128)).spawn(scale * sum(f.instances for f in families)))
    return [(f"{f.kind} instance {i}", draw(f, np.random.default_rng(next(streams))), f.capacity)
            for f in families for i in range(scale * f.instances)]


class _Bins:
    """One instance being packed: the remaining capacity of each bin in use, in order of first use.

    Sizes and capacities are whole numbers, sent as JSON integers (shorter and quicker to parse than floats).
    """

    def __init__(self, label: str, items: np.ndarray, capacity: int) -> None:
        self.label, self.items, self.capacity = label, items.astype(np.int64), capacity
        self.bound = math.ceil(int(self.items.sum()) / capacity)  # L1 lower bound on the bins needed
        self.remaining = np.empty(len(items), dtype=np.int64)
        self.used = 0
        self._fits = np.empty(0, dtype=np.int64)

    def offer(self, t: int) -> list[Any]:
        """The query for item ``t``: its size and the bins that can hold it (those in use that fit, then an empty one)."""
        item = self.items[t]
        self._fits = np.flatnonzero(self.remaining[: self.used] >= item)
        return [int(item), [*self.remaining[self._fits].tolist(), self.capacity]]

    def place(self, t: int, raw: Any) -> None:
        """Put item ``t`` into the offered bin that ``raw`` (the candidate's scores) ranks first.

        Raises:
            Invalid: when the scores are not one finite number per offered bin, or when this instance
                already uses more than ``GIVE_UP`` times its lower bound.
        """
        item = int(self.items[t])
        offered = len(self._fits) + 1
        if isinstance(raw, np.ndarray) and raw.shape == (offered,) and raw.dtype.kind in "iuf" and np.isfinite(raw).all():
            scores = raw  # the common case, checked without building the message
        else:
            scores = as_array(raw, f"{self.label}: priority() at item {t} (size {item}, {offered} bins offered)",
                              shape=(offered,))
        k = int(np.argmax(scores))  # the first of equal scores: the lowest index
        if k < len(self._fits):
            self.remaining[self._fits[k]] -= item
            return
        self.remaining[self.used] = self.capacity - item
        self.used += 1
        if self.used > GIVE_UP * self.bound:
            raise Invalid(f"{self.label}: item {t} opens bin {self.used}, more than {GIVE_UP - 1:.0%} over the lower bound "
                          f"of {self.bound} bins for the whole instance (best fit uses about 4% more); the packing is "
                          "stopped there")

    def excess(self) -> float:
        """Percent of bins used over the L1 lower bound."""
        return 100.0 * (self.used / self.bound - 1.0)


def pack(candidate: Candidate, instances: list[tuple[str, np.ndarray, int]]) -> list[float]:
    """Pack ``instances`` side by side through the candidate's ``priority``; each one's percent excess.

    Raises:
        Invalid: when a priority answer is malformed (the message names the instance and the item), or a
            packing goes far beyond its lower bound.
        CandidateError: when the candidate crashes or runs out of time (``CandidateTimeout``).
    """
    packings = [_Bins(label, items, capacity) for label, items, capacity in instances]
    with candidate.session(ENTRY) as session:
        for t in range(max(len(p.items) for p in packings)):
            active = [p for p in packings if t < len(p.items)]
            answers = as_list(session.call([p.offer(t) for p in active]), f"{ENTRY}() result at item {t}", length=len(active))
            for p, raw in zip(active, answers, strict=True):
                p.place(t, raw)
    return [p.excess() for p in packings]


def _score(candidate: Candidate, *, scale: int = 1) -> dict[str, Any]:
    instances = secret_instances(scale=scale)
    excess = pack(candidate, instances)
    by_kind = {f.kind: [e for (label, _i, _c), e in zip(instances, excess, strict=True) if label.startswith(f.kind)]
               for f in FAMILIES}
    return {"metrics": {f"excess_{kind}": float(np.mean(values)) for kind, values in by_kind.items()},
            "artifacts": {"excess_per_instance": "; ".join(f"{kind}: " + ", ".join(f"{e:.2f}" for e in values)
                                                           for kind, values in by_kind.items())}}


def evaluate(candidate: Candidate) -> dict[str, Any]:
    return _score(candidate)


def evaluate_held_out(candidate: Candidate) -> dict[str, Any]:
    # Another secret draw, twice as large for a sharper figure. Instances that are new at every evaluation and only
    # ever shown one item at a time leave nothing for a program to learn, so there is no fixed held-out set to guard.
    return _score(candidate, scale=2)
