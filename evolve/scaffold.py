"""``evolve new``: a problem folder to start from, which passes ``evolve check`` as generated.

The default scaffold is a small real problem (spread 12 points in the unit
square as far apart as possible), with every field of ``problem.yaml``
explained, optional ones shown commented out, an evaluator that validates the
candidate's answer with ``evolve.evaluators``' checks and a held-out stage.
``like=NAME`` copies a built-in problem's folder instead, under the new name.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from evolve.errors import ProblemError
from evolve.problem import CONFIG_FILE, EVALUATOR_FILE, PROGRAM_FILE, README_FILE, builtin_problem_names, problem_root

__all__ = ["new_problem", "problem_name_for"]

_NAME = re.compile(r"[^A-Za-z0-9_.-]+")

PROBLEM_YAML = """\
# {name}: a problem for evolve. Check it with `evolve check {folder}`, run it with `evolve run {folder}`.

# The problem's name (letters, digits, '_', '.', '-'): campaigns and the dashboard show it.
name: {yaml_name}

# What the program must do. The model reads this in every prompt: say what the evolved
# function receives and returns, and how it is scored.
description: |
  Place 12 points in the unit square [0, 1] x [0, 1] so that the smallest distance
  between any two of them is as large as possible. `points(n)` returns a list of n
  [x, y] pairs, every coordinate within [0, 1]. The score is the smallest pairwise
  distance (higher is better).

# The single score the archive ranks by: a metric evaluate() returns, and its direction.
objective:
  metric: min_distance
  direction: maximize      # or: minimize
  # weights:               # instead, the controller forms the metric as a weighted sum
  #   min_distance: 1.0
  #   code_length: -0.0001

# MAP-Elites axes (at most 8): each a metric or feature evaluate() returns, or one the
# controller computes from the program's text (code_length, line_count). Values outside
# [min, max] clamp to the edge bins.
features:
  - name: code_length
    min: 100
    max: 2000
    bins: 8
  - name: spread
    min: 0.0
    max: 1.0
    bins: 5

# Limits of one evaluation, applied inside the sandbox.
limits:
  timeout_s: 20            # wall time of a whole evaluation
  # cpu_s: 20              # CPU seconds of one candidate call (default: timeout_s)
  memory_mb: 512           # memory of the candidate
  processes: 16            # processes and threads the candidate may run at once
  output_bytes: 1048576    # cap on the candidate's captured stdout+stderr
  # num_cpus: 1            # CPUs each evaluation requests from a Ray cluster (--executor ray)
  # num_gpus: 0            # GPUs each evaluation requests from a Ray cluster

# The Pareto front's objectives (default: the objective alone).
# objectives:
#   - metric: min_distance
#     direction: maximize
#   - metric: code_length
#     direction: minimize

# An evaluation cascade, cheap to expensive: a candidate that fails a stage, or misses its
# threshold, stops there (default: one stage calling evaluate).
# stages:
#   - name: quick
#     function: evaluate_quick
#     threshold: {{metric: min_distance, at_least: 0.1}}
#     limits: {{timeout_s: 5}}
#   - name: full
#     function: evaluate

# Scores a program on instances the search never sees, for reports (evolve best) only.
held_out:
  name: held_out
  function: evaluate_held_out

# The best value known, with where it comes from: reports show how close a campaign got.
# known_best:
#   value: 0.4
#   source: "a reference for the 12-point spread"
"""

INITIAL_PROGRAM = '''\
"""{name}: spread points in the unit square as far apart as possible."""


# EVOLVE-BLOCK-START
def points(n):
    """A square grid, rows filled in order: a plain start for the search."""
    side = 1
    while side * side < n:
        side += 1
    step = 1.0 / (side - 1) if side > 1 else 0.0
    return [[(i % side) * step, (i // side) * step] for i in range(n)]
# EVOLVE-BLOCK-END
'''

EVALUATOR = '''\
"""Trusted evaluator of {name}: runs outside the sandbox; the candidate runs inside it.

``candidate.call("points", n)`` runs the program's function in the sandbox and
returns its answer as data. The checks in ``evolve.evaluators`` turn that data
into validated values or raise ``Invalid`` (the program is recorded invalid,
with the message, which the model reads in its next prompt). Return
``{{"metrics": {{...}}, "features": {{...}}, "artifacts": {{...}}}}``; numbers
must be finite.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from evolve.evaluators import Candidate, Invalid, as_array

N = 12


def _score(candidate: Candidate, n: int) -> dict[str, Any]:
    pts = as_array(candidate.call("points", n), "points", shape=(n, 2), low=0.0, high=1.0)
    gaps = np.linalg.norm(pts[:, None, :] - pts[None, :, :], axis=-1)
    gaps[np.diag_indices(n)] = np.inf
    smallest = float(gaps.min())
    if smallest <= 0.0:
        raise Invalid("two points coincide")
    spread = float(np.ptp(pts, axis=0).mean())  # how much of the square the points span, in [0, 1]
    return {{"metrics": {{"min_distance": smallest}}, "features": {{"spread": spread}},
             "artifacts": {{"closest_pair": f"{{smallest:.6f}}"}}}}


def evaluate(candidate: Candidate) -> dict[str, Any]:
    """The search's score: the 12-point spread."""
    return _score(candidate, N)


def evaluate_held_out(candidate: Candidate) -> dict[str, Any]:
    """For reports: the same rule for 16 points, which the search never scores."""
    return _score(candidate, 16)
'''

README = """\
# {name}

Spread 12 points in the unit square as far apart as possible (the scaffold of `evolve new`:
edit every file to your problem).

- `problem.yaml`: the problem's description, objective, feature axes, limits and stages.
- `initial_program.py`: the starting program; only the code between the EVOLVE-BLOCK markers evolves.
- `evaluator.py`: trusted code that calls the candidate in the sandbox and scores what it returns.

Then:

    evolve check {folder}                     # the initial program evaluates, with what to fix if not
    evolve eval {folder} my_candidate.py      # score one program exactly as a campaign would
    evolve run {folder} --iterations 50       # a campaign
"""


def problem_name_for(folder: Path) -> str:
    """A valid problem name from a folder's name (at most 100 characters)."""
    name = _NAME.sub("_", folder.resolve().name).strip("_.-")[:100].strip("_.-")
    return name or "my_problem"


def _yaml_name(name: str) -> str:
    """The name as a YAML string, whatever it looks like (2024, yes, null and 1.5 would parse as other types)."""
    return json.dumps(name)


def _refuse_existing(folder: Path) -> None:
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ProblemError(f"{folder} already exists and is not an empty folder: choose a new folder for the problem")


def new_problem(folder: Path, *, like: str | None = None) -> Path:
    """Write a new problem folder (the scaffold, or a copy of the built-in ``like``) and return it.

    Raises:
        ProblemError: when ``folder`` exists and is not empty, or ``like`` is no built-in problem.
    """
    _refuse_existing(folder)
    name = problem_name_for(folder)
    existed = folder.exists()
    try:
        if like is not None:
            if like not in builtin_problem_names():
                raise ProblemError(f"unknown built-in problem '{like}': use one of {', '.join(builtin_problem_names())}")
            shutil.copytree(problem_root() / like, folder, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", ".*"))
            config = folder / CONFIG_FILE
            text = config.read_text(encoding="utf-8")
            config.write_text(re.sub(r"^name:.*$", lambda _: f"name: {_yaml_name(name)}", text, count=1, flags=re.MULTILINE),
                              encoding="utf-8")
            return folder
        folder.mkdir(parents=True, exist_ok=True)
        for file, template in ((CONFIG_FILE, PROBLEM_YAML), (PROGRAM_FILE, INITIAL_PROGRAM), (EVALUATOR_FILE, EVALUATOR),
                               (README_FILE, README)):
            text = template.format(name=name, folder=folder, yaml_name=_yaml_name(name))
            (folder / file).write_text(text, encoding="utf-8")
        return folder
    except (OSError, shutil.Error) as exc:
        if not existed:
            shutil.rmtree(folder, ignore_errors=True)
        raise ProblemError(f"cannot create the problem folder {folder}: {exc}") from exc
