"""Sandboxed evaluators: a problem's ``evaluator.py`` in a bubblewrap sandbox of its own, its candidates served by us.

For evaluators nobody here wrote (a problem submitted over REST, or any with
``evaluator_sandbox``), the evaluation process on the host becomes a
*supervisor*: it never imports the evaluator. It starts the evaluator in a
sandbox of its own (``evolve.evaluators.boxed``) and serves its requests:
each ``candidate.call``, and each session's start, call and end, is run in
the candidate's own, separate sandbox (the slot's zygote or cold backend),
and only the outcome goes back. So a hostile evaluator reaches its
candidates only through calls, and a hostile candidate still cannot touch
the evaluator.

The evaluator's sandbox: bubblewrap's namespaces (no network, loopback
included; its own pids and ``/proc``), an unprivileged uid, no capabilities,
the candidates' seccomp filter, an empty environment, a read-only root with
``/usr``, NumPy, the handful of evolve modules an evaluator imports
(``EVALUATOR_MODULES``, copied: not the package, so neither the server's
source nor its settings) and a copy of its problem's folder at ``/problem``;
a sized private ``/tmp``; a cgroup of its own (memory, processes, a CPU
share) and rlimits set before its code loads (``box_limits``). The store,
the server's environment and files, and other problems are not in its world.

What comes back is checked before it is trusted: every frame is read within
a cap, the limits it asks for a call are clamped to its stage's, the
candidate's code is the controller's (never the evaluator's copy), a
protocol violation ends the evaluation as an evaluator error, and a sandbox
failure counts only if the supervisor saw one. The controller then
validates the answer as it validates any evaluator's.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib.util
import json
import os
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

from evolve.errors import SandboxError
from evolve.evaluators.boxed import BOOTSTRAP, PROBLEM_DIR, outcome_frames
from evolve.evaluators.executor import EVALUATOR_RESULT_BYTES
from evolve.evaluators.protocol import StageOutcome
from evolve.evaluators.worker import encode_answer
from evolve.sandbox.base import RunOutcome, RunSpec, Sandbox, SandboxLimits, SandboxSession, SessionSpec
from evolve.sandbox.codec import FrameTooLarge, read_frame, write_frames

__all__ = ["BOX_FILE_BYTES", "BOX_PROCESSES", "EVALUATOR_MODULES", "box_limits", "confined_answer", "stage_box"]

#: What an evaluator may import of evolve; the box holds copies of these files only.
EVALUATOR_MODULES = (
    "evolve", "evolve.errors", "evolve.values",
    "evolve.evaluators", "evolve.evaluators.boxed", "evolve.evaluators.candidate", "evolve.evaluators.checks",
    "evolve.evaluators.circles", "evolve.evaluators.protocol", "evolve.evaluators.thresholds", "evolve.evaluators.worker",
    "evolve.sandbox", "evolve.sandbox.base", "evolve.sandbox.codec",
)
#: Processes and threads of the evaluator's sandbox together.
BOX_PROCESSES = 32
#: Its private /tmp, and its largest file.
BOX_FILE_BYTES = 64 << 20
_OPEN_FILES = 256
_HEADER_BYTES = 64 << 10
_PAYLOAD_BYTES = 64 << 20  # a call's arguments, serialized
_SESSIONS = 16  # open at once
_FUNCTION_CHARS = 200


class _ProtocolError(Exception):
    """The boxed evaluator sent something the protocol does not allow."""


def stage_box(problem_dir: Path, scratch: Path) -> Path:
    """A folder under ``scratch`` (made traversable) holding what the box mounts: ``evolve/`` and ``problem/``.

    Every file is a copy, readable by the box's unprivileged uid.
    """
    box = scratch / "box"
    for name in EVALUATOR_MODULES:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise SandboxError(f"the evaluator's sandbox needs {name}, which is not installed")
        parts = name.split(".")
        target = box.joinpath(*parts, "__init__.py") if spec.submodule_search_locations else box.joinpath(*parts[:-1], parts[-1] + ".py")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(spec.origin, target)
    # links stay links: they resolve inside the box, never copying a host file's content in
    shutil.copytree(problem_dir, box / "problem", symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    for path in (box, *box.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    scratch.chmod(0o711)  # the box's uid passes through to box/ but cannot list the evaluation's scratch
    return box


def box_limits(request: dict[str, Any]) -> SandboxLimits:
    """The evaluator's sandbox limits: its memory and CPU bounds, ``BOX_PROCESSES``, a ``BOX_FILE_BYTES`` /tmp, one core.

    Its wall clock is the evaluation's, held by the process that supervises it.
    """
    bounds = request["evaluator"]
    wall = sum(float(stage["timeout_s"]) for stage in request["stages"])
    return SandboxLimits(wall_s=wall, cpu_s=int(bounds["cpu_s"]), memory_bytes=int(bounds["memory_bytes"]),
                         processes=BOX_PROCESSES, file_bytes=BOX_FILE_BYTES, open_files=_OPEN_FILES, cpus=1.0)


def _ceiling(request: dict[str, Any]) -> dict[str, float]:
    """Field by field, the largest candidate limits of the request's stages: no call may ask for more."""
    each = [SandboxLimits(**stage["limits"]) for stage in request["stages"]]
    return {f.name: max(getattr(x, f.name) for x in each) for f in dataclasses.fields(SandboxLimits)}


def _clamped(asked: Any, ceiling: dict[str, float]) -> SandboxLimits:
    if not isinstance(asked, dict) or not set(asked) <= set(ceiling):
        raise _ProtocolError("limits must be an object of SandboxLimits fields")
    values: dict[str, Any] = {}
    for name, top in ceiling.items():
        value = asked.get(name, top)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise _ProtocolError(f"limit {name} must be a positive number")
        if isinstance(top, int) and not isinstance(value, int):
            raise _ProtocolError(f"limit {name} must be a whole number")
        values[name] = type(top)(min(value, top))
    return SandboxLimits(**values)


class _Relay:
    """Serves one boxed evaluation's requests with the candidate's sandbox, until its answer."""

    def __init__(self, request: dict[str, Any], sandbox: Sandbox, fd: int) -> None:
        self._code: str = request["code"]
        self._ceiling = _ceiling(request)
        self._sandbox = sandbox
        self._fd = fd
        self._loop = asyncio.new_event_loop()
        self._sessions: dict[int, SandboxSession] = {}
        self._opened = 0
        self.sandbox_failure: str | None = None

    def serve(self) -> bytes | None:
        """The evaluator's answer bytes; None when it ended without one.

        Raises:
            _ProtocolError: when the evaluator broke the protocol.
        """
        try:
            while True:
                message = self._header()
                if message is None:
                    return None
                answering = message.get("op") == "answer"
                try:
                    payload = read_frame(self._fd, limit=EVALUATOR_RESULT_BYTES if answering else _PAYLOAD_BYTES)
                except FrameTooLarge as exc:
                    raise _ProtocolError(str(exc)) from exc
                if payload is None:
                    return None
                if answering:
                    return payload
                write_frames(self._fd, *self._handle(message, payload))
        finally:
            for session in self._sessions.values():
                with contextlib.suppress(Exception):
                    self._loop.run_until_complete(session.close())
            self._loop.close()

    def _header(self) -> dict[str, Any] | None:
        try:
            head = read_frame(self._fd, limit=_HEADER_BYTES)
        except FrameTooLarge as exc:
            raise _ProtocolError(str(exc)) from exc
        if head is None:
            return None
        try:
            message = json.loads(head)
        except (ValueError, RecursionError) as exc:
            raise _ProtocolError("a request header is not JSON") from exc
        if not isinstance(message, dict):
            raise _ProtocolError("a request header is not an object")
        return message

    def _handle(self, message: dict[str, Any], payload: bytes) -> list[bytes]:
        op = message.get("op")
        if op == "run":
            spec = RunSpec(code=self._code, request=payload, limits=_clamped(message.get("limits"), self._ceiling))
            return self._outcome(lambda: self._sandbox.run(spec))
        if op == "open":
            function = message.get("function")
            if not isinstance(function, str) or not function.isidentifier() or len(function) > _FUNCTION_CHARS:
                raise _ProtocolError("a session's function must be an identifier")
            if len(self._sessions) >= _SESSIONS:
                raise _ProtocolError(f"more than {_SESSIONS} sessions open at once")
            spec_s = SessionSpec(code=self._code, function=function, limits=_clamped(message.get("limits"), self._ceiling))
            try:
                session = self._loop.run_until_complete(self._sandbox.session(spec_s))
            except Exception as exc:  # the candidate's sandbox broke: the box hears it as a SandboxError
                return outcome_frames(None, error=self._failed(exc))
            self._opened += 1
            self._sessions[self._opened] = session
            return outcome_frames(None, session=self._opened)
        number = message.get("session")
        if op not in ("call", "close") or not isinstance(number, int) or number not in self._sessions:
            raise _ProtocolError(f"unknown request {op!r} (or no open session {number!r})")
        if op == "close":
            closing = self._sessions.pop(number)
            return self._outcome(lambda: self._closed(closing))
        session = self._sessions[number]
        return self._outcome(lambda: session.call(payload))

    @staticmethod
    async def _closed(session: SandboxSession) -> RunOutcome:
        await session.close()
        return RunOutcome(exit_code=0, result=None, stdout=b"", stderr=b"", timed_out=False, output_exceeded=False,
                          result_exceeded=False, wall_s=0.0)

    def _outcome(self, start: Any) -> list[bytes]:
        try:
            outcome: RunOutcome = self._loop.run_until_complete(start())
        except Exception as exc:  # see _failed
            return outcome_frames(None, error=self._failed(exc))
        return outcome_frames(outcome)

    def _failed(self, exc: Exception) -> str:
        """Record a failure of the candidate's sandbox (a backend raises only SandboxError for its own faults)."""
        message = str(exc) if isinstance(exc, SandboxError) else f"the sandbox failed unexpectedly ({type(exc).__name__}: {exc})"
        self.sandbox_failure = message
        return message


def _evaluator_error(message: str) -> bytes:
    return encode_answer({"stages": [{"outcome": StageOutcome.EVALUATOR_ERROR, "message": message}]})


def _checked(answer: bytes, relay: _Relay) -> bytes:
    """The answer, unless it claims a sandbox failure the supervisor never saw (that would stop the campaign)."""
    if relay.sandbox_failure is not None:
        return encode_answer({"outcome": StageOutcome.SANDBOX_ERROR, "message": relay.sandbox_failure})
    try:
        parsed = json.loads(answer)
    except (ValueError, RecursionError):  # the controller refuses it with its own message
        return answer
    if isinstance(parsed, dict) and parsed.get("outcome") == StageOutcome.SANDBOX_ERROR:
        return _evaluator_error("the sandboxed evaluator reported a sandbox failure that did not happen")
    return answer


def confined_answer(request: dict[str, Any], sandbox: Sandbox, box: Path) -> bytes:
    """Run ``request``'s evaluation with its evaluator in a sandbox of its own, serving its candidate calls.

    ``box``: what ``stage_box`` prepared (once per warm worker, or per cold evaluation). Returns the answer bytes the
    controller validates (an evaluator error when the box broke or sent none; a sandbox error when the candidate's
    sandbox, or the box itself, could not start).
    """
    from evolve.sandbox.bwrap import SANDBOX_ENV, bwrap_argv, bwrap_problem
    from evolve.sandbox.confine import Confinement
    from evolve.sandbox.runtime import SITE_DIR, sandbox_runtime
    from evolve.sandbox.seccomp import bpf_fd

    if (problem := bwrap_problem()) is not None:
        return encode_answer({"outcome": StageOutcome.SANDBOX_ERROR, "message": f"sandboxed evaluators need bubblewrap: {problem}"})
    limits = box_limits(request)
    confinement = Confinement.prepare(limits)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    seccomp_fd = bpf_fd()
    runtime = sandbox_runtime()
    argv = bwrap_argv(shutil.which("bwrap") or "bwrap", runtime, tmpfs_bytes=limits.file_bytes, seccomp_fd=seccomp_fd,
                      binds=[(str(box / "evolve"), f"{SITE_DIR}/evolve"), (str(box / "problem"), PROBLEM_DIR)])
    argv += [runtime.python, "-I", "-B", "-c", BOOTSTRAP, SITE_DIR, str(theirs.fileno())]
    process: subprocess.Popen[bytes] | None = None
    try:
        try:
            # its prints and tracebacks go to this process's stderr, which the executor captures (capped) as the evaluator's
            process = subprocess.Popen(confinement.command(argv), env=dict(SANDBOX_ENV), cwd="/", stdin=subprocess.DEVNULL,
                                       stdout=2, pass_fds=(theirs.fileno(), seccomp_fd))
        except (OSError, subprocess.SubprocessError) as exc:
            return encode_answer({"outcome": StageOutcome.SANDBOX_ERROR, "message": f"cannot start the evaluator's sandbox: {exc}"})
        finally:
            theirs.close()
            os.close(seccomp_fd)
        fd = ours.fileno()
        # what the evaluation needs, never where things are on the host (its folder, the controller's pid)
        seen = {key: request[key] for key in ("id", "code", "stages", "evaluator") if key in request}
        write_frames(fd, json.dumps({"rlimits": confinement.rlimits, "request": seen}).encode())
        relay = _Relay(request, sandbox, fd)
        try:
            answer = relay.serve()
        except _ProtocolError as exc:
            return _evaluator_error(f"the sandboxed evaluator broke its protocol: {exc}")
        except (ValueError, TypeError, KeyError) as exc:  # a request shaped unlike any the protocol has
            return _evaluator_error(f"the sandboxed evaluator broke its protocol: {type(exc).__name__}")
        except OSError:  # it closed its end mid-message
            answer = None
        if answer is None:
            process.wait()
            return _evaluator_error(f"the sandboxed evaluator exited with code {process.returncode} without an answer "
                                    "(out of memory or CPU time, or it exited early; its stderr has more)")
        return _checked(answer, relay)
    finally:
        ours.close()
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait()
        confinement.release()
