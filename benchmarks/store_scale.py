"""Store hot paths against archive size: parent sampling, elite upsert, best program, the archive map, bytes per program.

    .venv/bin/python benchmarks/store_scale.py [--sizes 1000,100000,1000000] [--runs 200] [--out benchmarks/results]

For each size it writes a campaign of that many programs into a fresh SQLite
file (``benchmarks/synthetic.py``, circle_packing's code, no stored diffs so
a million programs stay a few GB) and times, over ``--runs`` calls each:

- ``Archive.sample``: what the controller does for every iteration (elites of
  an island, a parent by exploit/explore/random, inspirations, recent
  failures, their code);
- ``Store.upsert_elite``: the compare-and-swap of one cell, committed, both
  when it loses (the stored elite is better: the common case of a campaign)
  and when it wins (the new program is better and replaces the elite);
- ``Store.best_program`` and ``Store.archive_cells`` (the dashboard's map);
- the file's size per program.

The operations are timed round-robin (one call of each per repetition,
after one discarded warm-up repetition; ``benchmarks/report.py``), so a
checkpoint of the write-ahead log or another job on the machine falls on all
of them alike. Medians and nearest-rank 90th percentiles in milliseconds.
Results go to ``store_scale.json`` and ``store_scale.md``. A benchmark, not a
test.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.report import cell, interleave, spread_note, summarize, write_results
from benchmarks.synthetic import fill_campaign
from evolve.archive import Archive
from evolve.config import SamplingConfig
from evolve.problem import resolve_problem
from evolve.store import Store

OPERATIONS = {
    "sample_parent": "sample a parent",
    "upsert_loses": "elite upsert that loses",
    "upsert_wins": "elite upsert that wins",
    "best_program": "best program",
    "archive_cells": "archive map",
}


def measure(size: int, runs: int, folder: Path) -> dict[str, Any]:
    path = folder / f"store-{size}.db"
    store = Store.open(str(path))
    t0 = time.perf_counter()
    cid = fill_campaign(store, programs_n=size, with_diffs=False, models=["mutator"])
    fill_s = time.perf_counter() - t0
    problem = resolve_problem("circle_packing")
    archive = Archive(store, cid, axes=list(problem.config.features), sampling=SamplingConfig())
    rng = np.random.default_rng(0)
    cells = store.archive_cells(cid)
    held = {(c.island, c.cell): c.fitness for c in cells}
    calls = dict.fromkeys(OPERATIONS, 0)

    def loses(i: int) -> None:  # a worse program than the elite: the transaction and lookup of every upsert, nothing changes
        c = cells[i % len(cells)]
        assert not store.upsert_elite(cid, c.island, c.cell, cells[(i + 1) % len(cells)].program_id, -1e9)

    def wins(i: int) -> None:  # a better program: the elite row is replaced
        c = cells[i % len(cells)]
        held[c.island, c.cell] += 1.0
        assert store.upsert_elite(cid, c.island, c.cell, cells[(i + 1) % len(cells)].program_id, held[c.island, c.cell])

    calls_of: dict[str, Callable[[int], object]] = {
        "sample_parent": lambda i: archive.sample(i % 4, rng), "upsert_loses": loses, "upsert_wins": wins,
        "best_program": lambda i: store.best_program(cid), "archive_cells": lambda i: store.archive_cells(cid),
    }

    def timed(op: str) -> float:
        calls[op] += 1
        t = time.perf_counter()
        calls_of[op](calls[op])
        return 1000 * (time.perf_counter() - t)

    ops = list(OPERATIONS)
    samples = interleave(ops, timed, runs=runs)
    row: dict[str, Any] = {"programs": size, "fill_s": round(fill_s, 1)}
    row.update({op: summarize(times, digits=3) for op, times in zip(ops, samples, strict=True)})
    store.close()
    size_bytes = sum(p.stat().st_size for p in folder.glob(f"store-{size}.db*"))
    row["bytes_per_program"] = round(size_bytes / size)
    path.unlink()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,100000,1000000")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="evolve-bench-") as tmp:
        for size in [int(s) for s in args.sizes.split(",") if s]:
            rows.append(measure(size, args.runs, Path(tmp)))
            r = rows[-1]
            print(f"{size:>9,} programs (filled in {r['fill_s']} s): "
                  + ", ".join(f"{label} {r[op]['median']:.2f} ms" for op, label in OPERATIONS.items())
                  + f", {r['bytes_per_program']} B/program", file=sys.stderr)
    lines = [f"Milliseconds per call, {spread_note(args.runs)}; the operations round-robin, after one warm-up repetition.", "",
             "| programs | " + " | ".join(OPERATIONS.values()) + " | bytes/program |", "|---" * (len(OPERATIONS) + 2) + "|"]
    for r in rows:
        lines.append(f"| {r['programs']:,} | " + " | ".join(cell(r[op], 2) for op in OPERATIONS) + f" | {r['bytes_per_program']:,} |")
    write_results(args.out, "store_scale", {"meta": {"runs": args.runs, "warmups": 1}, "rows": rows}, {"store_scale": lines})


if __name__ == "__main__":
    main()
