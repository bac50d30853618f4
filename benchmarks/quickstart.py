"""The README's quickstart as a newcomer runs it: does the default model improve the initial circle packing, and when?

    .venv/bin/python benchmarks/quickstart.py [--checkout DIR] [--seeds 5] [--iterations 12] [--out benchmarks/results]

Runs ``DIR/.venv/bin/evolve run circle_packing --iterations N --seed S`` (the
quickstart's command, a seed added so the runs differ) once per seed, each with
a fresh store, on an otherwise idle machine; ``DIR`` is a fresh clone installed
with ``scripts/install.sh`` for the measurement that counts. Reported per seed:
the wall time of the whole command, the initial and the best sum of radii, when
the first better program was recorded (seconds after the command started), how
many proposals became valid programs, and what the CLI said about the model's
speed. Targets (issue 21): an improvement within 6 minutes in at least 3 of 5
seeds; a valid share of at least 30% of proposals.
"""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.report import write_results

HERE = Path(__file__).resolve().parent
LIMIT_S = 360.0


def run_seed(checkout: Path, seed: int, iterations: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="evolve-quickstart-") as tmp:
        db = Path(tmp) / "evolve.db"
        started_wall = time.time()
        started = time.monotonic()
        done = subprocess.run([str(checkout / ".venv" / "bin" / "evolve"), "run", "circle_packing", "--iterations", str(iterations),
                               "--seed", str(seed), "--db", str(db)], cwd=tmp, capture_output=True, text=True, check=False)
        wall = time.monotonic() - started
        with sqlite3.connect(db) as conn:
            rows = conn.execute("SELECT iteration, status, score, created_at FROM programs ORDER BY iteration").fetchall()
    initial = rows[0][2]
    better = [(it, score, created) for it, status, score, created in rows[1:] if status == "ok" and score > initial]
    speed = re.search(r"here: (.*)", done.stderr)
    return {
        "seed": seed, "returncode": done.returncode, "wall_s": wall, "initial": initial,
        "best": max([initial, *(s for _, s, _ in better)]), "proposals": len(rows) - 1,
        "valid": sum(1 for _, status, _, _ in rows[1:] if status == "ok"),
        "first_better_s": (better[0][2] - started_wall) if better else None,
        "statuses": {s: sum(1 for r in rows[1:] if r[1] == s) for s in sorted({r[1] for r in rows[1:]})},
        "speed": speed.group(1) if speed else "", "stderr_tail": done.stderr[-600:] if done.returncode else "",
    }


def markdown(results: dict[str, Any]) -> list[str]:
    lines = ["| seed | wall s | initial | best | first better after | valid / proposals | outcomes | model speed (as `evolve run` reports it) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results["runs"]:
        first = f"{r['first_better_s']:.0f} s" if r["first_better_s"] is not None else "—"
        outcomes = ", ".join(f"{k} {v}" for k, v in r["statuses"].items())
        lines.append(f"| {r['seed']} | {r['wall_s']:.0f} | {r['initial']:.4f} | {r['best']:.4f} | {first} "
                     f"| {r['valid']}/{r['proposals']} | {outcomes} | {r['speed']} |")
    s = results["summary"]
    lines.append(f"| **all** | median {s['median_wall_s']:.0f} | | | improved within {LIMIT_S:.0f} s: "
                 f"{s['improved_in_time']}/{s['seeds']} | {s['valid']}/{s['proposals']} ({s['valid_pct']:.0f}%) | | |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", type=Path, default=HERE.parent)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=12)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    runs = []
    for seed in range(1, args.seeds + 1):
        runs.append(run_seed(args.checkout.resolve(), seed, args.iterations))
        r = runs[-1]
        print(f"seed {seed}: rc {r['returncode']}, {r['wall_s']:.0f} s, best {r['best']:.4f} (initial {r['initial']:.4f}), "
              f"first better {r['first_better_s']}, valid {r['valid']}/{r['proposals']}", flush=True)
    walls = sorted(r["wall_s"] for r in runs)
    proposals, valid = sum(r["proposals"] for r in runs), sum(r["valid"] for r in runs)
    summary = {
        "seeds": len(runs), "median_wall_s": walls[len(walls) // 2], "proposals": proposals, "valid": valid,
        "valid_pct": 100 * valid / max(1, proposals),
        "improved_in_time": sum(1 for r in runs if r["first_better_s"] is not None and r["first_better_s"] <= LIMIT_S),
        "finished_in_time": sum(1 for r in runs if r["wall_s"] <= LIMIT_S and r["returncode"] == 0),
    }
    results = {"meta": {"checkout": str(args.checkout), "iterations": args.iterations, "limit_s": LIMIT_S},
               "runs": runs, "summary": summary}
    write_results(args.out, "quickstart", results, {"quickstart": markdown(results)})
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
