"""Roles, ownership, quotas and the audit trail, against a real server on loopback with a real store."""

from __future__ import annotations

import concurrent.futures
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from evolve.store import LLMCallRecord, Store
from tests.server.conftest import TOKEN, quadratic_payload, settings_for
from tests.server.live import threaded_server

CAMPAIGN = {"problem": "circle_packing", "models": [{"name": "mutator"}], "islands": 1, "seed": 1, "iterations": 100_000,
            "eval_concurrency": 1}


class Api:
    """A server's base URL and the bearer tokens made on it, by name."""

    def __init__(self, base: str, db: Path) -> None:
        self.base, self.db = base, db
        self.tokens: dict[str, str] = {"admin": TOKEN}

    def call(self, who: str | None, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who is not None else {}
        return httpx.request(method, self.base + path, headers=headers, timeout=120, **kwargs)

    def make(self, name: str, role: str, **limits: Any) -> str:
        response = self.call("admin", "POST", "/tokens", json={"name": name, "role": role, **limits})
        assert response.status_code == 201, response.text
        self.tokens[name] = response.json()["token"]
        return self.tokens[name]

    def start(self, who: str, **changes: Any) -> httpx.Response:
        return self.call(who, "POST", "/campaigns", json={**CAMPAIGN, **changes})


@pytest.fixture
def api(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> Iterator[Api]:
    caplog.set_level(logging.DEBUG)  # every log line of the server, its access log included, is searched for tokens
    (tmp_path / "work").mkdir()
    with threaded_server(settings_for(tmp_path, api_token=TOKEN, max_evaluations=8)) as base:
        api = Api(base, tmp_path / "api.db")
        yield api
        for cid in [c["id"] for c in api.call("admin", "GET", "/campaigns").json() if c["status"] == "running"]:
            api.call("admin", "POST", f"/campaigns/{cid}/stop")


def test_a_read_token_reads_and_may_not_submit_start_stop_or_resume(api: Api) -> None:
    api.make("reader", "read")
    api.make("alice", "run")
    cid = api.start("alice").json()["id"]
    assert api.call("reader", "GET", "/campaigns").status_code == 200
    assert api.call("reader", "GET", f"/campaigns/{cid}").status_code == 200
    assert api.call("reader", "GET", "/whoami").json() == {"name": "reader", "role": "read", "may_run": False,
                                                          "may_admin": False, "max_campaigns": None,
                                                          "max_evaluations": None, "max_cost_usd": None}
    for method, path, body in [("POST", "/problems", quadratic_payload()), ("POST", "/campaigns", CAMPAIGN),
                               ("POST", f"/campaigns/{cid}/stop", None), ("POST", f"/campaigns/{cid}/resume", None),
                               ("POST", "/tokens", {"name": "x", "role": "read"}), ("GET", "/tokens", None),
                               ("GET", "/audit", None), ("GET", "/settings", None)]:
        response = api.call("reader", method, path, json=body)
        assert response.status_code == 403, (path, response.text)
        assert "token 'reader' has role read" in response.json()["detail"]
    assert api.call("admin", "GET", f"/campaigns/{cid}").json()["status"] == "running"  # untouched


def test_a_run_token_acts_on_its_own_campaigns_only_and_cannot_manage_tokens(api: Api) -> None:
    api.make("alice", "run")
    api.make("bob", "run")
    mine = api.start("alice").json()
    assert mine["created_by"] == "alice"
    cid = mine["id"]
    refused = api.call("bob", "POST", f"/campaigns/{cid}/stop")
    assert refused.status_code == 403
    assert "started by token 'alice'" in refused.json()["detail"]
    assert api.call("admin", "GET", f"/campaigns/{cid}").json()["status"] == "running"
    assert api.call("alice", "POST", f"/campaigns/{cid}/stop").json()["status"] == "stopped"
    assert api.call("bob", "POST", f"/campaigns/{cid}/resume").status_code == 403
    assert api.call("alice", "POST", f"/campaigns/{cid}/resume").json()["status"] == "running"
    assert api.call("admin", "POST", f"/campaigns/{cid}/stop").json()["status"] == "stopped"  # an admin: any campaign
    for method, path, body in [("POST", "/tokens", {"name": "mallory", "role": "admin"}), ("GET", "/tokens", None),
                               ("POST", "/tokens/bob/revoke", None), ("GET", "/audit", None)]:
        assert api.call("alice", method, path, json=body).status_code == 403, path
    problem = api.call("bob", "POST", "/problems", json=quadratic_payload())
    assert problem.status_code == 201, problem.text


def test_a_revoked_token_is_refused_at_once(api: Api) -> None:
    api.make("alice", "run")
    assert api.call("alice", "GET", "/whoami").json()["name"] == "alice"
    assert api.call("admin", "POST", "/tokens/alice/revoke").json()["active"] is False
    for method, path in [("GET", "/campaigns"), ("POST", "/campaigns"), ("GET", "/whoami")]:
        response = api.call("alice", method, path, json=CAMPAIGN if method == "POST" else None)
        assert response.status_code == 401, (path, response.text)
        assert "unknown or revoked token" in response.json()["detail"]
    again = api.call("admin", "POST", "/tokens", json={"name": "alice", "role": "run"})
    assert again.status_code == 409  # the name stays the revoked token's, for the audit trail
    assert api.call("admin", "POST", "/tokens/nobody/revoke").status_code == 404


def test_a_stream_opened_with_a_token_ends_soon_after_the_token_is_revoked(api: Api) -> None:
    api.make("alice", "run")
    api.make("watcher", "read")
    cid = api.start("alice").json()["id"]
    headers = {"Authorization": f"Bearer {api.tokens['watcher']}"}
    seen: list[str] = []
    with httpx.stream("GET", f"{api.base}/campaigns/{cid}/events", headers=headers, timeout=30) as stream:
        lines = stream.iter_lines()
        while "event: started" not in seen:  # the stream is live and following
            seen.append(next(lines))
        assert api.call("admin", "POST", "/tokens/watcher/revoke").json()["active"] is False
        revoked = time.monotonic()
        for line in lines:  # a running campaign's stream would go on for hours; this one must end by itself
            seen.append(line)
            if time.monotonic() - revoked > 60:  # bounded: keep-alives would hold a stream that never ends
                break
        waited = time.monotonic() - revoked
    assert "event: end" in seen and "no longer accepted (revoked)" in seen[seen.index("event: end") + 1], seen[-3:]
    assert waited < 15, waited  # the check runs every 2 s; the bound leaves room for a loaded machine
    assert api.call("admin", "GET", f"/campaigns/{cid}").json()["status"] == "running"  # only the stream ended


def _together(api: Api, who: str, count: int, **changes: Any) -> list[httpx.Response]:
    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda _: api.start(who, **changes), range(count)))


def test_quotas_refuse_with_429_naming_the_limit_and_count_concurrent_requests(api: Api) -> None:
    api.make("alice", "run", max_campaigns=2)
    answers = _together(api, "alice", 5)
    assert sorted(r.status_code for r in answers) == [201, 201, 429, 429, 429]
    refused = next(r for r in answers if r.status_code == 429).json()
    assert refused["field"] == "max_campaigns"
    assert "may run 2 campaign(s) at once" in refused["detail"]
    started = [r.json()["id"] for r in answers if r.status_code == 201]
    api.call("alice", "POST", f"/campaigns/{started[0]}/stop")
    assert api.start("alice").status_code == 201  # a slot freed by the stop

    api.make("bob", "run", max_evaluations=3)
    answers = _together(api, "bob", 4, eval_concurrency=2)
    assert sorted(r.status_code for r in answers) == [201, 429, 429, 429]
    assert {r.json()["field"] for r in answers if r.status_code == 429} == {"max_evaluations"}
    assert api.start("bob", eval_concurrency=1).status_code == 201  # 2 + 1 fits


def test_the_spend_limit_caps_campaigns_and_refuses_once_spent(api: Api) -> None:
    api.make("carol", "run", max_cost_usd=1.0)
    first = api.start("carol").json()
    assert first["config"]["max_cost_usd"] == 1.0  # its cap lowered to what the token has
    assert api.start("carol").status_code == 429  # the first holds the whole dollar it may still spend
    api.call("carol", "POST", f"/campaigns/{first['id']}/stop")
    store = Store.open(str(api.db))
    try:  # what the stopped campaign spent, recorded as a campaign's model calls are
        store.record_calls(first["id"], 1, [LLMCallRecord(model="paid", template=None, prompt_tokens=10,
                                                          completion_tokens=10, cost_usd=0.75, latency_s=0.1, ok=True)])
    finally:
        store.close()
    second = api.start("carol").json()
    assert second["config"]["max_cost_usd"] == pytest.approx(0.25)
    api.call("carol", "POST", f"/campaigns/{second['id']}/stop")
    resumed = api.call("carol", "POST", f"/campaigns/{first['id']}/resume", json={"max_cost_usd": 100})
    assert resumed.json()["config"]["max_cost_usd"] == pytest.approx(0.75 + 0.25)  # spent, plus what is left
    api.call("carol", "POST", f"/campaigns/{first['id']}/stop")
    store = Store.open(str(api.db))
    try:
        store.record_calls(second["id"], 1, [LLMCallRecord(model="paid", template=None, prompt_tokens=1,
                                                           completion_tokens=1, cost_usd=0.25, latency_s=0.1, ok=True)])
    finally:
        store.close()
    spent = api.start("carol")
    assert spent.status_code == 429
    assert spent.json()["field"] == "max_cost_usd"


def test_every_write_is_audited_by_name_and_no_token_value_is_stored_or_logged(
        api: Api, caplog: pytest.LogCaptureFixture) -> None:
    api.make("alice", "run")
    api.make("bob", "run")
    cid = api.start("alice").json()["id"]
    api.call("bob", "POST", f"/campaigns/{cid}/stop")
    api.call("alice", "POST", f"/campaigns/{cid}/stop")
    api.call(None, "POST", "/campaigns", json=CAMPAIGN)
    api.call("admin", "POST", "/tokens/bob/revoke")
    api.call("bob", "POST", f"/campaigns/{cid}/resume")
    trail = api.call("admin", "GET", "/audit").json()
    seen = [(e["actor"], e["action"], e["target"], e["outcome"]) for e in trail]
    assert seen == [
        ("EVOLVE_API_TOKEN", "token_create", "alice", "ok"),
        ("EVOLVE_API_TOKEN", "token_create", "bob", "ok"),
        ("alice", "start", cid, "ok"),
        ("bob", "stop", cid, "refused"),
        ("alice", "stop", cid, "ok"),
        ("anonymous", "start", None, "refused"),
        ("EVOLVE_API_TOKEN", "token_revoke", "bob", "ok"),
        ("unknown token", "resume", cid, "refused"),
    ]
    assert api.call("admin", "GET", "/audit", params={"actor": "alice"}).json()[0]["action"] == "start"
    raw = b"".join(p.read_bytes() for p in api.db.parent.glob("api.db*"))  # the database, its WAL and shared memory
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert logged  # the search below has something to search
    for value in [*api.tokens.values()]:
        assert value.encode() not in raw
        assert value not in logged
        assert value not in str(trail)
