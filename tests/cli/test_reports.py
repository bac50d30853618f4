"""Reports a user reads after a campaign: cascade stages, the Pareto front, held-out scores."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from evolve.store import Store
from tests.cli.helpers import evolve
from tests.conftest import write_problem
from tests.evaluators.test_cascade import CASCADE_EVALUATOR, program

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


def test_status_fits_an_80_column_terminal_and_keeps_the_table_when_wide(campaign_db: Path) -> None:
    narrow = evolve("status", "--db", str(campaign_db), cwd=campaign_db.parent, env={**os.environ, "COLUMNS": "80"}).stdout
    campaign = json.loads(evolve("status", "--db", str(campaign_db), "--json", cwd=campaign_db.parent).stdout)[0]
    assert "…" not in narrow and "┃" not in narrow  # no table cut to a few characters per column
    assert f"{campaign['id']} reports: finished, iterations 30/30" in narrow
    assert f"{campaign['programs']} programs ({campaign['valid_programs']} valid)" in narrow
    wide = evolve("status", "--db", str(campaign_db), cwd=campaign_db.parent, env={**os.environ, "COLUMNS": "160"}).stdout
    assert "┃ id" in wide and "…" not in wide


def test_export_writes_the_best_programs_with_their_metrics(campaign_db: Path, tmp_path: Path) -> None:
    result = evolve("export", "--db", str(campaign_db), "--top", "3", "--out", str(tmp_path / "best"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    index = json.loads((tmp_path / "best" / "programs.json").read_text())
    best = json.loads(evolve("best", "--db", str(campaign_db), "--json", cwd=tmp_path).stdout)
    ranked = index["programs"]
    assert 1 <= len(ranked) <= 3 and index["metric"] == "score" and index["direction"] == "maximize"
    assert ranked[0]["id"] == best["program_id"] and ranked[0]["score"] == best["score"]
    assert [r["score"] for r in ranked] == sorted((r["score"] for r in ranked), reverse=True)
    assert (tmp_path / "best" / ranked[0]["file"]).read_text() == best["code"]
    assert len({(tmp_path / "best" / r["file"]).read_text() for r in ranked}) == len(ranked)  # distinct programs


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_export_writes_every_program_as_rows(campaign_db: Path, tmp_path: Path, fmt: str) -> None:
    target = tmp_path / f"all.{fmt}"
    result = evolve("export", "--db", str(campaign_db), "--format", fmt, "--out", str(target), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    store = Store.open(str(campaign_db))
    programs = {p.id: p for p in store.list_programs(store.list_campaigns()[0].id)}
    store.close()
    if fmt == "jsonl":
        rows = [json.loads(line) for line in target.read_text().splitlines()]
        assert {r["id"]: r["code"] for r in rows} == {k: p.code for k, p in programs.items()}
        assert all(r["metrics"] == programs[r["id"]].metrics and r["status"] == programs[r["id"]].status.value for r in rows)
    else:
        with target.open(newline="") as stream:
            rows = list(csv.DictReader(stream))
        assert {r["id"]: r["code"] for r in rows} == {k: p.code for k, p in programs.items()}
        ok = next(r for r in rows if r["status"] == "ok")
        assert float(ok["metric.value"]) == pytest.approx(programs[ok["id"]].metrics["value"])
    to_stdout = evolve("export", "--db", str(campaign_db), "--format", fmt, cwd=tmp_path)
    assert to_stdout.stdout == target.read_text()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["export", "--db", "missing.db"], "no database at missing.db"),
        (["export", "--db", "DB", "--campaign", "nope"], "no campaign 'nope'"),
        (["export", "--db", "DB", "--out", "full"], "full exists and is not an empty folder"),
        (["export", "--db", "DB", "--top", "0"], "0 is not in the range x>=1"),
        (["export", "--db", "DB", "--format", "xml"], "'xml' is not one of"),
        (["export", "--db", "DB", "--format", "csv", "--out", "nowhere/x.csv"], "cannot write nowhere/x.csv"),
    ],
)
def test_export_bad_input_gives_one_line_and_exit_code_2(campaign_db: Path, tmp_path: Path, args: list[str],
                                                         fragment: str) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    result = evolve(*[str(campaign_db) if a == "DB" else a for a in args], cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert fragment in result.stderr and "Traceback" not in result.stderr
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
