"""The inside of a sandboxed evaluator: a problem's ``evaluator.py`` that reaches its candidates only through calls.

Started by ``evolve.evaluators.confined`` inside a bubblewrap sandbox of its
own, as ``python -I -B -c <bootstrap> FD``: it sees the interpreter, NumPy,
the few evolve modules an evaluator imports, and its problem's folder at
``/problem``, all read-only, and a small private ``/tmp``; no network, no
store, no environment, no other problem. FD is its one channel to the
supervisor on the host. The first frame there is the setup (rlimits and the
evaluation request); from then on each ``Candidate.call`` and each session's
start, call and end is a request on FD that the supervisor serves by running
the candidate in the candidate's own sandbox, and its outcome comes back on
FD. The evaluation's answer (what ``evolve.evaluators.worker`` would write) is
the last request.

A message is frames of ``evolve.sandbox.codec.write_frames``: a JSON header,
then the request's bytes. An outcome is a JSON header (``RunOutcome``'s
fields, or ``error`` when the candidate's sandbox itself failed) and three
frames: result, stdout, stderr.

Nothing here is trusted by the supervisor: it reads every frame within
caps, clamps the limits asked for to the stage's own and never takes the
candidate's code from here (it runs the code the controller sent).
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import sys
import threading
from pathlib import Path
from typing import Any

from evolve.errors import SandboxError
from evolve.sandbox.base import RunOutcome, RunSpec, SandboxLimits, SessionSpec
from evolve.sandbox.codec import read_frame, write_frames

__all__ = ["BOOTSTRAP", "PROBLEM_DIR", "RelaySandbox", "main", "outcome_frames", "outcome_from_frames"]

#: Where the problem's folder is mounted inside the evaluator's sandbox.
PROBLEM_DIR = "/problem"
#: The interpreter's ``-c`` program: the mounted evolve modules first on the path, then ``main``.
BOOTSTRAP = "import sys; sys.path[:0] = [sys.argv[1]]; from evolve.evaluators.boxed import main; main()"

_OUTCOME_FIELDS = ("exit_code", "timed_out", "output_exceeded", "result_exceeded", "wall_s")


def outcome_frames(outcome: RunOutcome | None, *, error: str | None = None, **extra: Any) -> list[bytes]:
    """The four frames that answer a request: a header, then result, stdout and stderr."""
    if outcome is None:
        return [json.dumps({"error": error, **extra}).encode(), b"", b"", b""]
    header = {name: getattr(outcome, name) for name in _OUTCOME_FIELDS}
    header["has_result"] = outcome.result is not None
    return [json.dumps(header).encode(), outcome.result or b"", outcome.stdout, outcome.stderr]


def outcome_from_frames(header: dict[str, Any], result: bytes, stdout: bytes, stderr: bytes) -> RunOutcome:
    return RunOutcome(exit_code=header["exit_code"], result=result if header["has_result"] else None, stdout=stdout,
                      stderr=stderr, timed_out=bool(header["timed_out"]), output_exceeded=bool(header["output_exceeded"]),
                      result_exceeded=bool(header["result_exceeded"]), wall_s=float(header["wall_s"]))


class _Channel:
    """The supervisor's end, seen from here: one request and its answer at a time (an evaluator may use threads)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._lock = threading.Lock()

    def ask(self, header: dict[str, Any], payload: bytes = b"") -> tuple[dict[str, Any], bytes, bytes, bytes]:
        with self._lock:
            write_frames(self.fd, json.dumps(header).encode(), payload)
            frames = [read_frame(self.fd) for _ in range(4)]
        if any(part is None for part in frames):
            raise SandboxError("the supervisor closed the evaluator's channel")
        head, result, stdout, stderr = (part or b"" for part in frames)
        answer: dict[str, Any] = json.loads(head)
        if answer.get("error") is not None:
            raise SandboxError(str(answer["error"]))
        return answer, result, stdout, stderr


def _limits(limits: SandboxLimits) -> dict[str, Any]:
    return dataclasses.asdict(limits)


class RelaySandbox:
    """The ``Sandbox`` a boxed evaluator's ``Candidate`` uses: every run and session is the supervisor's."""

    name = "relay"

    def __init__(self, channel: _Channel) -> None:
        self._channel = channel

    async def run(self, spec: RunSpec) -> RunOutcome:
        return outcome_from_frames(*self._channel.ask({"op": "run", "limits": _limits(spec.limits)}, spec.request))

    async def session(self, spec: SessionSpec) -> RelaySession:
        answer, *_ = self._channel.ask({"op": "open", "function": spec.function, "limits": _limits(spec.limits)})
        return RelaySession(self._channel, int(answer["session"]))


class RelaySession:
    """A session the supervisor holds for this evaluator, addressed by its number."""

    def __init__(self, channel: _Channel, number: int) -> None:
        self._channel = channel
        self._number = number
        self._closed = False

    async def call(self, request: bytes) -> RunOutcome:
        return outcome_from_frames(*self._channel.ask({"op": "call", "session": self._number}, request))

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._channel.ask({"op": "close", "session": self._number})


def _apply_rlimits(rlimits: list[list[int]]) -> None:
    """Soft and hard limits both, before the evaluator's code loads: it cannot raise them again."""
    for res, value in rlimits:
        _soft, hard = resource.getrlimit(res)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(res, (value, value))


def main() -> None:
    fd = int(sys.argv[2])
    setup_frame = read_frame(fd)
    if setup_frame is None:
        return
    setup = json.loads(setup_frame)
    _apply_rlimits(setup["rlimits"])
    os.chdir("/tmp")
    from evolve.evaluators.worker import answer_bytes, load_evaluator

    channel = _Channel(fd)
    data = answer_bytes(setup["request"], RelaySandbox(channel), load_evaluator(Path(PROBLEM_DIR)))
    with channel._lock:
        write_frames(fd, json.dumps({"op": "answer"}).encode(), data)
