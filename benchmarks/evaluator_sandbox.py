"""What a sandboxed evaluator costs: one evaluation through the warm pool, its evaluator trusted or sandboxed.

    .venv/bin/python benchmarks/evaluator_sandbox.py [--runs 20] [--out benchmarks/results]

For built-in problems of three shapes (circle_packing: one candidate call;
cap_set: one call and a heavier evaluator; online_bin_packing: a session of
thousands of calls), each evaluates its initial program through a warm
pool of one slot on the bwrap backend, with ``evaluator_sandbox`` off (the
evaluator imported once into the warm worker, a fork per evaluation) and on
(a fresh bubblewrap sandbox per evaluation for the evaluator, every candidate
call relayed by the host: ``evolve.evaluators.confined``). The two go
round-robin, one evaluation of each per repetition, after two discarded
warm-up repetitions. Overhead: the median of the per-repetition differences.
Results go to ``evaluator_sandbox.json`` and ``evaluator_sandbox.md`` under
``--out``. A benchmark, not a test: it reports and never fails on a slow machine.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.report import cell, interleave, spread_note, summarize, write_results
from evolve.evaluators.runner import Evaluator
from evolve.problem import resolve_problem
from evolve.sandbox.bwrap import bwrap_problem

PROBLEMS = ("circle_packing", "cap_set", "online_bin_packing")
WARMUPS = 2


def measure(name: str, runs: int, tmp: Path) -> list[dict[str, Any]]:
    problem = resolve_problem(name)
    loop = asyncio.new_event_loop()
    evaluators = {confine: Evaluator(problem, problem_dir=tmp / f"{name}-{confine}", sandbox="bwrap", executor="warm",
                                     confine_evaluator=confine) for confine in (False, True)}

    def once(confine: bool) -> float:
        started = time.perf_counter()
        result = loop.run_until_complete(evaluators[confine].evaluate(problem.initial_program))
        if not result.status.is_ok:
            raise SystemExit(f"{name} (sandboxed evaluator: {confine}) did not evaluate: {result.artifacts}")
        return (time.perf_counter() - started) * 1000

    try:
        trusted, boxed = interleave([False, True], once, runs=runs, warmups=WARMUPS)
    finally:
        for evaluator in evaluators.values():
            loop.run_until_complete(evaluator.close())
        loop.close()
    return [
        {"problem": name, "evaluator": "trusted (warm worker)", "wall_ms": summarize(trusted), "overhead_ms": None},
        {"problem": name, "evaluator": "sandboxed (bwrap, relayed calls)", "wall_ms": summarize(boxed),
         "overhead_ms": summarize([b - t for t, b in zip(trusted, boxed, strict=True)])},
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help=f"measured evaluations of each kind (after {WARMUPS} warm-ups)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    if (problem := bwrap_problem()) is not None:
        raise SystemExit(f"sandboxed evaluators need bubblewrap: {problem}")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="evolve-bench-") as tmp:
        for name in PROBLEMS:
            rows += measure(name, args.runs, Path(tmp))
    lines = [f"One evaluation of the initial program, warm pool of one slot, bwrap; {spread_note(args.runs)}:", "",
             "| problem | evaluator | wall ms | overhead vs trusted ms |", "|---|---|---|---|"]
    for row in rows:
        overhead = cell(row["overhead_ms"], signed=True) if row["overhead_ms"] else "—"
        lines.append(f"| {row['problem']} | {row['evaluator']} | {cell(row['wall_ms'])} | {overhead} |")
    write_results(args.out, "evaluator_sandbox", {"rows": rows, "meta": {"runs": args.runs}}, {"evaluator_sandbox": lines})


if __name__ == "__main__":
    main()
