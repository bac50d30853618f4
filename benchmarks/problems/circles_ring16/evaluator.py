"""Trusted evaluator of circle_packing (26 circles).

The candidate's ``construct_packing()`` runs in the sandbox; only its returned
arrays come back here. The checks and the score are recomputed from them
(``evolve.evaluators.circles``): a candidate cannot print, patch or forge its
way to a score.
"""

from __future__ import annotations

from typing import Any

from evolve.evaluators import Candidate
from evolve.evaluators.circles import evaluate_packing

N_CIRCLES = 26


def evaluate(candidate: Candidate) -> dict[str, Any]:
    return evaluate_packing(candidate, N_CIRCLES)
