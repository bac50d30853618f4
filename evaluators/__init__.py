"""Trusted evaluation: what problem evaluators use, and the controller's runner."""

from __future__ import annotations

from typing import Any

from evolve.evaluators.candidate import Candidate, CandidateError, CandidateSession, CandidateTimeout, Invalid

__all__ = ["Candidate", "CandidateError", "CandidateSession", "CandidateTimeout", "Invalid", "as_array", "as_list", "as_number"]


def __getattr__(name: str) -> Any:
    # the checks import NumPy: load them when an evaluator asks, not in every evaluator process
    if name in ("as_array", "as_list", "as_number"):
        from evolve.evaluators import checks

        return getattr(checks, name)
    raise AttributeError(f"module 'evolve.evaluators' has no attribute {name!r}")
