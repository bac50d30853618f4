"""The evaluator worker's answer for each cascade stage: what happened, in words both sides share.

The worker (``evolve.evaluators.worker``) writes one ``{"outcome": ..., ...}``
per stage run; the controller (``evolve.evaluators.validate``, ``runner``)
reads them back. A ``StrEnum``, so the JSON carries the plain strings.
"""

from __future__ import annotations

import enum
from typing import Literal

__all__ = ["ExecutorName", "StageOutcome"]

#: where evaluations run, declared once (evolve.evaluators.executor.EXECUTORS, the campaign config, the CLI's choices)
ExecutorName = Literal["warm", "cold", "ray"]


class StageOutcome(enum.StrEnum):
    RETURNED = "returned"  # the stage's function returned: ``value`` holds its dict
    INVALID = "invalid"  # the evaluator raised Invalid: the candidate's output broke the problem's rules
    CANDIDATE_TIMEOUT = "candidate_timeout"  # a candidate call ran out of wall-clock or CPU time
    CANDIDATE_ERROR = "candidate_error"  # a candidate call crashed or returned malformed data
    EVALUATOR_ERROR = "evaluator_error"  # the evaluator's own code failed (or ran out of its memory bound)
    SANDBOX_ERROR = "sandbox_error"  # the sandbox itself broke: nobody's fault but the host's
