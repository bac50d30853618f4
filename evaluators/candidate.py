"""What a problem's trusted evaluator sees of the candidate: a handle, never the code's objects.

``candidate.call("construct_packing")`` runs that function of the candidate
program inside the sandbox, in another process, and returns its decoded
result (JSON values and NumPy arrays). The evaluator then validates that data
itself and computes the score.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import time
from typing import Any

from evolve.errors import SandboxError
from evolve.sandbox import CandidateValueError, Sandbox, SandboxLimits, decode_result
from evolve.sandbox.base import RunSpec

__all__ = ["Candidate", "CandidateError", "CandidateTimeout", "Invalid"]


class CandidateError(Exception):
    """The candidate crashed, returned nothing, or returned malformed data.

    ``stderr`` holds the tail of what the candidate printed, ``traceback`` the
    candidate's traceback when it raised.
    """

    def __init__(self, message: str, *, stderr: str = "", traceback: str = "") -> None:
        super().__init__(message)
        self.stderr = stderr
        self.traceback = traceback


class CandidateTimeout(CandidateError):  # noqa: N818 - reads as the outcome it reports
    """The candidate ran past its time limit and was killed."""


class Invalid(Exception):  # noqa: N818 - the name reads as the verdict it carries
    """Raised by an evaluator to reject a candidate's output with a reason.

    The result becomes INVALID and the message goes into the next prompt.
    """


def _tail(data: bytes, limit: int = 2000) -> str:
    text = data.decode("utf-8", errors="replace")
    return text if len(text) <= limit else "…" + text[-limit:]


class Candidate:
    """A candidate program, runnable only through the sandbox."""

    def __init__(self, code: str, *, sandbox: Sandbox, limits: SandboxLimits, deadline: float) -> None:
        self._code = code
        self._sandbox = sandbox
        self._limits = limits
        self._deadline = deadline
        self.calls = 0
        self.sandbox_failure: str | None = None
        self.last_stdout = ""
        self.last_stderr = ""

    @property
    def code(self) -> str:
        """The candidate's source text (for static checks; never exec it here)."""
        return self._code

    def call(self, function: str, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        """Run ``function(*args, **kwargs)`` of the candidate in the sandbox.

        Arguments must be JSON-serializable. The call gets the time left in the
        evaluation's budget, or ``timeout`` seconds if smaller.

        Raises:
            CandidateTimeout: when the call ran out of time.
            CandidateError: when it crashed, printed past the output cap, or
                returned nothing or malformed data.
        """
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise CandidateTimeout("the evaluation's time budget is spent")
        wall = min(left, timeout) if timeout is not None else left
        limits = dataclasses.replace(self._limits, wall_s=wall, cpu_s=min(self._limits.cpu_s, max(1, math.ceil(wall))))
        request = json.dumps({"function": function, "args": list(args), "kwargs": kwargs}).encode()
        try:
            outcome = asyncio.run(self._sandbox.run(RunSpec(code=self._code, request=request, limits=limits)))
        except SandboxError as exc:
            self.sandbox_failure = str(exc)
            raise
        self.calls += 1
        self.last_stdout, self.last_stderr = _tail(outcome.stdout), _tail(outcome.stderr)
        if outcome.timed_out:
            raise CandidateTimeout(f"{function}() ran past its {wall:.1f} s limit and was killed", stderr=self.last_stderr)
        if outcome.output_exceeded:
            raise CandidateError(
                f"{function}() printed more than {limits.output_bytes} bytes and was killed", stderr=self.last_stderr
            )
        if outcome.result_exceeded:
            raise CandidateError(f"{function}() returned more than {limits.result_bytes} bytes of data")
        if outcome.result is None:
            signal_note = f" (killed by signal {-outcome.exit_code})" if outcome.exit_code and outcome.exit_code < 0 else ""
            raise CandidateError(
                f"{function}() exited with code {outcome.exit_code}{signal_note} without returning a result "
                "(out of memory or CPU time, or the program exited early)",
                stderr=self.last_stderr,
            )
        try:
            envelope = decode_result(outcome.result)
        except CandidateValueError as exc:
            raise CandidateError(f"{function}() returned malformed data: {exc}", stderr=self.last_stderr) from exc
        if not envelope["ok"]:
            raise CandidateError(
                f"{function}() raised {envelope['error']}", stderr=self.last_stderr, traceback=envelope["traceback"]
            )
        return envelope["value"]
