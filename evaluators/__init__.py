"""Trusted evaluation: what problem evaluators use, and the controller's runner."""

from evolve.evaluators.candidate import Candidate, CandidateError, CandidateTimeout, Invalid

__all__ = ["Candidate", "CandidateError", "CandidateTimeout", "Invalid"]
