"""The problem library as a whole: listed, documented, evaluable, and no known best in any prompt."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from evolve.archive import Sample, SampleMode
from evolve.blocks import find_regions
from evolve.diff import apply_diff
from evolve.llm.mutator import propose_edits
from evolve.problem import builtin_problem_names, resolve_problem
from evolve.prompting import PromptBuilder
from evolve.values import EvalStatus, Origin, Program
from tests.cli.helpers import evolve
from tests.problems.helpers import evaluate

EXPECTED = {"circle_packing", "circle_packing_32", "function_minimization", "online_bin_packing", "cap_set",
            "tsp_heuristic", "autocorrelation", "matmul_rank"}
README = Path(__file__).resolve().parents[2] / "README.md"


def test_evolve_problems_lists_every_problem_with_objective_and_known_best(tmp_path: Path) -> None:
    rows = {r["name"]: r for r in json.loads(evolve("problems", "--json", cwd=tmp_path).stdout)}
    assert set(rows) == EXPECTED == set(builtin_problem_names())
    for name, row in rows.items():
        assert row["known_best"] is not None and row["known_best_source"], name
        assert row["direction"] in ("maximize", "minimize") and row["metric"]
    assert rows["circle_packing_32"]["known_best"] == 2.939572775 and rows["cap_set"]["known_best"] == 512
    assert rows["tsp_heuristic"]["stages"] == ["small", "full"] and rows["online_bin_packing"]["held_out"]
    text = evolve("problems", cwd=tmp_path).stdout
    assert all(name in text for name in EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_problem_is_documented_in_its_folder_and_in_the_readme_table(name: str) -> None:
    problem = resolve_problem(name)
    doc = (Path(problem.source) / "README.md").read_text()
    for section in ("**What it is.**", "**How it is scored.**", "**Why a program cannot learn its instances.**",
                    "**Known best.**", "**What the evaluator rejects"):
        assert section in doc, f"{name}/README.md lacks {section}"
    assert problem.config.known_best is not None
    assert f"{problem.config.known_best.value:.10g}" in doc.replace(",", "")
    assert re.search(rf"^\| \[`{name}`\]\(problems/{name}/README.md\) \|", README.read_text(), re.MULTILINE)
    assert "README.md" not in problem.extra_files  # documentation is not part of the problem's content


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_initial_program_evaluates_and_the_prompt_leaks_no_known_best(name: str) -> None:
    problem = resolve_problem(name)
    result = evaluate(name, problem.initial_program)
    assert result.status is EvalStatus.OK, result.artifacts
    parent = Program(id="p", campaign_id="c", code=problem.initial_program, parent_id=None, island=0, generation=0,
                     iteration=0, origin=Origin.INITIAL, status=result.status,
                     score=result.objective(problem.config.objective.metric), fitness=0.0, metrics=result.metrics,
                     features=result.features, artifacts=result.artifacts)
    sample = Sample(parent=parent, mode=SampleMode.EXPLOIT, inspirations=[parent], failures=[])
    assert problem.config.known_best is not None
    for mode in ("diff", "rewrite"):
        prompt = "\n".join(m["content"] for m in PromptBuilder(problem.config).build(sample, mode=mode))
        assert problem.config.known_best.source not in prompt
        assert "known best" not in prompt.lower()
        value = f"{problem.config.known_best.value:.10g}"
        if len(value) >= 4:  # short values (0, 1, 30, 512) occur in any program text
            assert value not in prompt, f"{name}: the known best {value} is in the prompt"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_mutator_can_edit_every_initial_program(name: str) -> None:
    initial = resolve_problem(name).initial_program
    children = set()
    for seed in range(5):
        edits = propose_edits(initial, np.random.default_rng(seed))
        assert edits, f"{name}: the mutator found nothing to change"
        child = apply_diff(initial, edits)  # raises DiffError for an edit outside the blocks or a broken frame
        assert child != initial and find_regions(child).frozen == find_regions(initial).frozen
        compile(child, f"{name} child", "exec")
        children.add(child)
    assert len(children) > 1, f"{name}: five seeds made the same child"
