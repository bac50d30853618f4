"""Campaign throughput, framework CPU, overhead at archive scale and latency hiding, measured on real campaigns.

    .venv/bin/python benchmarks/throughput.py [--runs 3] [--iterations 120] [--out benchmarks/results]

Every figure comes from ``Campaign.run`` in this process on a real store with
real sandboxed evaluations (the default backend):

- **throughput**: ``circle_packing``, 2 parallel evaluations, with the
  in-process ``mutator`` and with the same edits served over HTTP on loopback
  by ``benchmarks/standin.py`` (the real litellm/openai client path, no
  latency). Iterations/s (wall) and, per iteration, this process's CPU (the
  framework: sampling, prompts, the model client, diffs, the store, the
  event loop) and its children's CPU (the evaluator workers and sandboxes,
  where the kernel accounts them to us: bwrap's pid namespace is not).
- **overhead at scale**: the same with the archive pre-filled to 1,000,
  10,000 and 100,000 programs (``benchmarks/synthetic.py``), resumed for
  ``--iterations`` more.
- **latency hiding**: the stand-in with 1 s per answer at 1, 4, 8, 16 and 32
  calls in flight on a trivial problem (its evaluator does almost nothing):
  iterations/s against the ideal (calls in flight / latency), and the peak
  resident memory of this process and all its descendants (the stand-in's
  own process left out).

Medians of ``--runs`` runs. Results go to ``throughput.json`` and
``throughput.md``. A benchmark, not a test: it reports and never fails.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.report import write_results
from benchmarks.synthetic import fill_campaign
from evolve.campaign import Campaign
from evolve.config import CampaignConfig, ModelSpec
from evolve.problem import Problem, load_problem, resolve_problem
from evolve.store import Store

TRIVIAL = {
    "problem.yaml": "name: trivial\ndescription: maximize -(x - 3)^2; solve() returns x\nobjective:\n  metric: value\n"
                    "  direction: maximize\nfeatures:\n  - name: x\n    min: -10\n    max: 10\n    bins: 20\nlimits:\n"
                    "  timeout_s: 10\n  memory_mb: 256\n",
    "initial_program.py": "# EVOLVE-BLOCK-START\ndef solve():\n    return 0.5\n# EVOLVE-BLOCK-END\n",
    "evaluator.py": "def evaluate(candidate):\n    x = float(candidate.call('solve'))\n"
                    "    return {'metrics': {'value': -(x - 3.0) ** 2}, 'features': {'x': x}}\n",
}


@dataclass(frozen=True)
class Measure:
    iterations: int
    wall_s: float
    framework_cpu_ms: float  # per iteration, this process
    children_cpu_ms: float  # per iteration, reaped descendants
    peak_rss_mb: float  # this process and its descendants, sampled every 20 ms

    @property
    def per_s(self) -> float:
        return self.iterations / self.wall_s


#: processes that are not evolve's (the stand-in model): left out of the memory figures with their descendants
_NOT_OURS: set[int] = set()


def _tree_rss_mb(root: int) -> float:
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                parts = f.read().rsplit(")", 1)[1].split()
            children.setdefault(int(parts[1]), []).append(int(entry.name))
            rss[int(entry.name)] = int(parts[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        if pid in _NOT_OURS:
            continue
        total += rss.get(pid, 0)
        todo += children.get(pid, [])
    return total / 2**20


def _run(store: Store, campaign: Campaign) -> Measure:
    """Run the campaign to its target: time, this process's and its children's CPU, and peak tree memory."""
    before = store.get_campaign(campaign.id).iterations_done
    peak, sampler_cpu = [0.0], [0.0]
    done = threading.Event()

    def sample() -> None:  # its own CPU is taken off the framework's below
        while not done.wait(0.02):
            peak[0] = max(peak[0], _tree_rss_mb(os.getpid()))
        sampler_cpu[0] = time.thread_time()

    sampler = threading.Thread(target=sample, daemon=True)
    kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu0, t0 = time.process_time(), time.perf_counter()
    sampler.start()
    asyncio.run(campaign.run())
    wall = time.perf_counter() - t0
    done.set()
    sampler.join()
    cpu = time.process_time() - cpu0 - sampler_cpu[0]
    kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    n = max(1, store.get_campaign(campaign.id).iterations_done - before)
    kids = (kids1.ru_utime + kids1.ru_stime) - (kids0.ru_utime + kids0.ru_stime)
    return Measure(iterations=n, wall_s=wall, framework_cpu_ms=1000 * cpu / n, children_cpu_ms=1000 * kids / n, peak_rss_mb=peak[0])


def _fresh(problem: Problem, models: list[ModelSpec], *, iterations: int, llm: int, tmp: Path) -> Measure:
    store = Store.open(str(tmp / f"run-{time.monotonic_ns()}.db"))
    config = CampaignConfig(models=models, iterations=iterations, islands=2, seed=1, eval_concurrency=2, llm_concurrency=llm)
    campaign = asyncio.run(Campaign.create(store, problem, config, workdir=tmp))
    try:
        return _run(store, campaign)
    finally:
        store.close()


@contextmanager
def standin(latency: float) -> Iterator[ModelSpec]:
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("standin.py")), "--latency", str(latency)],
                            stdout=subprocess.PIPE, text=True)
    _NOT_OURS.add(proc.pid)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline().split()[1])
        yield ModelSpec(name="openai/standin", api_base=f"http://127.0.0.1:{port}/v1", timeout_s=60, max_in_flight=64,
                        input_usd_per_mtok=0.0, output_usd_per_mtok=0.0)
    finally:
        proc.kill()
        proc.wait()


def _median(runs: list[Measure]) -> dict[str, float]:
    return {
        "iterations": runs[0].iterations,
        "per_s": round(statistics.median(m.per_s for m in runs), 2),
        "framework_cpu_ms": round(statistics.median(m.framework_cpu_ms for m in runs), 2),
        "children_cpu_ms": round(statistics.median(m.children_cpu_ms for m in runs), 1),
        "peak_rss_mb": round(statistics.median(m.peak_rss_mb for m in runs), 0),
        "runs": len(runs),
    }


def _log(what: str, row: dict[str, float]) -> None:
    print(f"{what:44} {row['per_s']:7.2f} it/s  framework {row['framework_cpu_ms']:6.2f} ms/it  "
          f"children {row['children_cpu_ms']:6.1f} ms/it  peak {row['peak_rss_mb']:5.0f} MB", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=120, help="iterations per throughput run")
    parser.add_argument("--scales", default="1000,10000,100000", help="archive sizes for the overhead-at-scale runs")
    parser.add_argument("--in-flight", default="1,4,8,16,32", help="calls in flight for the latency-hiding runs")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    results: dict[str, Any] = {"throughput": [], "scale": [], "latency": []}
    circle = resolve_problem("circle_packing")
    with tempfile.TemporaryDirectory(prefix="evolve-bench-") as tmp_name:
        tmp = Path(tmp_name)
        with standin(0.0) as instant:
            for label, model in (("mutator (in process)", ModelSpec(name="mutator")), ("stand-in over HTTP, no latency", instant)):
                row = _median([_fresh(circle, [model], iterations=args.iterations, llm=4, tmp=tmp) for _ in range(args.runs)])
                results["throughput"].append({"model": label, **row})
                _log(f"circle_packing, {label}", row)
        for size in [int(s) for s in args.scales.split(",") if s]:
            db = tmp / f"scale-{size}.db"
            store = Store.open(str(db))
            cid = fill_campaign(store, programs_n=size, models=["mutator"], with_diffs=False)
            runs = []
            for _ in range(args.runs):
                done = store.get_campaign(cid).iterations_done
                campaign = Campaign.resume(store, cid, workdir=tmp, iterations=done + args.iterations)
                runs.append(_run(store, campaign))
            store.close()
            row = _median(runs)
            results["scale"].append({"archive_programs": size, **row})
            _log(f"circle_packing, mutator, archive of {size:,}", row)
        trivial_dir = tmp / "trivial"
        trivial_dir.mkdir()
        for name, text in TRIVIAL.items():
            (trivial_dir / name).write_text(text)
        trivial = load_problem(trivial_dir)
        with standin(1.0) as slow:
            for k in [int(s) for s in args.in_flight.split(",") if s]:
                n = max(8, 4 * k)
                row = _median([_fresh(trivial, [slow], iterations=n, llm=k, tmp=tmp) for _ in range(args.runs)])
                ideal = k / 1.0
                results["latency"].append({"in_flight": k, "ideal_per_s": ideal, "share_of_ideal": round(row["per_s"] / ideal, 3), **row})
                _log(f"1 s model, {k} in flight (ideal {ideal:g}/s)", row)
    lines = ["| run | it/s | framework CPU ms/it | children CPU ms/it | peak MB |", "|---|---|---|---|---|"]
    for r in results["throughput"]:
        lines.append(f"| circle_packing, {r['model']} | {r['per_s']:.2f} | {r['framework_cpu_ms']:.2f} | "
                     f"{r['children_cpu_ms']:.1f} | {r['peak_rss_mb']:.0f} |")
    for r in results["scale"]:
        lines.append(f"| circle_packing, mutator, archive of {r['archive_programs']:,} | {r['per_s']:.2f} | {r['framework_cpu_ms']:.2f} | "
                     f"{r['children_cpu_ms']:.1f} | {r['peak_rss_mb']:.0f} |")
    for r in results["latency"]:
        lines.append(f"| 1 s model, {r['in_flight']} in flight: {r['share_of_ideal']:.0%} of ideal | {r['per_s']:.2f} | "
                     f"{r['framework_cpu_ms']:.2f} | {r['children_cpu_ms']:.1f} | {r['peak_rss_mb']:.0f} |")
    write_results(args.out, "throughput", {"meta": {"runs": args.runs, "iterations": args.iterations}, **results}, lines)


if __name__ == "__main__":
    main()
