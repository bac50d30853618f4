# mypy: disable-error-code="no-untyped-call"
"""Campaigns on a real multi-node Ray cluster on this machine, one scenario per run.

Run by ``tests/evaluators/test_cluster.py`` as ``python -m tests.evaluators.ray_scenarios NAME FOLDER`` inside a
private network namespace that has only loopback (Ray listens on every interface and picks the host's external
address otherwise): the cluster (a head with no CPUs and worker nodes with their own), the controller and, where a
scenario needs one, the PostgreSQL server all live in it. The last line printed is the scenario's findings as JSON.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray
from ray.cluster_utils import Cluster

import evolve.evaluators.cluster
from evolve.campaign import Campaign, Progress
from evolve.config import CampaignConfig
from evolve.errors import EvolveError
from evolve.problem import load_problem
from evolve.store import Store
from evolve.values import CampaignStatus, EvalStatus
from tests.conftest import QUADRATIC_YAML, write_problem
from tests.hostile import PROBES, hostile_evaluator, reached
from tests.postgres import PostgresServer

WORKERS = 2
CPUS_PER_WORKER = 2


def _cluster(workers: int = WORKERS) -> Cluster:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})  # the head runs no evaluation
    for _ in range(workers):
        cluster.add_node(num_cpus=CPUS_PER_WORKER)
    cluster.wait_for_nodes()
    return cluster


def _config(cluster: Cluster, iterations: int, **changes: Any) -> CampaignConfig:
    return CampaignConfig.model_validate({"models": [{"name": "mutator"}], "iterations": iterations, "islands": 2,
                                          "seed": 11, "eval_concurrency": WORKERS * CPUS_PER_WORKER, "executor": "ray",
                                          "ray_address": cluster.address, **changes})


def _findings(store: Store, campaign_id: str) -> dict[str, Any]:
    programs = store.list_programs(campaign_id)
    row = store.get_campaign(campaign_id)
    return {"status": row.status.value, "iterations_done": row.iterations_done, "error": row.error,
            "iterations": [p.iteration for p in programs], "statuses": dict(Counter(p.status.value for p in programs)),
            "nodes": dict(Counter(p.node or "none" for p in programs))}


def spread(folder: Path) -> dict[str, Any]:
    """A campaign whose evaluations spread over both worker nodes, each evaluator asking for the problem's resources."""
    cluster = _cluster()
    store = Store.open(str(folder / "spread.db"))
    yaml = QUADRATIC_YAML.replace("  memory_mb: 512\n", "  memory_mb: 300\n  num_cpus: 0.5\n")
    campaign = asyncio.run(Campaign.create(store, load_problem(write_problem(folder / "quad", yaml=yaml)),
                                           _config(cluster, 40), workdir=folder / "w"))
    held = {key: ray.cluster_resources()[key] - ray.available_resources().get(key, 0.0) for key in ("CPU", "memory")}
    status = asyncio.run(campaign.run())
    found = {**_findings(store, campaign.id), "run": status.value, "held_cpus": held["CPU"],
             "held_memory_mb": held["memory"] / 2**20,
             "worker_nodes": sorted(n["NodeID"][:12] for n in ray.nodes() if n["Resources"].get("CPU"))}
    ray.shutdown()
    cluster.shutdown()
    return found


def node_lost(folder: Path) -> dict[str, Any]:
    """A worker node removed mid-campaign: its evaluations are run again elsewhere, the campaign finishes."""
    cluster = _cluster(workers=3)
    store = Store.open(str(folder / "lost.db"))
    # every iteration evaluated on a node (dedup would skip repeats): the node's loss must blame none of them
    campaign = asyncio.run(Campaign.create(store, load_problem(write_problem(folder / "quad")),
                                           _config(cluster, 150, search={"dedup": False}),
                                           workdir=folder / "w"))
    executor = campaign.evaluator.executor
    removed: list[str] = []
    removed_at: list[float] = []

    def progress(p: Progress) -> None:
        if p.iterations_done >= 15 and not removed:  # several may complete at once: 15 itself can be skipped
            busiest = max(executor.nodes, key=lambda n: executor.nodes[n])  # type: ignore[attr-defined]
            node = next(n for n in cluster.worker_nodes if n.node_id[:12] == busiest.split("/")[1])
            removed.append(busiest)
            cluster.remove_node(node, allow_graceful=False)  # SIGKILL of its raylet and workers: a lost machine
            removed_at.append(time.time())

    status = asyncio.run(campaign.run(on_progress=progress))
    health = campaign.evaluator.health()
    programs = store.list_programs(campaign.id)
    # recorded 3 s after the node was gone: its worker processes, which outlive a killed raylet for a moment and may
    # still finish what they had, are gone by then; these ran on the surviving nodes
    after = [p.node for p in programs if p.created_at >= removed_at[0] + 3]
    found = {**_findings(store, campaign.id), "run": status.value, "removed": removed, "restarts": health.restarts,
             "nodes_late": sorted(set(n or "none" for n in after))}
    ray.shutdown()
    cluster.shutdown()
    return found


def no_sandbox_on_the_nodes(folder: Path) -> dict[str, Any]:
    """Nodes where the asked-for sandbox cannot run refuse to host an evaluator: a clear error, nothing unsandboxed."""
    cluster = _cluster(workers=1)
    os.environ["DOCKER_HOST"] = f"unix://{folder / 'no-engine.sock'}"  # the nodes inherit it: no engine answers
    store = Store.open(str(folder / "refused.db"))
    error = ""
    try:
        asyncio.run(Campaign.create(store, load_problem(write_problem(folder / "quad")),
                                    _config(cluster, 5, sandbox="docker"), workdir=folder / "w"))
    except EvolveError as exc:
        error = f"{type(exc).__name__}: {exc}"
    ray.shutdown()
    cluster.shutdown()
    return {"error": error, "campaigns": len(store.list_campaigns())}


PLANTED = "sk-planted-cluster-key-0123456789"


def hostile_on_the_nodes(folder: Path) -> dict[str, Any]:
    """A hostile evaluator run with ``evaluator_sandbox`` on the nodes: walled in there as on one host (the head's
    port, through which it could run anything on the cluster, included), and still scoring its candidates."""
    os.environ["EVOLVE_PLANTED_KEY"] = PLANTED  # before the nodes start: in every raylet's and actor's environment
    cluster = _cluster()
    store = Store.open(str(folder / "hostile.db"))
    source = hostile_evaluator(store=str(folder / "hostile.db"), secret_name="EVOLVE_PLANTED_KEY", secret=PLANTED,
                               other_problem=str(write_problem(folder / "other") / "evaluator.py"),
                               server_source=evolve.evaluators.cluster.__file__,
                               port=int(cluster.address.rsplit(":", 1)[1]), host_words=("raylet", "gcs_server", "ray::"))
    yaml = QUADRATIC_YAML.replace("timeout_s: 10", "timeout_s: 60")
    problem = load_problem(write_problem(folder / "hostile", yaml=yaml, evaluator=source))
    campaign = asyncio.run(Campaign.create(store, problem, _config(cluster, 8, evaluator_sandbox=True),
                                           workdir=folder / "w"))
    status = asyncio.run(campaign.run())
    scored = [p for p in store.list_programs(campaign.id) if p.status is EvalStatus.OK]
    found = {**_findings(store, campaign.id), "run": status.value,
             "reached": [reached(p.artifacts) for p in scored],
             "probed": [sorted(set(PROBES) & set(p.artifacts)) == sorted(PROBES) for p in scored],
             "correct": [p.metrics["value"] == -(p.features["x"] - 3.0) ** 2 for p in scored],
             "worker_nodes": sorted(n["NodeID"][:12] for n in ray.nodes() if n["Resources"].get("CPU"))}
    ray.shutdown()
    cluster.shutdown()
    return found


CONTROLLER = """
import asyncio, sys
from pathlib import Path
from evolve.campaign import Campaign
from evolve.store import Store
from evolve.values import CampaignStatus
store = Store.open(sys.argv[1])
campaign = Campaign.resume(store, sys.argv[2], workdir=Path(sys.argv[3]))
asyncio.run(campaign.run())
"""


def killed_controller(folder: Path) -> dict[str, Any]:
    """The controller killed with kill -9 mid-campaign, resumed against the same cluster and PostgreSQL."""
    cluster = _cluster()
    postgres = PostgresServer()
    try:
        url = postgres.fresh_url()
        store = Store.open(url)
        created = asyncio.run(Campaign.create(store, load_problem(write_problem(folder / "quad")), _config(cluster, 60),
                                              workdir=folder / "made"))
        asyncio.run(created.evaluator.close())
        store.set_status(created.id, CampaignStatus.STOPPED, owner=created.owner)
        first = subprocess.Popen([sys.executable, "-c", CONTROLLER, url, created.id, str(folder / "a")],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _wait(lambda: store.get_campaign(created.id).iterations_done >= 15, 120)
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        killed_at = store.get_campaign(created.id).iterations_done
        resumed = Campaign.resume(store, created.id, workdir=folder / "b")  # its process is gone: no lease to wait out
        status = asyncio.run(resumed.run())
        found = {**_findings(store, created.id), "run": status.value, "killed_at": killed_at}
        store.close()
        return found
    finally:
        postgres.stop()
        ray.shutdown()
        cluster.shutdown()


def _wait(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout:g} s")
        time.sleep(0.05)


SCENARIOS: dict[str, Callable[[Path], dict[str, Any]]] = {
    "spread": spread, "node_lost": node_lost, "no_sandbox_on_the_nodes": no_sandbox_on_the_nodes,
    "killed_controller": killed_controller, "hostile_on_the_nodes": hostile_on_the_nodes,
}

if __name__ == "__main__":
    result = SCENARIOS[sys.argv[1]](Path(sys.argv[2]))
    print(json.dumps(result), flush=True)
