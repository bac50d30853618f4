"""/campaigns: background runs that outlive requests, stop and resume without losing or repeating work, live events."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from evolve.evaluators.runner import Evaluator
from evolve.store import Store
from evolve.values import EvalResult
from tests.server.conftest import quadratic_payload, start_campaign, wait_for

DONE = {"finished", "stopped", "failed", "budget_spent", "interrupted"}


def _iterations(db: str, campaign_id: str) -> list[int]:
    store = Store.open(db)
    try:
        return [p.iteration for p in store.list_programs(campaign_id)]
    finally:
        store.close()


def test_a_campaign_runs_in_the_background_and_finishes(client: TestClient) -> None:
    created = start_campaign(client, "circle_packing", iterations=12)
    assert created["status"] == "running" and created["running_here"] is True
    assert created["best_score"] is not None  # the initial program was evaluated before the answer
    body = wait_for(client, created["id"], until=lambda b: b["status"] in DONE)
    assert body["status"] == "finished" and body["iterations_done"] == 12
    assert body["valid_rate"] == body["valid_done"] / 12
    assert sum(body["status_counts"].values()) == 13  # the initial program and 12 children
    assert body["config"]["sandbox"] in ("bwrap", "docker")  # the server's choice, decided once
    listed = client.get("/campaigns").json()
    assert [c["id"] for c in listed] == [created["id"]] and listed[0]["running_here"] is False


def test_stop_then_resume_completes_the_budget_with_no_program_lost_or_repeated(client: TestClient) -> None:
    problem = client.post("/problems", json=quadratic_payload()).json()["id"]
    created = start_campaign(client, problem, iterations=400)
    cid = created["id"]
    wait_for(client, cid, until=lambda b: b["iterations_done"] >= 5)
    stopped = client.post(f"/campaigns/{cid}/stop")
    assert stopped.status_code == 200 and stopped.json()["status"] == "stopped"
    done_at_stop = stopped.json()["iterations_done"]
    assert 5 <= done_at_stop < 400
    again = client.post(f"/campaigns/{cid}/stop")
    assert again.status_code == 409 and "not running" in again.json()["detail"]
    resumed = client.post(f"/campaigns/{cid}/resume", json={"iterations": 60})
    assert resumed.status_code == 200, resumed.text
    assert client.post(f"/campaigns/{cid}/resume").status_code == 409  # already running
    body = wait_for(client, cid, until=lambda b: b["status"] in DONE)
    assert body["status"] == "finished" and body["iterations_done"] == max(60, done_at_stop)
    its = _iterations(client.app.state.settings.db, cid)  # type: ignore[attr-defined]
    assert its == list(range(len(its))) and len(its) == body["iterations_done"] + 1


def test_events_stream_replays_history_and_ends_when_the_campaign_is_done(client: TestClient) -> None:
    cid = start_campaign(client, "circle_packing", iterations=6)["id"]
    kinds: list[str] = []
    ids: list[int] = []
    with client.stream("GET", f"/campaigns/{cid}/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("event: "):
                kinds.append(line.removeprefix("event: "))
            elif line.startswith("id: "):
                ids.append(int(line.removeprefix("id: ")))
    assert kinds[0] == "created" and kinds[-1] == "end"
    assert kinds.count("program") == 6 and "status" in kinds
    assert ids == sorted(ids)
    later = client.get(f"/campaigns/{cid}/events", params={"follow": False}, headers={"Last-Event-ID": str(ids[-2])})
    assert [ln for ln in later.text.splitlines() if ln.startswith("id: ")] == [f"id: {ids[-1]}"]


def test_two_campaigns_run_at_once_under_the_shared_cap(make_client: Callable[..., TestClient],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    active, peak = 0, 0
    real = Evaluator.evaluate

    async def counting(self: Evaluator, code: str, held_out: bool = False) -> EvalResult:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        try:
            return await real(self, code, held_out=held_out)
        finally:
            active -= 1

    monkeypatch.setattr(Evaluator, "evaluate", counting)  # instruments the real evaluator; does not replace it
    client = make_client(max_evaluations=1)
    a = start_campaign(client, "circle_packing", iterations=30, eval_concurrency=2)["id"]
    b = start_campaign(client, "circle_packing", iterations=30, eval_concurrency=2, seed=2)["id"]
    assert [c["running_here"] for c in client.get("/campaigns").json()] == [True, True]
    for cid in (a, b):
        assert wait_for(client, cid, until=lambda b: b["status"] in DONE)["status"] == "finished"
    assert peak == 1  # each campaign alone would have run 2 at once


def test_campaign_requests_are_checked(client: TestClient) -> None:
    unknown = client.post("/campaigns", json={"problem": "no_such_problem", "models": [{"name": "mutator"}]})
    assert unknown.status_code == 404
    sandbox = client.post("/campaigns", json={"problem": "circle_packing", "sandbox": "process"})
    assert sandbox.status_code == 422 and sandbox.json()["field"] == "sandbox"  # the server decides the sandbox
    elsewhere = client.post("/campaigns", json={"problem": "circle_packing",
                                                "models": [{"name": "openai/x", "api_base": "http://203.0.113.5/v1",
                                                            "api_key_env": "OPENAI_API_KEY"}]})
    assert elsewhere.status_code == 422 and "EVOLVE_ALLOWED_API_BASES" in elsewhere.json()["detail"]
    model = client.post("/campaigns", json={"problem": "circle_packing", "models": [{"name": "gpt"}]})
    assert model.status_code == 422 and "unknown model 'gpt'" in model.json()["detail"]
    ray = client.post("/campaigns", json={"problem": "circle_packing", "models": [{"name": "mutator"}], "executor": "ray"})
    assert ray.status_code == 422 and "EVOLVE_RAY_ADDRESS" in ray.json()["detail"]  # the operator decides
    named = client.post("/campaigns", json={"problem": "circle_packing", "executor": "ray", "ray_address": "10.0.0.1:6379"})
    assert named.status_code == 422 and named.json()["field"] == "ray_address"  # never a cluster the client names
    assert client.get("/campaigns/nope").status_code == 404
    assert client.post("/campaigns/nope/stop").status_code == 404
    assert client.post("/campaigns/nope/resume").status_code == 404
    assert client.get("/campaigns/nope/events").status_code == 404


def test_a_clean_shutdown_leaves_running_campaigns_interrupted_and_resumable(make_client: Callable[..., TestClient]) -> None:
    first = make_client()
    cid = start_campaign(first, "circle_packing", iterations=500)["id"]
    wait_for(first, cid, until=lambda b: b["iterations_done"] >= 3)
    first.__exit__(None, None, None)  # the server's shutdown: what a SIGTERM to uvicorn runs
    second = make_client()
    found = second.get(f"/campaigns/{cid}").json()
    assert found["status"] == "interrupted" and found["running_here"] is False
    assert second.post(f"/campaigns/{cid}/resume", json={"iterations": found["iterations_done"] + 3}).status_code == 200
    assert wait_for(second, cid, until=lambda b: b["status"] in DONE)["status"] == "finished"


def test_a_campaign_another_live_process_runs_is_left_alone(client: TestClient) -> None:
    cid = start_campaign(client, "circle_packing", iterations=3)["id"]
    wait_for(client, cid, until=lambda b: b["status"] in DONE)
    store: Store = client.app.state.store  # type: ignore[attr-defined]
    store.claim_campaign(cid, f"{socket.gethostname()}:1", owner_alive=lambda _: False, target=None)  # pid 1 is alive
    for action in ("resume", "stop"):
        response = client.post(f"/campaigns/{cid}/{action}")
        assert response.status_code == 409 and "run by another process" in response.json()["detail"]


def test_campaigns_on_submitted_problems_run_their_evaluator_sandboxed_and_resume_so(client: TestClient) -> None:
    from sqlalchemy import update

    from evolve.store.schema import campaigns

    submitted = client.post("/problems", json=quadratic_payload())
    assert submitted.status_code == 201, submitted.text
    started = start_campaign(client, submitted.json()["id"], iterations=100_000)
    assert started["config"]["evaluator_sandbox"] is True
    builtin = start_campaign(client, "circle_packing", iterations=100_000)
    assert builtin["config"]["evaluator_sandbox"] is False  # built-in problems keep the trusted path
    for c in (started, builtin):
        assert client.post(f"/campaigns/{c['id']}/stop").status_code == 200
    # one stored before submitted evaluators were sandboxed: its config says trusted
    store: Store = client.app.state.store  # type: ignore[attr-defined]
    legacy = {**started["config"], "evaluator_sandbox": False}
    with store._writing("test") as conn:
        conn.execute(update(campaigns).where(campaigns.c.id == started["id"]).values(config=legacy))
    resumed = client.post(f"/campaigns/{started['id']}/resume")
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["config"]["evaluator_sandbox"] is True
    client.post(f"/campaigns/{started['id']}/stop")
