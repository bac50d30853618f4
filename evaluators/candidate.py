"""What a problem's trusted evaluator sees of the candidate: a handle, never the code's objects.

``candidate.call("construct_packing")`` runs that function of the candidate
program inside the sandbox, in another process, and returns its decoded
result (JSON values and NumPy arrays). The evaluator then validates that data
itself and computes the score.

``with candidate.session("priority") as session:`` starts one sandboxed
process that loads the program once; each ``session.call(item, bins)`` is one
round trip to it (well under a millisecond), so an evaluator can drive an
online problem step by step and the candidate only ever sees what was sent.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import time
from types import TracebackType
from typing import Any

from evolve.errors import SandboxError
from evolve.sandbox import CandidateValueError, RunOutcome, Sandbox, SandboxLimits, decode_result
from evolve.sandbox.base import RunSpec, SandboxSession, SessionSpec

__all__ = ["Candidate", "CandidateError", "CandidateSession", "CandidateTimeout", "Invalid"]

_TAIL_BYTES = 8000


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


_QUOTED_CHARS = 300
#: The most one call of a session may return, serialized.
SESSION_RESULT_BYTES = 1 << 20


def _value_of(outcome: RunOutcome, what: str, limits: SandboxLimits, stderr: str) -> Any:
    """The decoded value of one call's outcome; ``what`` names the call in messages.

    Raises:
        CandidateTimeout: when the call ran out of time.
        CandidateError: when it crashed, printed past the output cap, raised, or
            returned nothing, too much or malformed data.
    """
    if outcome.timed_out:
        raise CandidateTimeout(f"{what} ran past its {limits.wall_s:.1f} s limit and was killed", stderr=stderr)
    if outcome.output_exceeded:
        raise CandidateError(f"{what} printed more than {limits.output_bytes} bytes and was killed", stderr=stderr)
    if outcome.result_exceeded:
        raise CandidateError(f"{what} returned more than {limits.result_bytes} bytes of data")
    if outcome.result is None:
        signal_note = f" (killed by signal {-outcome.exit_code})" if outcome.exit_code and outcome.exit_code < 0 else ""
        raise CandidateError(
            f"{what} exited with code {outcome.exit_code}{signal_note} without returning a result "
            "(out of memory or CPU time, or the program exited early)",
            stderr=stderr,
        )
    try:
        envelope = decode_result(outcome.result, max_elements=limits.result_elements)
    except CandidateValueError as exc:
        raise CandidateError(f"{what} returned malformed data: {exc}", stderr=stderr) from exc
    if not envelope["ok"]:
        # The exception's text is the program's own words (a hostile one writes them to sound like the
        # evaluator's): quoted, never spliced into the evaluator's sentence.
        said = envelope["error"] if len(envelope["error"]) <= _QUOTED_CHARS else envelope["error"][:_QUOTED_CHARS] + "…"
        raise CandidateError(f"{what} raised an exception; the program says: {said!r}", stderr=stderr,
                             traceback=envelope["traceback"])
    return envelope["value"]


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

    def _broken(self, exc: Exception) -> Exception:
        """What an exception out of a sandbox call means, recorded in ``sandbox_failure``.

        A backend raises only ``SandboxError`` (the candidate's own failures are outcomes), so anything else is the
        backend's or its host's fault (an engine socket gone mid-request), never the candidate's. A ``MemoryError``
        stays one and is not recorded: the evaluator's memory bound answers it.
        """
        if isinstance(exc, MemoryError):
            return exc
        failure = exc
        if not isinstance(exc, SandboxError):
            failure = SandboxError(f"the sandbox failed unexpectedly ({type(exc).__name__}: {exc})")
            failure.__cause__ = exc
        self.sandbox_failure = str(failure)
        return failure

    def _limits_for(self, timeout: float | None) -> SandboxLimits:
        """The limits of a call or session: the time left in the evaluation's budget, or ``timeout`` if smaller.

        Raises:
            CandidateTimeout: when the evaluation's time budget is spent.
        """
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise CandidateTimeout("the evaluation's time budget is spent")
        wall = min(left, timeout) if timeout is not None else left
        return dataclasses.replace(self._limits, wall_s=wall, cpu_s=min(self._limits.cpu_s, max(1, math.ceil(wall))))

    def call(self, function: str, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        """Run ``function(*args, **kwargs)`` of the candidate in the sandbox.

        Arguments must be JSON-serializable. The call gets the time left in the
        evaluation's budget, or ``timeout`` seconds if smaller.

        Raises:
            CandidateTimeout: when the call ran out of time.
            CandidateError: when it crashed, printed past the output cap, or
                returned nothing or malformed data.
            SandboxError: when the sandbox itself failed (also recorded in ``sandbox_failure``).
            TypeError: when an argument is not JSON-serializable.
        """
        limits = self._limits_for(timeout)
        request = json.dumps({"function": function, "args": list(args), "kwargs": kwargs}).encode()
        try:
            outcome = asyncio.run(self._sandbox.run(RunSpec(code=self._code, request=request, limits=limits)))
        except Exception as exc:
            raise self._broken(exc)  # noqa: B904 - the exception itself, or a SandboxError chained to it
        self.calls += 1
        self.last_stdout, self.last_stderr = _tail(outcome.stdout), _tail(outcome.stderr)
        return _value_of(outcome, f"{function}()", limits, self.last_stderr)

    def session(self, function: str, *, timeout: float | None = None) -> CandidateSession:
        """A context manager holding one sandboxed process that serves calls of ``function``.

        Entering starts the process and loads the program once; ``session.call(*args,
        **kwargs)`` is one round trip; leaving kills the process and all it started.
        The session's wall clock is the time left in the evaluation's budget, or
        ``timeout`` seconds if smaller, and the CPU and output limits hold for the
        session as a whole. State the program keeps between calls persists (it only
        ever saw the calls already made). Entering raises ``CandidateTimeout`` when
        the evaluation's budget is spent and ``SandboxError`` when the sandbox
        cannot start (see ``CandidateSession.__enter__``).
        """
        return CandidateSession(self, function, timeout=timeout)


class CandidateSession:
    """Calls of one function of the candidate, served by one live sandboxed process (see ``Candidate.session``).

    After any error the session is over: the process is killed and later calls
    raise ``CandidateError``.
    """

    def __init__(self, candidate: Candidate, function: str, *, timeout: float | None) -> None:
        self._candidate = candidate
        self._function = function
        self._timeout = timeout
        self._limits = candidate._limits  # replaced by the session's own when it starts
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: SandboxSession | None = None
        self._failure: str | None = None
        self._stdout, self._stderr = b"", b""
        self.calls = 0

    def __enter__(self) -> CandidateSession:
        """Start the sandboxed process.

        Raises:
            CandidateTimeout: when the evaluation's time budget is already spent.
            SandboxError: when the sandbox itself failed (also recorded in ``sandbox_failure``).
            RuntimeError: when the session was entered before.
        """
        if self._loop is not None:
            raise RuntimeError("a candidate session can be entered only once")
        candidate = self._candidate
        limits = candidate._limits_for(self._timeout)
        # One call of a session answers one step: a small cap keeps a candidate from making the trusted
        # side parse megabytes per step (30 MB of padding per call kept the evaluator busy for 50 s).
        self._limits = dataclasses.replace(limits, result_bytes=min(limits.result_bytes, SESSION_RESULT_BYTES))
        spec = SessionSpec(code=candidate.code, function=self._function, limits=self._limits)
        # The event loop lives as long as the session: the child's pipes and readers belong to it.
        self._loop = asyncio.new_event_loop()
        try:
            self._session = self._loop.run_until_complete(candidate._sandbox.session(spec))
        except BaseException as exc:
            self._loop.close()
            if not isinstance(exc, Exception):
                raise
            raise candidate._broken(exc)  # noqa: B904 - the exception itself, or a SandboxError chained to it
        return self

    def call(self, *args: Any, **kwargs: Any) -> Any:
        """One round trip: ``function(*args, **kwargs)`` in the session's process, and its decoded result.

        Arguments must be JSON-serializable.

        Raises:
            CandidateTimeout: when the session's wall clock ran out.
            CandidateError: when the candidate raised, crashed, exited, printed past
                the output cap or returned too much or malformed data, now or in an
                earlier call of this session.
            SandboxError: when the sandbox itself failed (also recorded in ``sandbox_failure``).
            TypeError: when an argument is not JSON-serializable.
            RuntimeError: when called outside the ``with`` block.
        """
        if self._failure is not None:
            raise CandidateError(f"the session of {self._function}() is over after an earlier error: {self._failure}",
                                 stderr=self._candidate.last_stderr)
        if self._session is None or self._loop is None:
            raise RuntimeError("session.call() works only inside `with candidate.session(...) as session:`")
        request = json.dumps({"args": list(args), "kwargs": kwargs}).encode()
        candidate = self._candidate
        try:
            outcome = self._loop.run_until_complete(self._session.call(request))
        except Exception as exc:
            failure = candidate._broken(exc)
            self._failure = str(failure)
            self._stop()
            raise failure  # noqa: B904 - the exception itself, or a SandboxError chained to it
        self.calls += 1
        candidate.calls += 1
        if outcome.stdout:
            self._stdout = (self._stdout + outcome.stdout)[-_TAIL_BYTES:]
            candidate.last_stdout = _tail(self._stdout)
        if outcome.stderr:
            self._stderr = (self._stderr + outcome.stderr)[-_TAIL_BYTES:]
            candidate.last_stderr = _tail(self._stderr)
        try:
            return _value_of(outcome, f"{self._function}() (call {self.calls} of its session)", self._limits,
                             candidate.last_stderr)
        except CandidateError as exc:
            self._failure = str(exc)
            self._stop()
            raise

    def _stop(self) -> None:
        """Kill the process now (the session is over); the loop stays for ``__exit__``."""
        if self._session is not None and self._loop is not None:
            self._loop.run_until_complete(self._session.close())

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        """Kill the process and everything it started, whatever happened."""
        if self._loop is None:
            return
        try:
            self._stop()
        finally:
            self._session = None
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()
