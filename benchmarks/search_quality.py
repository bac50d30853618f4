"""Search quality per model call: the best score after N proposals, by strategy and feature, over seeds.

    .venv/bin/python benchmarks/search_quality.py [--proposals 200] [--seeds 5] [--out benchmarks/results]

Every campaign runs with the defaults a user gets (``CampaignConfig()``: one
island per 250 proposals, MAP-Elites sampling, dedup on, the novelty filter on
"auto", which is off for the mutator) and the
built-in ``mutator`` as the model: it perturbs one to three numeric literals
(sometimes an operator) inside the EVOLVE-BLOCK and answers with SEARCH/REPLACE
blocks, seeded per request, which is the stand-in the peers were measured
with. With such a model only selection and depth matter, which is what this
compares. The problems are ``benchmarks/problems/circles_ring16`` (the most
popular peer's example construction, 0.96) and ``circles_ring17`` (the most
sample-efficient peer's, 0.98), scored by the built-in circle_packing evaluator.

Reported per problem and configuration: the median best sum of radii over the
seeds and its range; per seed, whether ``evolve`` beat repeated sampling and
matched hill-climbing on the same seed; how many proposals were evaluated and
how many evaluations dedup and the novelty filter saved; the share of
evaluations spent on a program evaluated before (with dedup off, today's
waste; with it on, what slips through). The bandit part runs an ensemble of
the mutator and a useless stand-in (an OpenAI-compatible server on loopback
whose every answer is no edit) with fixed equal weights and with
``selection: bandit``, and reports the share of proposals the useful model got.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.report import machine, write_results
from benchmarks.standin import running
from evolve.campaign import Campaign
from evolve.config import CampaignConfig
from evolve.novelty import code_key
from evolve.problem import resolve_problem
from evolve.store import Store
from evolve.values import EvalStatus

HERE = Path(__file__).resolve().parent
PROBLEMS = {"ring16 (popular peer's example)": HERE / "problems" / "circles_ring16",
            "ring17 (sample-efficient peer's example)": HERE / "problems" / "circles_ring17"}
NOT_EVALUATED = {EvalStatus.UNCHANGED, EvalStatus.DUPLICATE, EvalStatus.NEAR_DUPLICATE, EvalStatus.DIFF_FAILED, EvalStatus.LLM_FAILED}
MUTATOR: dict[str, Any] = {"name": "mutator"}


@dataclass(frozen=True)
class Variant:
    label: str
    search: dict[str, Any]
    config: tuple[tuple[str, Any], ...] = ()  # other campaign settings than the defaults


@dataclass(frozen=True)
class Outcome:
    best: float
    initial: float
    evaluated: int
    duplicates: int  # recorded as duplicates, not evaluated
    near_duplicates: int
    repeat_evaluations: int  # evaluations of a program evaluated before (what dedup should make 0)
    proposals_by_model: dict[str, int]
    seconds: float


def run_one(problem_dir: Path, variant: Variant, *, seed: int, proposals: int, models: list[dict[str, Any]]) -> Outcome:
    problem = resolve_problem(str(problem_dir))
    config = CampaignConfig.model_validate({"models": models, "iterations": proposals, "seed": seed, "search": variant.search,
                                            **dict(variant.config)})
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="evolve-sq-") as tmp:
        store = Store.open(str(Path(tmp) / "run.db"))
        try:
            campaign = asyncio.run(Campaign.create(store, problem, config, workdir=Path(tmp)))
            asyncio.run(campaign.run())
            programs = store.list_programs(campaign.id)
        finally:
            store.close()
    seen: set[str] = set()
    repeats = 0
    for p in programs:
        if p.iteration == 0 or p.status in NOT_EVALUATED:
            seen.add(code_key(p.code))
            continue
        key = code_key(p.code)
        repeats += key in seen
        seen.add(key)
    by_model: dict[str, int] = {}
    for p in programs[1:]:
        by_model[p.model or "?"] = by_model.get(p.model or "?", 0) + 1
    scored = [p.score for p in programs if p.status is EvalStatus.OK and p.score is not None]
    return Outcome(
        best=max(scored), initial=programs[0].score or 0.0,
        evaluated=sum(1 for p in programs[1:] if p.status not in NOT_EVALUATED),
        duplicates=sum(1 for p in programs if p.status is EvalStatus.DUPLICATE),
        near_duplicates=sum(1 for p in programs if p.status is EvalStatus.NEAR_DUPLICATE),
        repeat_evaluations=repeats, proposals_by_model=by_model, seconds=time.monotonic() - started,
    )


def _row(problem: str, variant: Variant, outcomes: list[Outcome]) -> dict[str, Any]:
    bests = [o.best for o in outcomes]
    evaluated = sum(o.evaluated for o in outcomes)
    return {
        "problem": problem, "variant": variant.label, "seeds": len(outcomes), "best": bests,
        "median": statistics.median(bests), "min": min(bests), "max": max(bests),
        "initial": outcomes[0].initial, "evaluated": evaluated, "duplicates": sum(o.duplicates for o in outcomes),
        "near_duplicates": sum(o.near_duplicates for o in outcomes),
        "repeat_share_pct": 100 * sum(o.repeat_evaluations for o in outcomes) / max(1, evaluated),
        "proposals_by_model": {m: sum(o.proposals_by_model.get(m, 0) for o in outcomes)
                               for m in sorted({m for o in outcomes for m in o.proposals_by_model})},
        "seconds": sum(o.seconds for o in outcomes),
    }


@contextlib.contextmanager
def _garbage() -> Iterator[dict[str, Any]]:
    with running(garbage=True, name="garbage") as spec:
        yield spec


STRATEGIES = [
    Variant("evolve (defaults)", {}),
    Variant("repeated-sampling", {"strategy": "repeated-sampling"}),
    Variant("hill-climb", {"strategy": "hill-climb"}),
    Variant("evolve, dedup off", {"dedup": False}),
    Variant("evolve, 4 islands (the default before budget-scaled islands)", {}, (("islands", 4),)),
    Variant("evolve, novelty forced on (0.98, retry)", {"novelty": {"enabled": "on"}}),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proposals", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--quick", action="store_true", help="2 seeds of 30 proposals: checks the script, means nothing")
    args = parser.parse_args()
    if args.quick:
        args.proposals, args.seeds = 30, 2
    seeds = list(range(1, args.seeds + 1))
    rows: list[dict[str, Any]] = []
    per_seed: dict[tuple[str, str], list[float]] = {}
    for problem, folder in PROBLEMS.items():
        for variant in STRATEGIES:
            outcomes = [run_one(folder, variant, seed=s, proposals=args.proposals, models=[MUTATOR]) for s in seeds]
            rows.append(_row(problem, variant, outcomes))
            per_seed[(problem, variant.label)] = [o.best for o in outcomes]
            print(f"{problem} · {variant.label}: median {rows[-1]['median']:.4f} ({rows[-1]['min']:.4f}–{rows[-1]['max']:.4f})",
                  flush=True)
    comparisons = []
    for problem in PROBLEMS:
        ev = per_seed[(problem, "evolve (defaults)")]
        rs, hc = per_seed[(problem, "repeated-sampling")], per_seed[(problem, "hill-climb")]
        comparisons.append({"problem": problem, "beats_repeated_sampling": sum(a > b for a, b in zip(ev, rs, strict=True)),
                            "at_least_hill_climb": sum(a >= b for a, b in zip(ev, hc, strict=True)), "seeds": len(ev)})
    bandit_rows = []
    with _garbage() as garbage:
        folder = PROBLEMS["ring17 (sample-efficient peer's example)"]
        for label, search in (("equal weights", {}), ("bandit", {"selection": "bandit"})):
            variant = Variant(f"mutator + useless model, {label}", search)
            outcomes = [run_one(folder, variant, seed=s, proposals=args.proposals, models=[MUTATOR, garbage]) for s in seeds]
            row = _row("ring17 (sample-efficient peer's example)", variant, outcomes)
            total = sum(row["proposals_by_model"].values())
            row["useful_share_pct"] = 100 * row["proposals_by_model"].get("mutator", 0) / max(1, total)
            bandit_rows.append(row)
            print(f"bandit · {label}: useful share {row['useful_share_pct']:.1f}%, median best {row['median']:.4f}", flush=True)
    results = {"meta": {"machine": machine(), "proposals": args.proposals, "seeds": seeds, "quick": args.quick},
               "rows": rows, "comparisons": comparisons, "bandit": bandit_rows}
    write_results(args.out, "search_quality", results, {"search_quality": markdown(results)})


def markdown(results: dict[str, Any]) -> list[str]:
    meta = results["meta"]
    lines = [f"{meta['proposals']} proposals per campaign, seeds {meta['seeds']}, the mutator as the model ({meta['machine']}).", "",
             "| problem | configuration | median best | range | evaluated | dedup saved | novelty saved | repeat evaluations |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results["rows"]:
        lines.append(f"| {r['problem']} | {r['variant']} | {r['median']:.4f} | {r['min']:.4f}–{r['max']:.4f} | {r['evaluated']} | "
                     f"{r['duplicates']} | {r['near_duplicates']} | {r['repeat_share_pct']:.1f}% |")
    lines += ["", "| problem | evolve > repeated sampling (same seed) | evolve ≥ hill-climb (same seed) |", "|---|---|---|"]
    for c in results["comparisons"]:
        lines.append(f"| {c['problem']} | {c['beats_repeated_sampling']} of {c['seeds']} | {c['at_least_hill_climb']} of {c['seeds']} |")
    lines += ["", "| ensemble (ring17) | share of proposals to the useful model | median best | range |", "|---|---|---|---|"]
    for r in results["bandit"]:
        lines.append(f"| {r['variant']} | {r['useful_share_pct']:.1f}% | {r['median']:.4f} | {r['min']:.4f}–{r['max']:.4f} |")
    return lines


if __name__ == "__main__":
    main()
