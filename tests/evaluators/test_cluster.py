"""The ray executor on a real multi-node Ray cluster on this machine (see ``ray_scenarios``): evaluations spread over
the nodes, a lost node's evaluations run again elsewhere, a node without the sandbox refuses, and a controller killed
with kill -9 is resumed against the same cluster and PostgreSQL."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.sandbox.helpers import unavailable

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def scenario(name: str, folder: Path, *, timeout: float = 300) -> dict[str, Any]:
    """Run one scenario inside a private network namespace with only loopback; its findings."""
    try:
        import ray  # noqa: F401
    except ImportError:
        unavailable("ray", "Ray is not installed (pip install 'evolve[ray]')", what="executor")
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None:
        unavailable("ray", "a private network namespace needs root, unshare and ip (iproute2)", what="executor")
    command = f"ip link set lo up && exec {sys.executable} -m tests.evaluators.ray_scenarios {name} {folder}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    done = subprocess.run(["unshare", "--net", "bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0 and lines, f"scenario {name} failed ({done.returncode}): {done.stderr[-4000:]}"
    found: dict[str, Any] = json.loads(lines[-1])
    return found


def test_evaluations_spread_over_the_worker_nodes_and_each_program_names_its_node(tmp_path: Path) -> None:
    found = scenario("spread", tmp_path)
    assert found["run"] == found["status"] == "finished" and found["iterations_done"] == 40
    assert found["iterations"] == list(range(41))
    nodes = {n.split("/")[1]: count for n, count in found["nodes"].items()}
    assert set(nodes) == set(found["worker_nodes"]) and min(nodes.values()) >= 5, found["nodes"]  # both did real work
    # four evaluators (eval_concurrency), each holding the problem's request: 0.5 CPU and its 300 MB
    assert (found["held_cpus"], round(found["held_memory_mb"])) == (4 * 0.5, 4 * 300)


def test_a_node_lost_mid_campaign_loses_no_program_and_the_campaign_finishes(tmp_path: Path) -> None:
    found = scenario("node_lost", tmp_path)
    assert found["run"] == found["status"] == "finished", found["error"]
    assert found["iterations"] == list(range(151))  # every iteration once: nothing lost, nothing twice
    assert found["statuses"] == {"ok": 151}, found["statuses"]  # no evaluation blamed on its candidate for the node
    assert found["restarts"] >= 1 and found["removed"] and found["nodes_late"], found
    assert found["removed"][0] not in found["nodes_late"]  # the work went on elsewhere


def test_a_hostile_evaluator_sandboxed_on_the_nodes_is_walled_in_and_still_scores(tmp_path: Path) -> None:
    found = scenario("hostile_on_the_nodes", tmp_path)
    assert found["run"] == found["status"] == "finished", found["error"]
    assert found["iterations"] == list(range(9)) and len(found["reached"]) >= 1, found
    assert found["reached"] == [{}] * len(found["reached"]), found["reached"]  # no wall gave, on any node
    assert all(found["probed"]) and all(found["correct"]), found
    nodes = {n.split("/")[1] for n in found["nodes"]}
    assert nodes <= set(found["worker_nodes"]), found["nodes"]  # evaluated on the worker nodes, not beside the head


def test_nodes_that_cannot_run_the_sandbox_refuse_and_nothing_runs_unsandboxed(tmp_path: Path) -> None:
    found = scenario("no_sandbox_on_the_nodes", tmp_path)
    assert found["error"].startswith("SandboxError: no Ray node can host an evaluator"), found["error"]
    assert "docker" in found["error"] and found["campaigns"] == 0


def test_a_controller_killed_mid_campaign_resumes_against_the_same_cluster_and_postgresql(tmp_path: Path) -> None:
    found = scenario("killed_controller", tmp_path)
    assert found["run"] == found["status"] == "finished" and found["iterations_done"] == 60, found["error"]
    assert found["iterations"] == list(range(61)) and found["killed_at"] >= 15
