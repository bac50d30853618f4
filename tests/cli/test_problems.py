"""Writing a problem, as a user does in their first hour: ``evolve new``, ``check`` and ``eval`` in real processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evolve.problem import Problem
from tests.cli.helpers import evolve
from tests.conftest import QUADRATIC_EVALUATOR, write_problem

GOOD = "# EVOLVE-BLOCK-START\ndef solve():\n    return 2.9\n# EVOLVE-BLOCK-END\n"
CRASHES = "# EVOLVE-BLOCK-START\ndef solve():\n    return 1 / 0\n# EVOLVE-BLOCK-END\n"
SPREAD = """\
import math
# EVOLVE-BLOCK-START
def points(n):
    return [[0.5 + 0.45 * math.cos(2 * math.pi * i / n), 0.5 + 0.45 * math.sin(2 * math.pi * i / n)] for i in range(n)]
# EVOLVE-BLOCK-END
"""


def test_a_new_scaffold_passes_check_and_runs_a_campaign(tmp_path: Path) -> None:
    made = evolve("new", "spread", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert "evolve check spread" in made.stdout
    folder = tmp_path / "spread"
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "evaluator.py", "initial_program.py", "problem.yaml"]
    config = (folder / "problem.yaml").read_text()
    for field in ("name:", "description:", "objective:", "features:", "limits:", "timeout_s:", "cpu_s:", "memory_mb:",
                  "processes:", "output_bytes:", "num_cpus:", "num_gpus:", "weights:", "objectives:", "stages:",
                  "threshold:", "held_out:", "known_best:"):
        assert field in config, f"{field} is not shown in the scaffold's problem.yaml"
    assert Problem.from_folder(folder).name == "spread"
    checked = evolve("check", "spread", "--json", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    report = json.loads(checked.stdout)
    assert report["ok"] and report["findings"] == [] and report["sandbox"] in {"bwrap", "docker"}
    assert report["initial_program"]["metrics"]["min_distance"] == pytest.approx(1 / 3)
    assert report["held_out"]["stage"] == "held_out" and report["held_out"]["status"] == "ok"
    run = evolve("run", "spread", "--model", "mutator", "--iterations", "6", "--db", "s.db", "-q", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "finished, 6/6 iterations" in run.stdout


def test_new_like_a_builtin_copies_it_under_the_new_name(tmp_path: Path) -> None:
    made = evolve("new", "mine", "--like", "circle_packing", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    mine, builtin = Problem.from_folder(tmp_path / "mine"), Problem.builtin("circle_packing")
    assert mine.name == "mine" and mine.evaluator_source == builtin.evaluator_source
    assert mine.initial_program == builtin.initial_program and mine.extra_files == builtin.extra_files


@pytest.mark.parametrize("folder", ["2024", "yes", "null", "1.5"])
def test_a_folder_name_yaml_would_read_as_another_type_still_names_the_problem(tmp_path: Path, folder: str) -> None:
    assert evolve("new", folder, cwd=tmp_path).returncode == 0
    assert Problem.from_folder(tmp_path / folder).name == folder
    assert evolve("new", f"{folder}-copy", "--like", "cap_set", cwd=tmp_path).returncode == 0
    assert Problem.from_folder(tmp_path / f"{folder}-copy").name == f"{folder}-copy"


def test_eval_scores_a_program_as_a_campaign_would(tmp_path: Path) -> None:
    write_problem(tmp_path / "quad")
    (tmp_path / "good.py").write_text(GOOD)
    result = evolve("eval", "quad", "good.py", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["status"] == "ok" and data["stage"] == "evaluate" and data["sandbox"] in {"bwrap", "docker"}
    assert data["score"] == pytest.approx(-(0.1**2)) and data["metrics"]["value"] == data["score"]
    assert data["features"]["x"] == pytest.approx(2.9)
    text = evolve("eval", "quad", "good.py", cwd=tmp_path)
    assert text.returncode == 0 and "good.py on quadratic" in text.stdout and "stage reached: evaluate" in text.stdout


def test_eval_of_a_failing_program_says_why_and_exits_1(tmp_path: Path) -> None:
    write_problem(tmp_path / "quad")
    (tmp_path / "crash.py").write_text(CRASHES)
    result = evolve("eval", "quad", "crash.py", cwd=tmp_path)
    assert result.returncode == 1
    assert "error" in result.stdout and "ZeroDivisionError" in result.stdout and "Traceback (most recent" not in result.stderr


def test_eval_held_out_scores_the_held_out_stage(tmp_path: Path) -> None:
    assert evolve("new", "spread", cwd=tmp_path).returncode == 0
    (tmp_path / "ring.py").write_text(SPREAD)
    search = json.loads(evolve("eval", "spread", "ring.py", "--json", cwd=tmp_path).stdout)
    held = json.loads(evolve("eval", "spread", "ring.py", "--held-out", "--json", cwd=tmp_path).stdout)
    assert search["stage"] == "evaluate" and held["stage"] == "held_out" and held["held_out"]
    # 12 and 16 points on a circle of radius 0.45: the held-out instances (16 points) sit closer together
    assert held["score"] < search["score"]


def test_check_names_the_file_to_fix(tmp_path: Path) -> None:
    write_problem(tmp_path / "crashing", program=CRASHES)
    crashing = evolve("check", "crashing", cwd=tmp_path)
    assert crashing.returncode == 1
    assert "fix initial_program.py:" in crashing.stderr and "ZeroDivisionError" in crashing.stderr
    broken_evaluator = QUADRATIC_EVALUATOR.replace("def evaluate(candidate):", "def evaluate(candidate):\n    raise KeyError('oops')")
    write_problem(tmp_path / "broken", evaluator=broken_evaluator)
    broken = json.loads(evolve("check", "broken", "--json", cwd=tmp_path).stdout)
    assert not broken["ok"] and broken["findings"][0]["file"] == "evaluator.py" and "oops" in broken["findings"][0]["message"]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["eval", "quad", "missing.py"], "no candidate program at missing.py"),
        (["eval", "quad", "binary.py"], "cannot read the candidate program binary.py"),
        (["eval", "no_such_problem", "good.py"], "unknown problem 'no_such_problem'"),
        (["eval", "quad", "good.py", "--held-out"], "declares no held_out stage"),
        (["eval", "quad", "good.py", "--sandbox", "chroot"], "'chroot' is not one of"),
        (["check", "no_such_problem"], "unknown problem 'no_such_problem'"),
        (["check", "nomarkers"], "EVOLVE-BLOCK"),
        (["check", "badyaml"], "problem.yaml"),
        (["new", "quad"], "quad already exists and is not an empty folder"),
        (["new", "fresh", "--like", "no_such_problem"], "unknown built-in problem 'no_such_problem'"),
        (["new", "/proc/evolve-new-test"], "cannot create the problem folder /proc/evolve-new-test"),
    ],
)
def test_bad_input_gives_one_line_and_exit_code_2(tmp_path: Path, args: list[str], fragment: str) -> None:
    write_problem(tmp_path / "quad")
    write_problem(tmp_path / "nomarkers", program="def solve():\n    return 1.0\n")
    write_problem(tmp_path / "badyaml").joinpath("problem.yaml").write_text("name: [unclosed\n")
    (tmp_path / "good.py").write_text(GOOD)
    (tmp_path / "binary.py").write_bytes(b"\xff\xfe\x00bad")
    result = evolve(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert fragment in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "fresh").exists()
