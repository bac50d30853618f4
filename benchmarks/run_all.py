"""Every benchmark, one after the other, into benchmarks/results/ (JSON and markdown per benchmark, and summary.md).

    .venv/bin/python benchmarks/run_all.py [--out benchmarks/results]

Runs sandbox_cost, throughput, store_scale and dashboard with their default
settings (about 12 minutes on 2 cores) and writes ``summary.md``: each
benchmark's table after its command and how long it took. Each benchmark
reports and never fails on a slow machine; a benchmark that cannot run (a
missing backend or browser) is reported as such and the others still run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SUITE = ["sandbox_cost", "throughput", "store_scale", "dashboard"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--only", default=",".join(SUITE), help=f"a comma-separated subset of {', '.join(SUITE)}")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    sections = []
    started = time.perf_counter()
    for name in [n for n in args.only.split(",") if n]:
        if name not in SUITE:
            parser.error(f"unknown benchmark '{name}': choose among {', '.join(SUITE)}")
        command = [sys.executable, str(HERE / f"{name}.py"), "--out", str(args.out)]
        print(f"== {name}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        done = subprocess.run(command, check=False)
        took = time.perf_counter() - t0
        table = args.out / f"{name}.md"
        body = table.read_text() if done.returncode == 0 and table.is_file() else f"failed with exit code {done.returncode}; see the output above\n"
        sections.append(f"## {name}\n\n`{' '.join(['python', f'benchmarks/{name}.py'])}` ({took:.0f} s)\n\n{body}")
    total = time.perf_counter() - started
    summary = f"# evolve benchmarks\n\nAll of them in {total / 60:.1f} minutes.\n\n" + "\n".join(sections)
    (args.out / "summary.md").write_text(summary)
    print(summary)


if __name__ == "__main__":
    main()
