"""``evolve serve`` as its own process on loopback, driven over HTTP like a notebook or a scheduler would."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from evolve.store import Store
from tests.conftest import QUADRATIC_EVALUATOR, QUADRATIC_PROGRAM, QUADRATIC_YAML, write_problem
from tests.postgres import PostgresServer
from tests.server.conftest import TOKEN
from tests.server.live import ServeProcess

pytestmark = pytest.mark.slow
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _events(client: httpx.Client, campaign_id: str) -> list[tuple[str, dict[str, Any]]]:
    """Follow the campaign's server-sent events until the server ends the stream."""
    found: list[tuple[str, dict[str, Any]]] = []
    kind = ""
    with client.stream("GET", f"/campaigns/{campaign_id}/events", timeout=httpx.Timeout(10, read=120)) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                found.append((kind, json.loads(line.removeprefix("data: "))))
    return found


def test_submit_run_follow_and_inspect_over_http(tmp_path: Path) -> None:
    server = ServeProcess(tmp_path / "e2e.db", tmp_path / "server.log", EVOLVE_API_TOKEN=TOKEN).start()
    try:
        with httpx.Client(base_url=server.base, timeout=60) as client:
            files = {"problem_yaml": ("problem.yaml", QUADRATIC_YAML), "initial_program": ("initial_program.py", QUADRATIC_PROGRAM),
                     "evaluator": ("evaluator.py", QUADRATIC_EVALUATOR)}
            assert client.post("/problems/upload", files=files).status_code == 401  # writes need the token
            problem = client.post("/problems/upload", files=files, headers=AUTH)
            assert problem.status_code == 201, problem.text
            started = client.post("/campaigns", headers=AUTH, json={
                "problem": problem.json()["id"], "models": [{"name": "mutator"}], "iterations": 40, "islands": 2, "seed": 3,
            })
            assert started.status_code == 201, started.text
            cid = started.json()["id"]

            events = _events(client, cid)
            kinds = [k for k, _ in events]
            assert kinds[0] == "created" and kinds[-1] == "end"
            assert kinds.count("program") == 40
            assert ("status", "finished") in [(k, d.get("status")) for k, d in events]

            campaign = client.get(f"/campaigns/{cid}").json()
            assert campaign["status"] == "finished" and campaign["iterations_done"] == 40
            best = client.get(f"/campaigns/{cid}/best").json()["program"]
            initial_score = -(0.5 - 3.0) ** 2
            assert best["score"] > initial_score  # the mutator moved x towards 3
            lineage = client.get(f"/campaigns/{cid}/lineage/{best['id']}").json()["items"]
            assert lineage[0]["origin"] == "initial" and lineage[-1]["id"] == best["id"]
            assert next(p["score"] for p in lineage) == pytest.approx(initial_score)
    finally:
        server.stop()


def test_a_killed_server_leaves_the_campaign_interrupted_and_resume_completes_it(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    server = ServeProcess(db, tmp_path / "server.log").start()
    with httpx.Client(base_url=server.base, timeout=60) as client:
        cid = client.post("/campaigns", json={"problem": "circle_packing", "models": [{"name": "mutator"}], "iterations": 120,
                                              "islands": 2}).json()["id"]
        deadline = time.monotonic() + 120
        while client.get(f"/campaigns/{cid}").json()["iterations_done"] < 10 and time.monotonic() < deadline:
            time.sleep(0.1)
    server.kill()  # SIGKILL mid-campaign: nothing of the server's shutdown runs

    server = ServeProcess(db, tmp_path / "server.log").start()
    try:
        with httpx.Client(base_url=server.base, timeout=60) as client:
            found = client.get(f"/campaigns/{cid}").json()
            assert found["status"] == "interrupted" and found["running_here"] is False
            done_before = found["iterations_done"]
            assert 10 <= done_before < 120
            assert client.post(f"/campaigns/{cid}/resume").status_code == 200
            kinds = [k for k, _ in _events(client, cid)]
            assert kinds[-1] == "end"
            final = client.get(f"/campaigns/{cid}").json()
            assert final["status"] == "finished" and final["iterations_done"] == 120
    finally:
        server.stop()
    store = Store.open(str(db))
    try:
        iterations = [p.iteration for p in store.list_programs(cid)]
    finally:
        store.close()
    # the initial program and 120 children: none twice, none lost (a proposal in flight at the kill was never committed;
    # its iteration number may stay unused when a later one had committed before it)
    assert len(iterations) == len(set(iterations)) == 121


def test_a_campaign_the_cli_runs_is_followed_live_by_a_server_in_another_process_on_the_same_postgresql(
        tmp_path: Path, postgres: PostgresServer) -> None:
    """Controller and API on different hosts, as the README describes: here two processes sharing one PostgreSQL."""
    url = postgres.fresh_url()
    folder = write_problem(tmp_path / "quad")
    server = ServeProcess(url, tmp_path / "server.log").start()
    run = subprocess.Popen([sys.executable, "-m", "evolve", "run", str(folder), "--model", "mutator", "--iterations", "30",
                            "--islands", "2", "--seed", "4", "--db", url, "-q"],
                           cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with httpx.Client(base_url=server.base, timeout=60) as client:
            seen: list[int] = []
            leases: list[tuple[str, float]] = []
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                listed = client.get("/campaigns").json()
                if listed:
                    seen.append(listed[0]["iterations_done"])
                    if listed[0]["status"] == "running" and listed[0]["lease_expires"] is not None:
                        leases.append((listed[0]["owner"], listed[0]["lease_expires"]))
                    if listed[0]["status"] == "finished":
                        break
                time.sleep(0.05)
            assert run.wait(timeout=60) == 0, run.stderr.read() if run.stderr else ""
            [campaign] = client.get("/campaigns").json()
            assert campaign["status"] == "finished" and campaign["iterations_done"] == 30
            assert campaign["running_here"] is False  # the CLI ran it, not this server
            # while it ran, the API showed who held it and until when; the owner is the CLI's process, not the server's
            assert leases and {owner for owner, _ in leases} == {campaign["owner"]}
            assert int(campaign["owner"].split(":")[1]) == run.pid and campaign["lease_expires"] is None
            assert seen == sorted(seen) and 30 in seen  # followed as it went, never backwards
            programs = client.get(f"/campaigns/{campaign['id']}/programs", params={"limit": 100}).json()
            assert sorted(p["iteration"] for p in programs["items"]) == list(range(31))
            overview = client.get(f"/campaigns/{campaign['id']}/overview").json()
            assert sum(b["programs"] for b in overview["series"]) == 30 + 1
            assert client.get("/").status_code == 200  # the dashboard page itself
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        server.stop()
        postgres.drop(url)
