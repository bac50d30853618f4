from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evolve.errors import ProblemError
from evolve.problem import FeatureAxis, builtin_problem_names, load_problem, parse_config, resolve_problem
from tests.conftest import QUADRATIC_YAML, write_problem


def test_builtin_problems_load_and_validate() -> None:
    assert {"circle_packing", "function_minimization"} <= set(builtin_problem_names())
    cp = resolve_problem("circle_packing")
    assert cp.config.objective.metric == "sum_radii" and cp.config.known_best is not None


def test_unknown_key_is_named_with_the_file(tmp_path: Path) -> None:
    folder = write_problem(tmp_path / "p", yaml=QUADRATIC_YAML + "colour: blue\n")
    with pytest.raises(ProblemError, match=r"problem\.yaml: colour: unknown key"):
        load_problem(folder)


@pytest.mark.parametrize(
    ("yaml_text", "fragment"),
    [
        ("name: x\n", "description"),
        (QUADRATIC_YAML.replace("direction: maximize", "direction: upward"), "objective.direction"),
        (QUADRATIC_YAML.replace("bins: 20", "bins: 0"), "features.0.bins"),
        (QUADRATIC_YAML.replace("min: -10", "min: 20"), "max"),
        ("name: [unclosed\n", "not valid YAML"),
        ("- a list\n", "must be a mapping"),
        (QUADRATIC_YAML + "stages:\n  - {name: a, function: f, threshold: {metric: v, at_least: 1}}\n", "last stage .'a'. cannot have a threshold"),
        (QUADRATIC_YAML + "stages:\n  - {name: a, function: f, threshold: {metric: v}}\n  - {name: b, function: g}\n",
         "exactly one of at_least and at_most"),
        (QUADRATIC_YAML + "stages:\n  - {name: a, function: f}\n  - {name: a, function: g}\n", "stages must have distinct names; repeated: a"),
        (QUADRATIC_YAML + "stages:\n  - {name: 'a b', function: f}\n", "stages.0.name"),
        (QUADRATIC_YAML + "stages:\n  - {name: a, function: f, limits: {timeout_s: 0}}\n", "stages.0.limits.timeout_s"),
        (QUADRATIC_YAML + "objectives:\n  - {metric: v}\n  - {metric: v}\n", "objectives must have distinct names"),
        (QUADRATIC_YAML + "objectives:\n  - {metric: v, weights: {a: 1}}\n", "only the main objective may be a weighted sum"),
        (QUADRATIC_YAML.replace("direction: maximize", "weights: {value: 1}"), "cannot weigh itself"),
        (QUADRATIC_YAML.replace("direction: maximize", "weights: {}"), "at least one metric"),
        (QUADRATIC_YAML + "held_out: {name: h, function: f, threshold: {metric: v, at_most: 1}}\n", "held_out cannot have a threshold"),
    ],
)
def test_bad_configs_name_the_field(yaml_text: str, fragment: str) -> None:
    with pytest.raises(ProblemError, match=fragment):
        parse_config(yaml_text, source="p/problem.yaml")


def test_missing_files_markers_and_evaluate(tmp_path: Path) -> None:
    folder = write_problem(tmp_path / "a")
    (folder / "evaluator.py").unlink()
    with pytest.raises(ProblemError, match=r"evaluator\.py: missing"):
        load_problem(folder)
    with pytest.raises(ProblemError, match="no evolvable region"):
        load_problem(write_problem(tmp_path / "b", program="def solve():\n    return 1\n"))
    with pytest.raises(ProblemError, match="evaluate"):
        load_problem(write_problem(tmp_path / "c", evaluator="def score(c):\n    return {}\n"))
    with pytest.raises(ProblemError, match="syntax error"):
        load_problem(write_problem(tmp_path / "d", evaluator="def evaluate(c)\n"))


def test_unknown_problem_lists_the_builtins() -> None:
    with pytest.raises(ProblemError, match="circle_packing"):
        resolve_problem("no_such_problem")


def test_fingerprint_depends_on_content(quadratic_dir: Path) -> None:
    a = load_problem(quadratic_dir)
    (quadratic_dir / "evaluator.py").write_text((quadratic_dir / "evaluator.py").read_text() + "\n# changed\n")
    assert load_problem(quadratic_dir).fingerprint() != a.fingerprint()


@given(st.floats(allow_nan=False), st.integers(1, 50))
def test_binning_clamps_out_of_range_values_to_edge_bins(value: float, bins: int) -> None:
    axis = FeatureAxis(name="f", min=-1.0, max=1.0, bins=bins)
    index = axis.bin(value)
    assert 0 <= index < bins
    if value <= -1.0:
        assert index == 0
    if value >= 1.0:
        assert index == bins - 1


def test_bins_are_fixed_and_evenly_spaced() -> None:
    axis = FeatureAxis(name="f", min=0, max=10, bins=5)
    assert [axis.bin(v) for v in (0, 1.99, 2, 5, 9.99, 10, 1e9, -3)] == [0, 0, 1, 2, 4, 4, 4, 0]
