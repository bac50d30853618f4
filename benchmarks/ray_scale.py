# mypy: disable-error-code="no-untyped-call"
"""Scale-out: campaign throughput against the number of Ray evaluation slots, with evaluations that sleep.

    .venv/bin/python benchmarks/ray_scale.py [--slots 2,8,32,64] [--sleep-s 2] [--rounds 6] [--out benchmarks/results]

Each size runs on a fresh local Ray cluster (a head with no CPUs and two
worker nodes declaring SLOTS/2 logical CPUs each) inside a private network
namespace with only loopback. The problem's evaluator sleeps ``--sleep-s``
and never calls the candidate: a heavy evaluation that costs no CPU here, so
what is measured is the controller and the scheduling, not this machine's two
cores. The model is the instant mutator; ``eval_concurrency`` is SLOTS, and as
many proposals are in flight. Per size: ROUNDS x SLOTS iterations, timed over
``Campaign.run`` (the evaluators are already up: the initial program was
evaluated through them), against the ideal SLOTS / SLEEP_S iterations per
second; the controller's CPU per iteration is this process's CPU time over
the run (its event loop, its threads, the store, Ray's client in it), per
iteration; "machine busy" is the share of all of this machine's cores busy
during the run (the nodes' actors and workers, Ray's daemons and the
controller together). One run per size: the figures come with the command,
not a spread.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.report import write_results  # noqa: E402

PROBLEM_YAML = """\
name: sleeper
description: A stand-in for a heavy evaluation (training a model, a simulation) that sleeps instead of computing.
objective: {metric: value, direction: maximize}
limits: {timeout_s: 60, memory_mb: 128, num_cpus: 1}
"""
PROGRAM = "# EVOLVE-BLOCK-START\ndef solve():\n    return 0.5\n# EVOLVE-BLOCK-END\n"
EVALUATOR = "import time\n\n\ndef evaluate(candidate):\n    time.sleep({sleep})\n    return {{'metrics': {{'value': 1.0}}}}\n"


def measure(slots: int, sleep_s: float, rounds: int) -> dict[str, Any]:
    import ray
    from ray.cluster_utils import Cluster

    from evolve.campaign import Campaign
    from evolve.config import CampaignConfig
    from evolve.problem import Problem
    from evolve.store import Store

    os.environ["EVOLVE_ZYGOTE"] = "0"  # the evaluator never calls the candidate: no launcher to keep warm
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for _ in range(2):
        cluster.add_node(num_cpus=slots // 2)
    cluster.wait_for_nodes()
    with tempfile.TemporaryDirectory(prefix="evolve-ray-scale-") as tmp:
        problem = Problem.from_sources(config_text=PROBLEM_YAML, initial_program=PROGRAM,
                                       evaluator_source=EVALUATOR.format(sleep=sleep_s))
        store = Store.open(str(Path(tmp) / "scale.db"))
        iterations = rounds * slots
        config = CampaignConfig.model_validate({
            "models": [{"name": "mutator", "max_in_flight": slots}], "iterations": iterations, "islands": 4, "seed": 1,
            "eval_concurrency": slots, "llm_concurrency": slots, "executor": "ray", "ray_address": cluster.address,
        })
        started = time.monotonic()
        campaign = asyncio.run(Campaign.create(store, problem, config, workdir=Path(tmp) / "w"))
        ready_s = time.monotonic() - started
        cpu0, wall0, machine0 = time.process_time(), time.monotonic(), _machine_busy()
        status = asyncio.run(campaign.run())
        wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
        busy = (_machine_busy() - machine0) / wall / (os.cpu_count() or 1)
        done = store.get_campaign(campaign.id).iterations_done
        nodes = {p.node for p in store.list_programs(campaign.id) if p.node}
        store.close()
    ray.shutdown()
    cluster.shutdown()
    ideal = slots / sleep_s
    return {"slots": slots, "iterations": done, "status": status.value, "evaluators_ready_s": round(ready_s, 1),
            "wall_s": round(wall, 2), "per_s": round(done / wall, 2), "ideal_per_s": round(ideal, 2),
            "share_of_ideal_pct": round(100 * done / wall / ideal, 1), "controller_cpu_ms": round(1000 * cpu / done, 2),
            "nodes": len(nodes), "machine_busy_pct": round(100 * busy, 1)}


def _machine_busy() -> float:
    """CPU seconds every core of this machine has been busy (not idle, not waiting on I/O) since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", default="2,8,32,64")
    parser.add_argument("--sleep-s", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a size, measured in this (namespaced) process
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(measure(args.one, args.sleep_s, args.rounds)), flush=True)
        return
    rows: list[dict[str, Any]] = []
    for slots in (int(s) for s in args.slots.split(",")):
        command = (f"ip link set lo up && exec {sys.executable} {Path(__file__).resolve()} --one {slots} "
                   f"--sleep-s {args.sleep_s} --rounds {args.rounds}")
        done = subprocess.run(["unshare", "--net", "bash", "-c", command], capture_output=True, text=True, check=False,
                              cwd=HERE.parent, timeout=1800)
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 or not lines:
            rows.append({"slots": slots, "error": done.stderr.strip().splitlines()[-1:] or ["no output"]})
        else:
            rows.append(json.loads(lines[-1]))
        print(rows[-1], file=sys.stderr, flush=True)
    table = [f"Evaluations sleeping {args.sleep_s:g} s on a local Ray cluster (head + 2 worker nodes, logical CPUs), "
             f"mutator, {args.rounds} x slots iterations per size; one run per size.", "",
             "| Ray slots | iterations | it/s | ideal it/s | share of ideal % | controller CPU ms/it | machine busy % | "
             "evaluators up in s |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            table.append(f"| {r['slots']} | failed: {r['error'][0][:120]} | | | | | | |")
        else:
            table.append(f"| {r['slots']} | {r['iterations']} | {r['per_s']} | {r['ideal_per_s']} | {r['share_of_ideal_pct']} | "
                         f"{r['controller_cpu_ms']} | {r['machine_busy_pct']} | {r['evaluators_ready_s']} |")
    meta = {"sleep_s": args.sleep_s, "rounds": args.rounds,
            "command": f"benchmarks/ray_scale.py --slots {args.slots} --sleep-s {args.sleep_s:g} --rounds {args.rounds}"}
    write_results(args.out, "ray_scale", {"meta": meta, "rows": rows}, {"ray_scale": table})


if __name__ == "__main__":
    main()
