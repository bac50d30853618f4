"""The packaged models on this machine: valid share, share that beat their parent, best score, seconds per proposal.

    .venv/bin/python benchmarks/models.py [--proposals 6] [--problems circle_packing:2 function_minimization:1]
        [--models NAME ...] [--modes diff rewrite] [--out benchmarks/results]

Every packaged model (``evolve.catalog``) in both modes on two built-in
problems, each run a real campaign of ``--proposals`` proposals with the
settings a user gets (the catalog's sampling, compact prompts, the one-edit
grammar in diff mode, one island, the bwrap sandbox), over seeds. Reported per
model × mode × problem: the share of proposals that became a valid program,
the share that beat their parent, how the answers were applied
(``evolve.diff.Applied``, plus ``unchanged`` and ``diff_failed``), the best
score over the initial program's (median over seeds), seconds per proposal,
and the model's own split of its time between reading the prompt and writing
the answer (tokens per second each). Runs are sequential: two cores hold one
model at a time, and the figures are only meaningful on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.report import write_results
from evolve.campaign import Campaign
from evolve.catalog import CATALOG
from evolve.config import CampaignConfig
from evolve.llm.embedded import EmbeddedTransport, Speed
from evolve.problem import resolve_problem
from evolve.store import Store
from evolve.values import EvalStatus

HERE = Path(__file__).resolve().parent
PROBLEMS = ("circle_packing:2", "function_minimization:1")
MODES = ("diff", "rewrite")


@dataclass
class Run:
    model: str
    mode: str
    problem: str
    seed: int
    proposals: int
    valid: int
    improved: int
    better: bool  # the best program is not the initial one
    initial: float
    best: float
    seconds: float
    applied: dict[str, int]
    statuses: dict[str, int]
    speed: dict[str, float] = field(default_factory=dict)


def run_one(model: str, mode: str, problem_name: str, *, seed: int, proposals: int) -> Run:
    problem = resolve_problem(problem_name)
    config = CampaignConfig.model_validate({"models": [{"name": model, "mode": mode}], "iterations": proposals,
                                            "seed": seed, "islands": 1})
    with tempfile.TemporaryDirectory(prefix="evolve-models-") as tmp:
        store = Store.open(str(Path(tmp) / "run.db"))
        try:
            campaign = asyncio.run(Campaign.create(store, problem, config, workdir=Path(tmp)))
            transport = campaign.ensemble.models[0].transport
            assert isinstance(transport, EmbeddedTransport)
            transport.warm()  # loading the file is not a proposal's time
            started = time.monotonic()
            asyncio.run(campaign.run())
            seconds = time.monotonic() - started
            programs = store.list_programs(campaign.id)
            applied = store.applied_counts(campaign.id).get((model, mode), {})
            statuses = store.status_counts(campaign.id)
        finally:
            store.close()
    children = [p for p in programs if p.iteration > 0]
    initial = programs[0].score or 0.0
    by_id = {p.id: p for p in programs}
    improved = sum(1 for p in children if p.fitness is not None and p.status is EvalStatus.OK
                   and (parent := by_id.get(p.parent_id or "")) is not None and parent.fitness is not None
                   and p.fitness > parent.fitness)
    best_program = max((p for p in programs if p.status is EvalStatus.OK and p.fitness is not None),
                       key=lambda p: p.fitness or 0.0)
    best, better = best_program.score or 0.0, best_program.iteration > 0
    speed: Speed = transport.speed
    return Run(model=model, mode=mode, problem=problem_name, seed=seed, proposals=len(children),
               valid=sum(1 for p in children if p.status is EvalStatus.OK), improved=improved, better=better, initial=initial, best=best,
               seconds=seconds, applied=applied, statuses=statuses,
               speed={"read_tok_s": speed.prompt_tokens / speed.prompt_s if speed.prompt_s else 0.0,
                      "write_tok_s": speed.completion_tokens / speed.generation_s if speed.generation_s else 0.0,
                      "read_s": speed.prompt_s / max(1, speed.answers), "write_s": speed.generation_s / max(1, speed.answers)})


def _row(runs: list[Run]) -> dict[str, Any]:
    n = sum(r.proposals for r in runs)
    applied: dict[str, int] = {}
    for r in runs:
        for k, v in r.applied.items():
            applied[k] = applied.get(k, 0) + v
    first = runs[0]
    return {
        "model": first.model, "mode": first.mode, "problem": first.problem, "seeds": len(runs), "proposals": n,
        "valid_pct": 100 * sum(r.valid for r in runs) / max(1, n),
        "improved_pct": 100 * sum(r.improved for r in runs) / max(1, n),
        "improved_seeds": sum(r.better for r in runs),
        "initial": first.initial, "median_best": statistics.median(r.best for r in runs),
        "s_per_proposal": sum(r.seconds for r in runs) / max(1, n),
        "read_s": statistics.mean(r.speed["read_s"] for r in runs), "write_s": statistics.mean(r.speed["write_s"] for r in runs),
        "read_tok_s": statistics.mean(r.speed["read_tok_s"] for r in runs),
        "write_tok_s": statistics.mean(r.speed["write_tok_s"] for r in runs), "applied": applied,
    }


def markdown(results: dict[str, Any]) -> list[str]:
    lines = [
        "| model | mode | problem | proposals (seeds) | valid | beat parent | seeds improved | best (initial) "
        "| s / proposal | reading s (tok/s) | writing s (tok/s) | how answers applied |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results["rows"]:
        applied = ", ".join(f"{k} {v}" for k, v in sorted(r["applied"].items()))
        lines.append(
            f"| {r['model']} | {r['mode']} | {r['problem']} | {r['proposals']} ({r['seeds']}) | {r['valid_pct']:.0f}% "
            f"| {r['improved_pct']:.0f}% | {r['improved_seeds']}/{r['seeds']} | {r['median_best']:.4g} ({r['initial']:.4g}) "
            f"| {r['s_per_proposal']:.1f} | {r['read_s']:.1f} ({r['read_tok_s']:.0f}) | {r['write_s']:.1f} ({r['write_tok_s']:.1f}) "
            f"| {applied} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proposals", type=int, default=6)
    parser.add_argument("--models", nargs="*", default=list(CATALOG))
    parser.add_argument("--problems", nargs="*", default=list(PROBLEMS), help="NAME:SEEDS (seeds 1..SEEDS)")
    parser.add_argument("--modes", nargs="*", default=list(MODES))
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    rows, runs = [], []
    for model in args.models:
        for mode in args.modes:
            for spec in args.problems:
                problem, _, count = spec.partition(":")
                seeds = range(1, int(count or 1) + 1)
                these = [run_one(model, mode, problem, seed=s, proposals=args.proposals) for s in seeds]
                runs.extend(these)
                rows.append(_row(these))
                r = rows[-1]
                print(f"{model} · {mode} · {problem}: valid {r['valid_pct']:.0f}%, beat parent {r['improved_pct']:.0f}%, "
                      f"best {r['median_best']:.4g} ({r['initial']:.4g}), {r['s_per_proposal']:.1f} s/proposal", flush=True)
    results = {"meta": {"proposals": args.proposals, "problems": args.problems}, "rows": rows, "runs": [asdict(r) for r in runs]}
    write_results(args.out, "models", results, {"models": markdown(results)})


if __name__ == "__main__":
    main()
