"""How well each built-in problem's MAP-Elites grid fits what its programs reach: bins filled per axis after N proposals.

    .venv/bin/python benchmarks/grid_fit.py [--proposals 100] [--out benchmarks/results]

One campaign per built-in problem with the defaults and the ``mutator`` (an
LLM's rewrites spread further: this is the least a grid must hold). Reported
per axis: its range and bins, the bins the programs filled, the elites'
smallest and largest value, and whether ``evolve status`` would warn.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.report import write_results
from evolve.campaign import Campaign
from evolve.config import CampaignConfig
from evolve.grids import grid_fit
from evolve.problem import builtin_problem_names, resolve_problem
from evolve.store import Store

HERE = Path(__file__).resolve().parent


def measure(name: str, proposals: int) -> list[dict[str, Any]]:
    problem = resolve_problem(name)
    config = CampaignConfig.model_validate({"models": [{"name": "mutator"}], "iterations": proposals, "seed": 1})
    with tempfile.TemporaryDirectory(prefix="evolve-grid-") as tmp:
        store = Store.open(str(Path(tmp) / "run.db"))
        try:
            campaign = asyncio.run(Campaign.create(store, problem, config, workdir=Path(tmp)))
            asyncio.run(campaign.run())
            fits = grid_fit(store, campaign.id, list(problem.config.features))
        finally:
            store.close()
    return [{"problem": name, "axis": f.name, "range": [f.range_min, f.range_max], "bins": f.bins, "filled": f.filled,
             "low": f.low, "high": f.high, "warned": f.too_wide} for f in fits]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proposals", type=int, default=100)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    rows = [row for name in builtin_problem_names() for row in measure(name, args.proposals)]
    lines = [f"{args.proposals} mutator proposals per problem, default settings.", "",
             "| problem | axis | range | bins | filled | elites' values | warned |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        seen = "–" if r["low"] is None else f"{r['low']:.4g} – {r['high']:.4g}"
        lines.append(f"| {r['problem']} | {r['axis']} | {r['range'][0]:g} – {r['range'][1]:g} | {r['bins']} | {r['filled']} | "
                     f"{seen} | {'yes' if r['warned'] else 'no'} |")
    write_results(args.out, "grid_fit", {"meta": {"proposals": args.proposals}, "rows": rows}, {"grid_fit": lines})


if __name__ == "__main__":
    main()
