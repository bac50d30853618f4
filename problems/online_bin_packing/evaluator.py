"""Trusted evaluator of online_bin_packing.

The candidate's ``pack_all`` packs generated instances (OR-Library-style
uniform items and the Weibull items of FunSearch) and returns each item's bin.
This process checks the packing (every item in exactly one bin, bins opened in
order, no bin over capacity) and counts bins against the L1 lower bound
ceil(sum / capacity). Then it checks that the packing is the online greedy it
claims to be: at randomly chosen steps (different every evaluation) it
rebuilds the open bins' state from the assignment, asks the candidate's
``priority`` alone, in a fresh process, to rank the bins, and requires the
chosen bin to be the first best one. A program that looks ahead, patches the
packing loop or is not deterministic fails that check.
"""

from __future__ import annotations

import math
import secrets
from typing import Any

import numpy as np

from evolve.evaluators import Candidate, Invalid, as_array, as_list

CHECKS_PER_INSTANCE = 60
# (distribution, seed); sizes follow FunSearch: OR-Library-style uniform 500 items, Weibull 5000 items
SEARCH = (("uniform", 1), ("uniform", 2), ("weibull", 1), ("weibull", 2))
HELD_OUT = (("uniform", 101), ("uniform", 102), ("weibull", 101), ("weibull", 102))


def instance(kind: str, seed: int) -> tuple[np.ndarray, int]:
    """Integer item sizes and the bin capacity of one generated instance."""
    rng = np.random.default_rng([7919, seed, 0 if kind == "uniform" else 1])
    if kind == "uniform":
        return rng.integers(20, 101, size=500).astype(np.float64), 150
    return np.clip(np.round(rng.weibull(3.0, size=5000) * 45), 1, 100).astype(np.float64), 100


def check_packing(items: np.ndarray, capacity: int, assignment: np.ndarray, what: str) -> int:
    """The number of bins of a valid packing.

    Raises:
        Invalid: naming the first broken rule.
    """
    if assignment[0] != 0:
        raise Invalid(f"{what}: the first item must open bin 0, got bin {assignment[0]}")
    opened_before = np.maximum.accumulate(assignment)[:-1] + 1
    skips = np.flatnonzero(assignment[1:] > opened_before)
    if skips.size:
        i = int(skips[0]) + 1
        raise Invalid(f"{what}: item {i} goes to bin {assignment[i]} but only {opened_before[i - 1]} bins are open; "
                      "bins must be numbered in order of opening")
    loads = np.bincount(assignment, weights=items)
    over = np.flatnonzero(loads > capacity)
    if over.size:
        raise Invalid(f"{what}: bin {int(over[0])} holds {loads[over[0]]:g}, over the capacity {capacity}")
    return int(assignment.max()) + 1


def _decisions(items: np.ndarray, capacity: int, assignment: np.ndarray, steps: np.ndarray) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """At each of ``steps``: the step, the open bins the item fits (indices) and their remaining capacities."""
    remaining = np.zeros(len(items))
    opened = 0
    wanted = set(steps.tolist())
    found = []
    for t, (item, chosen) in enumerate(zip(items, assignment, strict=True)):
        if t in wanted:
            fits = np.flatnonzero(remaining[:opened] >= item)
            found.append((t, fits, remaining[fits].copy()))
        if chosen == opened:
            remaining[opened] = capacity
            opened += 1
        remaining[chosen] -= item
    return found


def _check_online(candidate: Candidate, packed: list[tuple[str, np.ndarray, int, np.ndarray]]) -> None:
    """Every sampled decision is the first best bin by ``priority`` alone (or a new bin when none fits)."""
    rng = np.random.default_rng(secrets.randbits(64))
    checks = []
    for what, items, capacity, assignment in packed:
        steps = np.sort(rng.choice(len(items), size=min(CHECKS_PER_INSTANCE, len(items)), replace=False))
        checks += [(what, items, assignment, *d) for d in _decisions(items, capacity, assignment, steps)]
    queries = [[float(items[t]), rem.tolist()] for _what, items, _a, t, fits, rem in checks if fits.size]
    answers = iter(as_list(candidate.call("priorities", queries), "priorities() result", length=len(queries)))
    for what, _items, assignment, t, fits, _rem in checks:
        if not fits.size:
            expected = int(assignment[:t].max(initial=-1)) + 1  # nothing fits: a new bin
        else:
            scores = as_array(next(answers), f"{what}: priority() at item {t}", shape=(len(fits),))
            expected = int(fits[int(np.argmax(scores))])
        if assignment[t] != expected:
            raise Invalid(f"{what}: item {t} went to bin {assignment[t]}, but priority() alone ranks bin {expected} first; "
                          "the packing must follow priority() online (no look-ahead, deterministic)")


def _score(candidate: Candidate, specs: tuple[tuple[str, int], ...]) -> dict[str, Any]:
    instances = [instance(kind, seed) for kind, seed in specs]
    raw = candidate.call("pack_all", [[items.astype(int).tolist(), capacity] for items, capacity in instances])
    results = as_list(raw, "pack_all() result", length=len(instances))
    excess: dict[str, list[float]] = {"uniform": [], "weibull": []}
    packed = []
    for (kind, seed), (items, capacity), answer in zip(specs, instances, results, strict=True):
        what = f"{kind} instance {seed}"
        assignment = as_array(answer, f"{what}: assignment", shape=(len(items),), integer=True, low=0, high=len(items) - 1)
        bins = check_packing(items, capacity, assignment, what)
        packed.append((what, items, capacity, assignment))
        excess[kind].append(100.0 * (bins / math.ceil(items.sum() / capacity) - 1.0))
    _check_online(candidate, packed)
    return {"metrics": {"excess_weibull": float(np.mean(excess["weibull"])), "excess_uniform": float(np.mean(excess["uniform"]))}}


def evaluate(candidate: Candidate) -> dict[str, Any]:
    return _score(candidate, SEARCH)


def evaluate_held_out(candidate: Candidate) -> dict[str, Any]:
    return _score(candidate, HELD_OUT)
