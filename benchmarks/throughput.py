"""Campaign throughput, CPU and memory of the whole process tree, overhead at archive scale, latency hiding, first result.

    .venv/bin/python benchmarks/throughput.py [--runs 5] [--iterations 120] [--out benchmarks/results]

Every figure comes from real campaigns (a real store, real sandboxed
evaluations on the default backend), each measured run in a fresh process of
its own (so no run inherits another's imports, caches or heap), through
``benchmarks/accounting.py``: the CPU of every process the run started (from
a cgroup, so the sandboxed candidate that bwrap re-parents to init is
counted), split into the controller (the process running the campaign:
sampling, prompts, the model client, diffs, the store, the event loop) and
its children (evaluator workers, bwrap, the candidates), and the peak PSS and
RSS of the whole tree, sampled every 20 ms. The stand-in model runs in a
process of this script's, outside every measured tree.

- **throughput** (``throughput.md``): ``circle_packing``, 2 parallel
  evaluations, with the in-process ``mutator`` and with the same edits served
  over HTTP on loopback by ``benchmarks/standin.py`` (the real litellm/openai
  client path, no latency). Iterations/s, CPU per iteration and peak memory,
  in the steady state: each run first does ``WARM_ITERATIONS`` unmeasured
  iterations (the model client's import and first connection belong to the
  cold start below).
- **overhead at scale** (``throughput_scale.md``): the mutator runs resumed on
  archives pre-filled to 1,000, 10,000 and 100,000 programs
  (``benchmarks/synthetic.py``).
- **latency hiding** (``throughput_latency.md``): the stand-in answering after
  1 s, at 1, 4, 8, 16 and 32 calls in flight, on a trivial problem:
  iterations/s against the ideal (calls in flight / latency) and memory.
- **cold start** (``throughput_cold.md``): ``python -m evolve run
  circle_packing -n 1`` as a new process: seconds from its start to its first
  recorded result (interpreter, imports, the initial program's evaluation,
  one proposal), and the CPU of its whole tree.

The configurations of a table run interleaved (one run of each per
repetition, see ``benchmarks/report.py``) after one discarded warm-up
repetition. A benchmark, not a test: it reports and never fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.accounting import TreeAccounting, Usage
from benchmarks.report import cell, interleave, spread_note, summarize, write_results
from benchmarks.standin import running
from benchmarks.synthetic import fill_campaign
from evolve.campaign import Campaign
from evolve.config import CampaignConfig, ModelSpec
from evolve.problem import resolve_problem
from evolve.store import Store

TRIVIAL = {
    "problem.yaml": "name: trivial\ndescription: maximize -(x - 3)^2; solve() returns x\nobjective:\n  metric: value\n"
                    "  direction: maximize\nfeatures:\n  - name: x\n    min: -10\n    max: 10\n    bins: 20\nlimits:\n"
                    "  timeout_s: 10\n  memory_mb: 256\n",
    "initial_program.py": "# EVOLVE-BLOCK-START\ndef solve():\n    return 0.5\n# EVOLVE-BLOCK-END\n",
    "evaluator.py": "def evaluate(candidate):\n    x = float(candidate.call('solve'))\n"
                    "    return {'metrics': {'value': -(x - 3.0) ** 2}, 'features': {'x': x}}\n",
}
MUTATOR = {"name": "mutator"}
WARM_ITERATIONS = 2
_DIGITS = {"per_s": 2, "share_of_ideal_pct": 1, "tree_cpu_s": 2, "controller_cpu_ms": 2, "children_cpu_ms": 1, "tree_cpu_ms": 1, "peak_pss_mb": 0,
           "peak_rss_mb": 0, "first_result_s": 2}


@dataclass(frozen=True)
class Measure:
    iterations: int
    usage: Usage
    first_result_s: float | None  # from the start of the run to its first recorded program
    accounting: str  # TreeAccounting.describe() of the run

    def figures(self) -> dict[str, float | None]:
        n, u = self.iterations, self.usage
        return {
            "per_s": n / u.wall_s, "controller_cpu_ms": 1000 * u.controller_cpu_s / n, "children_cpu_ms": 1000 * u.children_cpu_s / n,
            "tree_cpu_ms": 1000 * u.tree_cpu_s / n, "peak_pss_mb": u.peak_pss_mb, "peak_rss_mb": u.peak_rss_mb,
            "first_result_s": self.first_result_s,
        }


# --- one measured run, in a process of its own: ``throughput.py --child SPEC`` prints its Measure as JSON ---

def _first_result(store: Store, campaign_id: str, *, started: float) -> float | None:
    stamps = [p.created_at for p in store.list_programs(campaign_id) if p.iteration > 0]
    return min(stamps) - started if stamps else None


def _campaign_run(spec: dict[str, Any], accounting: TreeAccounting, tmp: Path) -> Measure:
    """``iterations`` measured iterations of a fresh campaign (``problem``, ``model``, ``llm``) or of a stored one (``db``).

    ``WARM_ITERATIONS`` run first, unmeasured: what the first model call and evaluation pay once (the model
    client's import and connection) is the cold start's figure, not the steady state's.
    """
    store = Store.open(spec["db"] if "db" in spec else str(tmp / "run.db"))
    try:
        if "db" in spec:
            (row,) = store.list_campaigns()
            campaign_id, done = row.id, row.iterations_done
        else:
            config = CampaignConfig(models=[ModelSpec(**spec["model"])], iterations=WARM_ITERATIONS, islands=2, seed=1,
                                    eval_concurrency=2, llm_concurrency=spec["llm"])
            campaign_id, done = asyncio.run(Campaign.create(store, resolve_problem(spec["problem"]), config, workdir=tmp)).id, 0
        asyncio.run(Campaign.resume(store, campaign_id, workdir=tmp, iterations=done + WARM_ITERATIONS).run())
        before = store.get_campaign(campaign_id).iterations_done
        campaign = Campaign.resume(store, campaign_id, workdir=tmp, iterations=before + spec["iterations"])
        with accounting.span() as span:
            asyncio.run(campaign.run())
        n = max(1, store.get_campaign(campaign_id).iterations_done - before)
    finally:
        store.close()
    return Measure(iterations=n, usage=span.usage, first_result_s=None, accounting=accounting.describe())


def _cold_run(spec: dict[str, Any], accounting: TreeAccounting, tmp: Path) -> Measure:
    """``python -m evolve run circle_packing -n 1`` from its start to its first result, and its whole tree's CPU."""
    (tmp / "config.yaml").write_text(yaml.safe_dump({"models": [spec["model"]]}))
    argv = [sys.executable, "-m", "evolve", "run", "circle_packing", "--config", str(tmp / "config.yaml"), "-n", "1",
            "--db", str(tmp / "cold.db"), "--eval-concurrency", "2", "--quiet"]
    started = time.time()
    with accounting.span() as span:
        done = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=tmp)
    if done.returncode != 0:
        raise SystemExit(f"evolve run failed ({done.returncode}): {done.stderr[-600:]}")
    store = Store.open(str(tmp / "cold.db"))
    try:
        (row,) = store.list_campaigns()
        first = _first_result(store, row.id, started=started)
    finally:
        store.close()
    return Measure(iterations=1, usage=span.usage, first_result_s=first, accounting=accounting.describe())


def _child(spec: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory(prefix="evolve-bench-") as tmp, TreeAccounting() as accounting:
        measure = (_cold_run if spec.get("cold") else _campaign_run)(spec, accounting, Path(tmp))
    print(json.dumps({**asdict(measure), "usage": asdict(measure.usage)}))


def measure(spec: dict[str, Any]) -> Measure:
    """Run one measurement in a fresh process."""
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"a measured run failed ({done.returncode}) for {spec}:\n{done.stderr[-2000:]}")
    data = json.loads(done.stdout.strip().splitlines()[-1])
    return Measure(iterations=data["iterations"], usage=Usage(**data["usage"]), first_result_s=data["first_result_s"],
                   accounting=data["accounting"])


# --- the benchmark ---

def standin(latency: float) -> AbstractContextManager[dict[str, Any]]:
    """The stand-in model in a process of its own (outside every measured run's tree)."""
    return running(latency)


def _summary(runs: list[Measure], **extra: list[float]) -> dict[str, Any]:
    figures = [m.figures() for m in runs]
    out: dict[str, Any] = {"iterations": runs[0].iterations, "runs": len(runs), "accounting": runs[0].accounting}
    for key in ("per_s", "controller_cpu_ms", "children_cpu_ms", "tree_cpu_ms", "peak_pss_mb", "peak_rss_mb", "first_result_s"):
        out[key] = summarize([v for f in figures if (v := f[key]) is not None], _DIGITS[key])
    for key, values in extra.items():
        out[key] = summarize(values, _DIGITS[key])
    return out


def _log(what: str) -> Callable[[Any, Measure], None]:
    def log(config: Any, m: Measure) -> None:
        f = m.figures()
        first = "" if f["first_result_s"] is None else f"  first result {f['first_result_s']:.2f} s"
        print(f"{what} {config}: {f['per_s']:6.2f} it/s  controller {f['controller_cpu_ms']:6.2f} ms/it  children "
              f"{f['children_cpu_ms']:6.1f} ms/it  PSS {m.usage.peak_pss_mb} MB  RSS {m.usage.peak_rss_mb} MB{first}", file=sys.stderr)
    return log


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="measured runs of each configuration (after one warm-up repetition)")
    parser.add_argument("--iterations", type=int, default=120, help="iterations per throughput run")
    parser.add_argument("--scales", default="1000,10000,100000", help="archive sizes for the overhead-at-scale runs")
    parser.add_argument("--in-flight", default="1,4,8,16,32", help="calls in flight for the latency-hiding runs")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(json.loads(args.child))
        return
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="evolve-bench-") as tmp_name:
        tmp = Path(tmp_name)
        with standin(0.0) as instant:
            models = {"mutator (in process)": MUTATOR, "stand-in over HTTP, no latency": instant}
            labels = list(models)
            runs = interleave(labels, lambda label: measure({"problem": "circle_packing", "model": models[label],
                                                             "iterations": args.iterations, "llm": 4}),
                              runs=args.runs, log=_log("circle_packing,"))
            results["throughput"] = [{"model": label, **_summary(r)} for label, r in zip(labels, runs, strict=True)]
            runs = interleave(labels, lambda label: measure({"cold": True, "model": models[label]}), runs=args.runs,
                              log=_log("cold start,"))
            results["cold"] = [{"model": label, **_summary(r, tree_cpu_s=[m.usage.tree_cpu_s for m in r])}
                               for label, r in zip(labels, runs, strict=True)]
        sizes = [int(s) for s in args.scales.split(",") if s]
        for size in sizes:
            store = Store.open(str(tmp / f"scale-{size}.db"))
            fill_campaign(store, programs_n=size, models=["mutator"], with_diffs=False)
            store.close()
        runs = interleave(sizes, lambda size: measure({"db": str(tmp / f"scale-{size}.db"), "iterations": args.iterations}),
                          runs=args.runs, log=_log("circle_packing, mutator, archive of"))
        results["scale"] = [{"archive_programs": size, **_summary(r)} for size, r in zip(sizes, runs, strict=True)]
        trivial = tmp / "trivial"
        trivial.mkdir()
        for name, text in TRIVIAL.items():
            (trivial / name).write_text(text)
        with standin(1.0) as slow:
            ks = [int(s) for s in args.in_flight.split(",") if s]
            runs = interleave(ks, lambda k: measure({"problem": str(trivial), "model": slow, "iterations": max(8, 4 * k), "llm": k}),
                              runs=args.runs, log=_log("1 s model, in flight:"))
            results["latency"] = [{"in_flight": k, "ideal_per_s": float(k),
                                   **_summary(r, share_of_ideal_pct=[100 * m.iterations / m.usage.wall_s / k for m in r])}
                                  for k, r in zip(ks, runs, strict=True)]
    write(args, results)


def _row(label: str, r: dict[str, Any], keys: list[str]) -> str:
    return f"| {label} | " + " | ".join(cell(r[k], _DIGITS[k]) for k in keys) + " |"


def write(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """``throughput.json`` with every figure, and one markdown file per table."""
    accounting = results["throughput"][0]["accounting"]
    note = f"{spread_note(args.runs)}, after one warm-up repetition, configurations interleaved, each run a fresh process"
    cpu = ["per_s", "controller_cpu_ms", "children_cpu_ms", "tree_cpu_ms", "peak_pss_mb", "peak_rss_mb"]
    head = "| it/s | controller CPU ms/it | children CPU ms/it | tree CPU ms/it | peak PSS MB | peak RSS MB |"
    tables = {
        "throughput": [f"circle_packing, 2 evaluations at once, {args.iterations} iterations a run; {note}.", "",
                       f"| model {head}", "|---|---|---|---|---|---|---|",
                       *[_row(r["model"], r, cpu) for r in results["throughput"]]],
        "throughput_scale": [f"circle_packing, mutator, {args.iterations} more iterations on a pre-filled archive; {note}.", "",
                             f"| archive {head}", "|---|---|---|---|---|---|---|",
                             *[_row(f"{r['archive_programs']:,} programs", r, cpu) for r in results["scale"]]],
        "throughput_latency": [f"trivial problem, stand-in answering after 1 s, 4 iterations a run per call in flight (at least 8); "
                               f"{note}.", "", "| calls in flight | share of ideal % | it/s | controller CPU ms/it | children CPU ms/it | "
                               "peak PSS MB | peak RSS MB |", "|---|---|---|---|---|---|---|",
                               *[_row(str(r["in_flight"]), r, ["share_of_ideal_pct", "per_s", "controller_cpu_ms", "children_cpu_ms",
                                                               "peak_pss_mb", "peak_rss_mb"]) for r in results["latency"]]],
        "throughput_cold": [f"`python -m evolve run circle_packing -n 1` as a new process, timed from its start; {note}.", "",
                            "| model | first result s | CPU of the whole tree s | peak PSS MB | peak RSS MB |", "|---|---|---|---|---|",
                            *[_row(r["model"], r, ["first_result_s", "tree_cpu_s", "peak_pss_mb", "peak_rss_mb"])
                              for r in results["cold"]]],
    }
    for lines in tables.values():
        lines += ["", f"Accounting: {accounting}."]
    meta = {"runs": args.runs, "iterations": args.iterations, "warmups": 1, "accounting": accounting}
    write_results(args.out, "throughput", {"meta": meta, **results}, tables)


if __name__ == "__main__":
    main()
