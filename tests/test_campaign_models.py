"""Campaigns against real models over HTTP on loopback: faults, budgets, ensembles, fatal errors."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from evolve.campaign import Campaign
from evolve.config import CampaignConfig, ModelSpec
from evolve.diff import render_diff
from evolve.errors import LLMError
from evolve.llm.mutator import propose_edits
from evolve.problem import Problem
from evolve.store import Store
from evolve.store.leases import new_owner
from evolve.values import CampaignStatus, EvalStatus
from tests.llm.openai_server import FAULTS, serve

FAULT_OUTCOME = {
    None: "ok", "rate_limit": "rate_limited", "server_error": "server_error", "hang": "timeout",
    "invalid_json": "bad_response", "empty": "empty", "truncated": "truncated", "drop": "connection", "auth": "auth",
    "outage": "server_error", "payment": "auth", "forbidden": "auth", "not_found": "not_found",
}
FAST_RETRIES = {"retry_base_s": 0.05, "retry_max_s": 0.2}


def mutating_answer(body: dict[str, Any]) -> str:
    """A model that edits the program in its prompt (a real diff, different per prompt)."""
    prompt = "\n".join(m["content"] for m in body["messages"])
    code = re.findall(r"```python\n(.*?)```", prompt, re.DOTALL)[-1]
    return "Try another constant.\n" + render_diff(propose_edits(code, np.random.default_rng(len(prompt) + len(body["messages"]))))


def create(store: Store, problem: Problem, tmp_path: Path, **config: Any) -> Campaign:
    cfg = CampaignConfig.model_validate({"eval_concurrency": 2, "llm_concurrency": 2, **config})
    return asyncio.run(Campaign.create(store, problem, cfg, workdir=tmp_path / "work"))


def stub(base: str, **extra: Any) -> dict[str, Any]:
    return {"name": "openai/stub-model", "api_base": base, **FAST_RETRIES, **extra}


def test_a_faulty_provider_slows_the_campaign_but_every_request_is_recorded_and_nothing_lost(
    file_store: Store, quadratic: Problem, tmp_path: Path
) -> None:
    shares = {"rate_limit": 0.08, "server_error": 0.08, "hang": 0.05, "invalid_json": 0.08, "empty": 0.06, "truncated": 0.06,
              "drop": 0.06}
    with serve(mutating_answer, faults=shares, seed=7, retry_after="0.2") as (base, server):
        campaign = create(file_store, quadratic, tmp_path, iterations=24, islands=2, models=[stub(base, timeout_s=1.0)])
        assert asyncio.run(campaign.run()) is CampaignStatus.FINISHED
    assert set(server.faults_seen()) == {None, *shares}, "the seed must exercise every fault"
    row = file_store.get_campaign(campaign.id)
    programs = file_store.list_programs(campaign.id)
    assert row.iterations_done == 24 and len(programs) == 25 and sorted(p.iteration for p in programs) == list(range(25))
    calls = file_store.llm_calls(campaign.id)
    # one stored row per request the server saw, each with the outcome of the fault it got
    assert Counter(c.outcome for c in calls) == Counter(FAULT_OUTCOME[e.fault] for e in server.log)
    assert all(c.error for c in calls if c.outcome not in ("ok", "empty", "truncated"))
    assert {c.attempt for c in calls} >= {1, 2}
    assert row.prompt_tokens == sum(c.prompt_tokens for c in calls) == 120 * sum(e.fault in (None, "empty", "truncated") for e in server.log)
    empty = [p for p in programs if p.artifacts.get("error", "").startswith("the model's answer is empty")]
    assert all(p.status is EvalStatus.DIFF_FAILED for p in empty)
    assert sum(p.status is EvalStatus.OK for p in programs[1:]) >= 8


def test_a_provider_down_for_a_while_slows_the_campaign_and_loses_no_proposal(
    file_store: Store, quadratic: Problem, tmp_path: Path
) -> None:
    with serve(mutating_answer, outage_s=3.0) as (base, server):
        campaign = create(file_store, quadratic, tmp_path, iterations=8, islands=1,
                          models=[stub(base, retry_base_s=0.2, retry_max_s=1.0)])
        assert asyncio.run(campaign.run()) is CampaignStatus.FINISHED
    assert server.log[-1].started - server.log[0].started >= 3.0
    programs = file_store.list_programs(campaign.id)[1:]
    assert len(programs) == 8 and not any(p.status is EvalStatus.LLM_FAILED for p in programs)
    outages = server.faults_seen().get("outage", 0)
    assert outages >= 4 and len(file_store.llm_calls(campaign.id)) == len(server.log) == 8 + outages


def test_a_bad_key_stops_the_campaign_after_recording_the_failure_and_resume_continues(
    file_store: Store, quadratic: Problem, tmp_path: Path
) -> None:
    with serve(mutating_answer, faults={"auth": 1.0}) as (base, server):
        campaign = create(file_store, quadratic, tmp_path, iterations=6, islands=1, models=[stub(base)])
        with pytest.raises(LLMError, match=r"refused the credentials.*evolve resume"):
            asyncio.run(campaign.run())
    row = file_store.get_campaign(campaign.id)
    assert row.status is CampaignStatus.FAILED and "credentials" in (row.error or "")
    # no retries and no new proposals once a provider says no: one request per proposal already in flight
    assert 1 <= row.iterations_done <= 4 and len(server.log) == row.iterations_done
    assert all(c.outcome == "auth" for c in file_store.llm_calls(campaign.id))
    with serve(mutating_answer) as (base, _):  # the key is fixed: same campaign, provider answers now
        config = row.config.model_copy(update={"models": [ModelSpec.model_validate(stub(base))]})
        fixer = new_owner()  # the user's edit of the stored config, as its own short claim
        file_store.claim_campaign(campaign.id, fixer, owner_alive=lambda o: False, target=None, config=config)
        file_store.set_status(campaign.id, CampaignStatus.STOPPED, owner=fixer)
        resumed = Campaign.resume(file_store, campaign.id, workdir=tmp_path / "w2")
        assert asyncio.run(resumed.run()) is CampaignStatus.FINISHED
    assert file_store.get_campaign(campaign.id).iterations_done == 6


def test_a_cost_budget_stops_within_one_in_flight_batch_and_resume_respects_what_was_spent(
    file_store: Store, quadratic: Problem, tmp_path: Path
) -> None:
    per_call = (120 * 1000 + 30 * 1000) / 1e6  # $0.15 at the overridden price
    priced = {"input_usd_per_mtok": 1000.0, "output_usd_per_mtok": 1000.0}
    depth = 2 + 2  # eval + llm concurrency: the most proposals in flight when the budget is reached
    with serve(mutating_answer) as (base, server):
        campaign = create(file_store, quadratic, tmp_path, iterations=100, islands=1, max_cost_usd=1.0, models=[stub(base, **priced)])
        assert asyncio.run(campaign.run()) is CampaignStatus.BUDGET_SPENT
        spent = file_store.get_campaign(campaign.id).cost_usd
        assert 1.0 <= spent <= 1.0 + depth * per_call + 1e-9
        assert spent == pytest.approx(len(server.log) * per_call)
        assert campaign.stop_reason is not None and "cost budget reached" in campaign.stop_reason
        assert any(e["kind"] == "budget_reached" for e in file_store.events(campaign.id))

        again = Campaign.resume(file_store, campaign.id, workdir=tmp_path / "w2")
        before = len(server.log)
        assert asyncio.run(again.run()) is CampaignStatus.BUDGET_SPENT
        assert len(server.log) == before  # the budget was already spent: not one more call

        more = Campaign.resume(file_store, campaign.id, workdir=tmp_path / "w3", budgets={"max_cost_usd": 2.0})
        assert asyncio.run(more.run()) is CampaignStatus.BUDGET_SPENT
    row = file_store.get_campaign(campaign.id)
    assert 2.0 <= row.cost_usd <= 2.0 + depth * per_call + 1e-9 and row.config.max_cost_usd == 2.0
    assert row.cost_usd == pytest.approx(sum(c.cost_usd for c in file_store.llm_calls(campaign.id)))


def test_a_token_budget_stops_the_campaign(file_store: Store, quadratic: Problem, tmp_path: Path) -> None:
    with serve(mutating_answer) as (base, server):
        campaign = create(file_store, quadratic, tmp_path, iterations=100, islands=1, max_tokens=1000, models=[stub(base)])
        assert asyncio.run(campaign.run()) is CampaignStatus.BUDGET_SPENT
    row = file_store.get_campaign(campaign.id)
    assert 1000 <= row.prompt_tokens + row.completion_tokens <= 1000 + 4 * 150
    assert row.iterations_done == len(server.log) < 100


def test_an_ensemble_records_which_model_made_each_proposal_and_reports_per_model_stats(
    file_store: Store, quadratic: Problem, tmp_path: Path
) -> None:
    with serve(mutating_answer) as (base, server):
        models = [{"name": "mutator", "weight": 3.0}, stub(base, weight=1.0, temperature=0.3, max_tokens=256)]
        campaign = create(file_store, quadratic, tmp_path, iterations=40, islands=2, models=models)
        assert asyncio.run(campaign.run()) is CampaignStatus.FINISHED
    programs = file_store.list_programs(campaign.id)[1:]
    by_model = Counter(p.model for p in programs)
    assert set(by_model) == {"mutator", "openai/stub-model"} and by_model["mutator"] > by_model["openai/stub-model"]
    assert {(e.body["temperature"], e.body["max_tokens"]) for e in server.log} == {(0.3, 256)}
    stats = {s.model: s for s in file_store.model_stats(campaign.id)}
    assert sum(s.proposals for s in stats.values()) == 40
    for name, s in stats.items():
        mine = [p for p in programs if p.model == name]
        assert s.proposals == len(mine) and s.valid == sum(p.status is EvalStatus.OK for p in mine)
        assert s.template == "diff" and 0 <= s.success_rate <= 1 and s.improved <= s.valid
    assert stats["openai/stub-model"].requests == len(server.log)
    assert stats["openai/stub-model"].prompt_tokens == 120 * len(server.log)
    parents = file_store.get_programs([p.parent_id for p in programs if p.parent_id])
    gains = [p.fitness - (parents[p.parent_id].fitness or 0.0) for p in programs
             if p.model == "mutator" and p.status is EvalStatus.OK and p.fitness is not None and p.parent_id]
    assert stats["mutator"].mean_improvement == pytest.approx(sum(gains) / len(gains))


def test_every_fault_kind_has_an_expected_outcome() -> None:
    assert set(FAULTS) <= set(FAULT_OUTCOME)
