"""Store hot paths against archive size: parent sampling, elite upsert, best program, the archive map, bytes per program.

    .venv/bin/python benchmarks/store_scale.py [--sizes 1000,100000,1000000] [--runs 200] [--out benchmarks/results]

For each size it writes a campaign of that many programs into a fresh SQLite
file (``benchmarks/synthetic.py``, circle_packing's code, no stored diffs so
a million programs stay a few GB) and times, over ``--runs`` calls each:

- ``Archive.sample``: what the controller does for every iteration (elites of
  an island, a parent by exploit/explore/random, inspirations, recent
  failures, their code);
- ``Store.upsert_elite``: the compare-and-swap of one cell, committed;
- ``Store.best_program`` and ``Store.archive_cells`` (the dashboard's map);
- the file's size per program.

Medians and 90th percentiles in milliseconds. Results go to
``store_scale.json`` and ``store_scale.md``. A benchmark, not a test.
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

from benchmarks.report import percentiles, write_results
from benchmarks.synthetic import fill_campaign
from evolve.archive import Archive
from evolve.config import SamplingConfig
from evolve.problem import resolve_problem
from evolve.store import Store


def _time(fn: Callable[[int], Any], runs: int) -> dict[str, float]:
    fn(0)  # warm-up
    samples = []
    for i in range(runs):
        t0 = time.perf_counter()
        fn(i)
        samples.append(1000 * (time.perf_counter() - t0))
    return percentiles(samples, digits=3)


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
    program_ids = [c.program_id for c in cells]
    row: dict[str, Any] = {"programs": size, "fill_s": round(fill_s, 1)}
    row["sample_parent"] = _time(lambda i: archive.sample(i % 4, rng), runs)
    # a no-op upsert (the stored fitness is not beaten): the same transaction and lookup as a real one, and the archive stays as it is
    row["upsert_elite"] = _time(lambda i: store.upsert_elite(cid, cells[i % len(cells)].island, cells[i % len(cells)].cell,
                                                             program_ids[i % len(program_ids)], -1e9), runs)
    row["best_program"] = _time(lambda i: store.best_program(cid), runs)
    row["archive_cells"] = _time(lambda i: store.archive_cells(cid), runs)
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
            print(f"{size:>9,} programs (filled in {r['fill_s']} s): sample {r['sample_parent']['median_ms']:.2f} ms, upsert "
                  f"{r['upsert_elite']['median_ms']:.2f} ms, best {r['best_program']['median_ms']:.2f} ms, map "
                  f"{r['archive_cells']['median_ms']:.2f} ms, {r['bytes_per_program']} B/program", file=sys.stderr)
    lines = ["| programs | sample a parent ms | elite upsert ms | best program ms | archive map ms | bytes/program |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        cols = [f"{r[k]['median_ms']:.2f} (p90 {r[k]['p90_ms']:.2f})" for k in ("sample_parent", "upsert_elite", "best_program", "archive_cells")]
        lines.append(f"| {r['programs']:,} | {' | '.join(cols)} | {r['bytes_per_program']:,} |")
    write_results(args.out, "store_scale", {"meta": {"runs": args.runs}, "rows": rows}, lines)


if __name__ == "__main__":
    main()
