"""Reports a user reads after a campaign: cascade stages, the Pareto front, held-out scores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evolve.store import Store
from tests.conftest import write_problem
from tests.evaluators.test_cascade import CASCADE_EVALUATOR, program
from tests.test_cli import evolve

REPORT_YAML = """\
name: reports
description: Return a number close to 3 with a short program.
objective:
  metric: score
  direction: maximize
  weights: {value: 1.0, code_length: -0.001}
objectives:
  - {metric: value, direction: maximize}
  - {metric: code_length, direction: minimize}
stages:
  - name: quick
    function: evaluate_quick
    threshold: {metric: rough, at_least: -2}
    limits: {timeout_s: 5}
  - name: full
    function: evaluate_full
held_out:
  name: held_out
  function: evaluate_held_out
limits: {timeout_s: 10}
"""


@pytest.fixture(scope="module")
def campaign_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("reports")
    write_problem(tmp / "reports", yaml=REPORT_YAML, program=program("    return 1.5"), evaluator=CASCADE_EVALUATOR)
    result = evolve("run", str(tmp / "reports"), "--model", "mutator", "--iterations", "30", "--seed", "3",
                    "--sandbox", "process", "--db", str(tmp / "r.db"), cwd=tmp, timeout=300)
    assert result.returncode == 0, result.stderr
    return tmp / "r.db"


def test_the_weighted_scalar_and_the_stage_reached_are_stored(campaign_db: Path) -> None:
    store = Store.open(str(campaign_db))
    programs = store.list_programs(store.list_campaigns()[0].id)
    store.close()
    ok = [p for p in programs if p.status.value == "ok"]
    assert ok and all(p.stage == "full" for p in ok)
    for p in ok:
        assert p.score == pytest.approx(p.metrics["value"] - 0.001 * len(p.code))
        assert p.metrics["code_length"] == len(p.code)
    cut = [p for p in programs if p.status.value == "below_threshold"]
    assert all(p.stage == "quick" and "below the threshold" in p.artifacts["error"] for p in cut)


def test_status_shows_where_evaluations_ended(campaign_db: Path) -> None:
    result = evolve("status", "--db", str(campaign_db), "--json", cwd=campaign_db.parent)
    campaign = json.loads(result.stdout)[0]
    stages = campaign["stages"]
    # every evaluated program (all 31 but the duplicates dedup did not evaluate) says where its evaluation ended
    assert stages.get("full", 0) >= 1 and sum(stages.values()) == 31 - campaign["statuses"].get("duplicate", 0)
    text = evolve("status", "--db", str(campaign_db), cwd=campaign_db.parent).stdout
    assert "evaluations ended at stage:" in text and "full" in text


def test_pareto_lists_non_dominated_programs(campaign_db: Path) -> None:
    result = evolve("pareto", "--db", str(campaign_db), "--json", cwd=campaign_db.parent)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert [o["metric"] for o in data["objectives"]] == ["value", "code_length"]
    front = data["front"]
    assert front
    points = [(r["objectives"]["value"], -r["objectives"]["code_length"]) for r in front]
    for a in points:
        assert not any(b[0] >= a[0] and b[1] >= a[1] and b != a for b in points)
    text = evolve("pareto", "--db", str(campaign_db), cwd=campaign_db.parent).stdout
    assert "Pareto front" in text and "code_length (min)" in text


def test_best_reports_the_held_out_score_once(campaign_db: Path) -> None:
    first = json.loads(evolve("best", "--db", str(campaign_db), "--json", cwd=campaign_db.parent).stdout)
    held = first["held_out"]
    x_is = 3.0 - (-first["metrics"]["value"]) ** 0.5  # the search scores -(x-3)^2; held-out scores -(x-2)^2
    x_alt = 3.0 + (-first["metrics"]["value"]) ** 0.5
    assert held["status"] == "ok" and held["program_id"] == first["program_id"]
    assert min(abs(held["metrics"]["value"] + (x - 2.0) ** 2) for x in (x_is, x_alt)) < 1e-9
    store = Store.open(str(campaign_db))
    events = store.events(first["campaign_id"], kind="held_out")
    again = json.loads(evolve("best", "--db", str(campaign_db), "--json", cwd=campaign_db.parent).stdout)
    assert again["held_out"] == held and len(store.events(first["campaign_id"], kind="held_out")) == len(events) == 1
    store.close()
    text = evolve("best", "--db", str(campaign_db), cwd=campaign_db.parent).stdout
    assert "held-out instances: score =" in text and "search instances:" in text
