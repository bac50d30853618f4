"""Every benchmark, one after the other, into benchmarks/results/: every figure of the README's Benchmarks section from one run.

    .venv/bin/python benchmarks/run_all.py [--out benchmarks/results] [--only sandbox_cost,throughput] [--quick]

Runs sandbox_cost, evaluator_sandbox, throughput, store_scale, dashboard, ray_scale, search_quality,
grid_fit, models and quickstart with their default settings (about 2 hours on 2 cores: the models' part
alone is about an hour), then writes ``targets.md`` (each
target, the figure that decides it and whether it is met, read from the
benchmarks' JSON of this same run) and ``summary.md``: the targets and every
table, each after the command that made it and how long it took. Each table
is also its own markdown file (``throughput.md``, ``throughput_scale.md``,
``throughput_latency.md``, ``throughput_cold.md``, ``store_scale.md``,
``sandbox_cost.md``, ``evaluator_sandbox.md``, ``dashboard.md``, ``ray_scale.md``, ``search_quality.md``, ``grid_fit.md``, ``models.md``,
``quickstart.md``): the README shows exactly these.
Each benchmark reports and never fails on a slow machine; one that cannot run
(a missing backend or browser) is reported as such and the others still run.
``--quick`` runs tiny configurations to check that the scripts work: its
figures mean nothing.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.report import machine  # noqa: E402

SUITE = ["sandbox_cost", "evaluator_sandbox", "throughput", "store_scale", "dashboard", "ray_scale", "search_quality", "grid_fit",
         "models", "quickstart"]
TABLES = {"sandbox_cost": ["sandbox_cost", "sandbox_warm"], "evaluator_sandbox": ["evaluator_sandbox"],
          "throughput": ["throughput", "throughput_scale", "throughput_latency", "throughput_cold"],
          "store_scale": ["store_scale"], "dashboard": ["dashboard"], "ray_scale": ["ray_scale"], "search_quality": ["search_quality"],
          "grid_fit": ["grid_fit"], "models": ["models"], "quickstart": ["quickstart"]}
QUICK = {
    "sandbox_cost": ["--runs", "3"],
    "evaluator_sandbox": ["--runs", "2"],
    "throughput": ["--runs", "1", "--iterations", "6", "--scales", "1000,3000", "--in-flight", "2,16"],
    "store_scale": ["--sizes", "1000,10000", "--runs", "12"],
    "dashboard": ["--programs", "2000", "--runs", "2"],
    "ray_scale": ["--slots", "2", "--rounds", "2", "--sleep-s", "0.5"],
    "search_quality": ["--quick"],
    "grid_fit": ["--proposals", "20"],
    "models": ["--proposals", "1", "--problems", "circle_packing:1", "--modes", "diff"],
    "quickstart": ["--seeds", "1", "--iterations", "1"],
}

Row = tuple[str, str, bool | None]  # target, measured, met (None: not measured)


def _median(summary: dict[str, Any] | None) -> float | None:
    return None if not summary or not summary.get("n") else float(summary["median"])


def _by(rows: list[dict[str, Any]], key: str, value: Any) -> dict[str, Any] | None:
    return next((r for r in rows if r.get(key) == value), None)


def _throughput_targets(data: dict[str, Any]) -> list[Row]:
    out: list[Row] = []
    runs = data.get("throughput", [])
    cpu = [(r["model"], _median(r["controller_cpu_ms"])) for r in runs]
    rate = [(r["model"], _median(r["per_s"])) for r in runs]
    if cpu:
        out.append(("controller CPU ≤ 2 ms per iteration (circle_packing, instant model, 2 evaluations at once)",
                    ", ".join(f"{v:.2f} ms ({m})" for m, v in cpu if v is not None), all(v is not None and v <= 2 for _, v in cpu)))
        out.append(("≥ 35 iterations/s on this machine with an instant model (issue 18: 3× the peer)",
                    ", ".join(f"{v:.2f} it/s ({m})" for m, v in rate if v is not None), all(v is not None and v >= 35 for _, v in rate)))
    scale = data.get("scale", [])
    if len(scale) >= 2:
        low, high = _median(scale[0]["controller_cpu_ms"]), _median(scale[-1]["controller_cpu_ms"])
        if low is not None and high is not None:
            out.append((f"controller CPU grows ≤ 2 ms per iteration from {scale[0]['archive_programs']:,} to "
                        f"{scale[-1]['archive_programs']:,} programs", f"{low:.2f} → {high:.2f} ms ({high - low:+.2f})", high - low <= 2))
    latency = data.get("latency", [])
    for k, share in ((16, 0.95), (32, 0.90)):
        if (r := _by(latency, "in_flight", k)) is not None and (v := _median(r["share_of_ideal_pct"])) is not None:
            out.append((f"≥ {share:.0%} of ideal throughput with {k} one-second calls in flight", f"{v:.0f}%", v >= 100 * share))
    if (r := _by(latency, "in_flight", 16)) is not None and (v := _median(r["peak_pss_mb"])) is not None:
        out.append(("≤ 300 MB for the whole process tree with 16 calls in flight (peak PSS)", f"{v:.0f} MB (RSS {_median(r['peak_rss_mb']):.0f})",
                    v <= 300))
    cold = data.get("cold", [])
    first = [(r["model"], _median(r["first_result_s"])) for r in cold]
    if first:
        out.append(("first result ≤ 1 s after `evolve run` starts", ", ".join(f"{v:.2f} s ({m})" for m, v in first if v is not None),
                    all(v is not None and v <= 1 for _, v in first)))
    return out


def _store_targets(data: dict[str, Any]) -> list[Row]:
    rows = data.get("rows", [])
    if len(rows) < 2:
        return []
    small, large = rows[0], rows[-1]
    ops = {"sample_parent": "sampling", "upsert_loses": "losing upsert", "upsert_wins": "winning upsert", "best_program": "best"}
    parts, flat = [], True
    for op, label in ops.items():
        a, b = _median(small.get(op)), _median(large.get(op))
        if a is None or b is None:
            continue
        parts.append(f"{label} {a:.2f} → {b:.2f} ms")
        flat = flat and b <= 2 * a
    return [(f"store hot paths flat from {small['programs']:,} to {large['programs']:,} programs (median at most doubles)",
             ", ".join(parts), flat)]


def _dashboard_targets(data: dict[str, Any]) -> list[Row]:
    row = _by(data.get("pages", []), "what", "campaign page, fresh browser context")
    if row is None:
        return []
    worst, label = (row["p90"], "p90") if "p90" in row else (row["max"], "max")
    programs = data.get("meta", {}).get("programs", 0)
    return [(f"campaign page of a {programs:,}-program campaign painted in < 1 s ({label})",
             f"{row['median']:.0f} ms ({label} {worst:.0f})", worst < 1000)]


def _sandbox_targets(data: dict[str, Any]) -> list[Row]:
    rows = data.get("rows", [])
    out: list[Row] = []
    trivial, numpy = _by_pair(rows, "trivial", "bwrap"), _by_pair(rows, "numpy", "bwrap")
    if trivial is not None and (v := _median(trivial["overhead_ms"])) is not None:
        w = _median(numpy["overhead_ms"]) if numpy is not None else None
        extra = "" if w is None else f", {w:+.1f} ms with NumPy"
        out.append(("a bwrap run costs ≤ 10 ms over a plain subprocess (trivial candidate)", f"{v:+.1f} ms{extra}", v <= 10))
    bare = _by_pair(rows, "numpy", "bare interpreter")
    warm = data.get("warm", [])
    zygote, zygote_numpy = _by_pair(warm, "trivial", "zygote (bwrap)"), _by_pair(warm, "numpy", "zygote (bwrap)")
    if zygote is not None and (v := _median(zygote["overhead_ms"])) is not None:
        out.append(("a sandboxed call of a trivial candidate (bwrap zygote) costs ≤ 10 ms over a plain fork() of a warm interpreter",
                    f"{v:+.1f} ms", v <= 10))
    if bare is not None and (b := _median(bare["wall_ms"])) is not None:
        if zygote_numpy is not None and (a := _median(zygote_numpy["wall_ms"])) is not None:
            out.append(("a NumPy candidate's sandboxed call (bwrap zygote) costs less than `python -c 'import numpy'` alone",
                        f"{a:.1f} ms against {b:.1f} ms", a < b))
        if numpy is not None and (a := _median(numpy["wall_ms"])) is not None:
            out.append(("(cold path, for comparison) a NumPy candidate's cold bwrap run against `python -c 'import numpy'`",
                        f"{a:.1f} ms against {b:.1f} ms", a < b))
    return out


def _ray_targets(data: dict[str, Any]) -> list[Row]:
    rows = [r for r in data.get("rows", []) if "error" not in r]
    out: list[Row] = []
    if rows:
        out.append(("≥ 90% of ideal throughput at every number of Ray slots (sleeping evaluations)",
                    ", ".join(f"{r['share_of_ideal_pct']:.0f}% at {r['slots']}" for r in rows),
                    all(r["share_of_ideal_pct"] >= 90 for r in rows)))
    if (r := _by(rows, "slots", 64)) is not None:
        out.append(("controller CPU ≤ 2 ms per iteration with 64 Ray evaluations in flight", f"{r['controller_cpu_ms']:.1f} ms",
                    r["controller_cpu_ms"] <= 2))
    return out


def _search_targets(data: dict[str, Any]) -> list[Row]:
    rows, out = data.get("rows", []), []
    meta = data.get("meta", {})
    budget = f"{meta.get('proposals')} proposals, {len(meta.get('seeds', []))} seeds"
    for problem, goal in (("ring16", 1.63), ("ring17", 1.77)):
        r = next((x for x in rows if x["problem"].startswith(problem) and x["variant"] == "evolve (defaults)"), None)
        if r is not None:
            out.append((f"median best sum of radii ≥ {goal} on {r['problem']} with the defaults ({budget})",
                        f"{r['median']:.4f} ({r['min']:.4f}–{r['max']:.4f})", r["median"] >= goal))
    for c in data.get("comparisons", []):
        out.append((f"evolve above repeated sampling and at least hill-climb on every seed ({c['problem']})",
                    f"above repeated sampling on {c['beats_repeated_sampling']} of {c['seeds']}, at least hill-climb on "
                    f"{c['at_least_hill_climb']} of {c['seeds']}",
                    c["beats_repeated_sampling"] == c["seeds"] and c["at_least_hill_climb"] == c["seeds"]))
    bandit = {r["variant"]: r for r in data.get("bandit", [])}
    b = next((r for k, r in bandit.items() if k.endswith("bandit")), None)
    w = next((r for k, r in bandit.items() if k.endswith("equal weights")), None)
    if b is not None and w is not None:
        out.append(("bandit: ≥ 80% of proposals to the useful stand-in, best score no worse than equal weights",
                    f"{b['useful_share_pct']:.0f}% (equal weights {w['useful_share_pct']:.0f}%); median best {b['median']:.4f} "
                    f"against {w['median']:.4f}", b["useful_share_pct"] >= 80 and b["median"] >= w["median"]))
    on = next((x for x in rows if x["variant"] == "evolve (defaults)"), None)
    off = next((x for x in rows if x["variant"] == "evolve, dedup off"), None)
    if on is not None and off is not None:
        out.append(("≤ 2% of evaluations spent on a program evaluated before, with dedup on (off: today's figure)",
                    f"{on['repeat_share_pct']:.1f}% on, {off['repeat_share_pct']:.1f}% off ({on['problem']})", on["repeat_share_pct"] <= 2))
    return out


def _quickstart_targets(data: dict[str, Any]) -> list[Row]:
    s = data.get("summary")
    if not s:
        return []
    iterations = data.get("meta", {}).get("iterations")
    return [
        (f"the README's quickstart (--iterations {iterations}) improves on the initial circle packing within 6 minutes in "
         f"≥ 3 of 5 seeds", f"{s['improved_in_time']} of {s['seeds']} (median run {s['median_wall_s']:.0f} s; "
         f"{s['finished_in_time']} finished within 6 minutes)", s["improved_in_time"] >= 3 and s["seeds"] >= 5),
        ("with the default model, ≥ 30% of proposals valid on circle_packing (over the quickstart's runs)",
         f"{s['valid_pct']:.0f}% of {s['proposals']}", s["valid_pct"] >= 30),
    ]


def _by_pair(rows: list[dict[str, Any]], candidate: str, backend: str) -> dict[str, Any] | None:
    return next((r for r in rows if r["candidate"] == candidate and r["backend"] == backend), None)


TARGETS: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
    "throughput": _throughput_targets, "store_scale": _store_targets, "dashboard": _dashboard_targets, "sandbox_cost": _sandbox_targets,
    "ray_scale": _ray_targets, "search_quality": _search_targets, "quickstart": _quickstart_targets,
}


def targets(out: Path, ran: list[str]) -> list[str]:
    """The targets table, from the JSON this run wrote (a benchmark not run, or failed, leaves its targets out)."""
    lines = ["| target | measured | met? |", "|---|---|---|"]
    for name in [n for n in TARGETS if n in ran]:  # the README's order
        path = out / f"{name}.json"
        if not path.is_file():
            continue
        for target, measured, met in TARGETS[name](json.loads(path.read_text())):
            lines.append(f"| {target} | {measured or '—'} | {'—' if met is None else 'yes' if met else 'no'} |")
    return lines


def _commit() -> str:
    done = subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
    return done.stdout.strip() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--only", default=",".join(SUITE), help=f"a comma-separated subset of {', '.join(SUITE)}")
    parser.add_argument("--quick", action="store_true", help="tiny configurations, to check the scripts work (figures mean nothing)")
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n]
    for name in names:
        if name not in SUITE:
            parser.error(f"unknown benchmark '{name}': choose among {', '.join(SUITE)}")
    args.out.mkdir(parents=True, exist_ok=True)
    sections, ran = [], []
    started = time.perf_counter()
    for name in names:
        options = QUICK[name] if args.quick else []
        command = [sys.executable, str(HERE / f"{name}.py"), "--out", str(args.out), *options]
        print(f"== {name}", file=sys.stderr, flush=True)
        for stale in [f"{name}.json", *(f"{t}.md" for t in TABLES[name])]:  # nothing from an earlier run passes for this one's
            (args.out / stale).unlink(missing_ok=True)
        t0 = time.perf_counter()
        done = subprocess.run(command, check=False)
        took = time.perf_counter() - t0
        shown = " ".join(["python", f"benchmarks/{name}.py", *options])
        if done.returncode != 0:
            sections.append(f"## {name}\n\n`{shown}` failed with exit code {done.returncode} after {took:.0f} s; see its output.\n")
            continue
        ran.append(name)
        tables = "\n".join(f"### {t}\n\n{(args.out / f'{t}.md').read_text()}" for t in TABLES[name] if (args.out / f"{t}.md").is_file())
        sections.append(f"## {name}\n\n`{shown}` ({took:.0f} s)\n\n{tables}")
    total = time.perf_counter() - started
    target_lines = targets(args.out, ran)
    (args.out / "targets.md").write_text("\n".join(target_lines) + "\n")
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    quick = " (--quick: tiny configurations, the figures mean nothing)" if args.quick else ""
    summary = (f"# evolve benchmarks\n\nRun of {when} at commit {_commit()} on {machine()}{quick}; all of it in {total / 60:.1f} minutes.\n\n"
               "## targets\n\n" + "\n".join(target_lines) + "\n\n" + "\n".join(sections))
    (args.out / "summary.md").write_text(summary)
    print(summary)


if __name__ == "__main__":
    main()
