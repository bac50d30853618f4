"""Child-side harness: runs inside the sandbox, before and around the candidate.

Self-contained on purpose (only the standard library and, when the candidate
returns arrays, NumPy): it is passed to ``python -I -c`` and never imports
evolve. Usage: ``python -I -c <this source> SETTINGS_JSON`` where the settings
say where the result goes (``result``: an inherited fd number, or ``"stdout"``
for container backends, which then sends the candidate's own prints to
stderr), the ``limits``, the ``paths`` to put first on ``sys.path`` (mounted
packages) and where the ``request`` comes from (a file path, or stdin when
absent). The request (``function``, ``args``, ``kwargs``) and the candidate's
code arrive as JSON; the result leaves as JSON, never mixed with the
candidate's output.

With ``"serve": true`` the harness serves a session instead of one call. The
setup (``code`` and ``function``) is the first frame on stdin; the module is
loaded once, then each further frame (``args``, ``kwargs``) is one call, and
each call's envelope leaves as one frame on the result channel, flushed at
once. A frame is a 4-byte big-endian length and that many bytes of JSON. A
module that fails to load answers the first call with its error and exits.
Stdin stays the request channel, open to the candidate as well: reading it
only yields requests the host has already sent (the host sends the next one
after this call's answer), and taking bytes from it breaks the session's own
framing, a failure of that candidate alone.
"""

from __future__ import annotations

import base64
import json
import os
import resource
import select
import sys
import traceback
import types
from typing import Any, Callable, cast

_NUMERIC_KINDS = "biuf"
_MAX_DEPTH = 32
_EXIT_NO_SECCOMP = 86


def _apply_limits(limits: dict[str, Any]) -> None:
    pairs = [
        (resource.RLIMIT_AS, limits["memory_bytes"]),
        (resource.RLIMIT_CPU, limits["cpu_s"]),
        (resource.RLIMIT_FSIZE, limits["file_bytes"]),
        (resource.RLIMIT_NOFILE, limits["open_files"]),
        (resource.RLIMIT_CORE, 0),
    ]
    if os.getuid() != 0:  # the kernel ignores RLIMIT_NPROC for root
        pairs.append((resource.RLIMIT_NPROC, limits["processes"]))
    for res, value in pairs:
        _soft, hard = resource.getrlimit(res)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(res, (value, value))
    try:  # die with the parent (Linux): no orphan left if the evaluator is killed
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
    except Exception:
        pass


def _apply_seccomp(program_b64: str) -> None:
    """Install the seccomp deny-list (compiled on the host) before any candidate code runs.

    Fails closed: a harness that cannot install it exits without running the candidate.
    """
    import ctypes

    class _Fprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    program = base64.b64decode(program_b64)
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _Fprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(38, 1, 0, 0, 0) != 0 or libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0:  # NO_NEW_PRIVS, SECCOMP
        os.write(2, f"sandbox harness: cannot install the seccomp filter (errno {ctypes.get_errno()})\n".encode())
        os._exit(_EXIT_NO_SECCOMP)


def _encode(value: Any, depth: int = 0) -> Any:
    if depth > _MAX_DEPTH:
        raise TypeError("the returned value is nested too deeply")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_encode(v, depth + 1) for v in value]
    if isinstance(value, dict):
        out = {}
        for key, v in value.items():
            if not isinstance(key, str):
                raise TypeError(f"dict keys must be str, got {type(key).__name__}")
            out[key] = _encode(v, depth + 1)
        return {"__dict__": out}
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        if isinstance(value, numpy.ndarray):
            if value.dtype.kind not in _NUMERIC_KINDS:
                raise TypeError(f"arrays must be numeric or bool, got dtype {value.dtype}")
            arr = numpy.ascontiguousarray(value)
            return {
                "__ndarray__": {
                    "dtype": arr.dtype.str,
                    "shape": list(arr.shape),
                    "data": base64.b64encode(arr.tobytes()).decode("ascii"),
                }
            }
        if isinstance(value, numpy.generic):
            return _encode(value.item(), depth + 1)
    raise TypeError(f"cannot return a value of type {type(value).__name__}; return numbers, lists, dicts, str or NumPy arrays")


def _result_fd(target: int | str) -> int:
    if target != "stdout":
        return int(target)
    sys.stdout.flush()
    fd = os.dup(1)
    os.dup2(2, 1)  # the candidate's prints join stderr; stdout carries only the result
    return fd


_HARNESS_PID = -1  # set by main()


def _failure(exc: BaseException) -> dict[str, Any]:
    """The envelope of a candidate's failure; call inside the ``except`` that caught ``exc``."""
    tb = traceback.format_exc(limit=-8)
    return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:2000], "traceback": tb[-6000:]}


def _load(request: dict[str, Any]) -> Callable[..., Any]:
    """Run the candidate's module once and return the function the request names."""
    module = types.ModuleType("candidate")
    module.__file__ = os.path.abspath("candidate.py")
    sys.modules["candidate"] = module
    exec(compile(request["code"], module.__file__, "exec"), module.__dict__)
    func = getattr(module, request["function"], None)
    if not callable(func):
        raise AttributeError(f"the program defines no function '{request['function']}'")
    return cast(Callable[..., Any], func)


def _call(func: Callable[..., Any], request: dict[str, Any]) -> dict[str, Any]:
    value = func(*request.get("args", []), **request.get("kwargs", {}))
    return {"ok": True, "value": _encode(value)}


def _send(fd: int, payload: dict[str, Any], *, framed: bool) -> None:
    """Write one envelope (length-prefixed when ``framed``), then flush the candidate's prints.

    Exits with code 3 when that fails (an unserializable value, a closed channel). A process
    the candidate forked that unwinds back into the harness (its ``fork()`` returned, then it
    returned or raised) exits silently instead: only the harness speaks on the result channel.
    """
    if os.getpid() != _HARNESS_PID:
        os._exit(1)
    try:
        data = json.dumps(payload, allow_nan=True).encode("utf-8")
        if framed:
            data = len(data).to_bytes(4, "big") + data
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
    except BaseException:
        os._exit(3)


def _read_exact(size: int) -> bytes | None:
    """``size`` bytes from stdin, or None at end of input (the host closed the session)."""
    data = bytearray()
    while len(data) < size:
        try:
            chunk = os.read(0, size - len(data))
        except BlockingIOError:  # the candidate made stdin non-blocking: wait for the host
            select.select([0], [], [])
            continue
        if not chunk:
            return None
        data += chunk
    return bytes(data)


def _read_frame() -> bytes | None:
    header = _read_exact(4)
    return None if header is None else _read_exact(int.from_bytes(header, "big"))


def _serve(result_fd: int) -> None:
    """Load the candidate once, then answer one framed call per framed request until stdin ends."""
    setup = _read_frame()
    if setup is None:
        os._exit(0)
    try:
        func = _load(json.loads(setup))
    except BaseException as exc:  # the first call gets the load error
        _send(result_fd, _failure(exc), framed=True)
        os._exit(1)
    while (frame := _read_frame()) is not None:
        try:
            payload = _call(func, json.loads(frame))
        except BaseException as exc:  # the candidate's failure is reported; the host ends the session
            payload = _failure(exc)
        _send(result_fd, payload, framed=True)
    os._exit(0)


def main() -> None:
    global _HARNESS_PID
    _HARNESS_PID = os.getpid()
    settings = json.loads(sys.argv[1])
    result_fd = _result_fd(settings["result"])
    sys.path[:0] = settings.get("paths", [])
    _apply_limits(settings["limits"])
    if settings.get("seccomp"):
        _apply_seccomp(settings["seccomp"])
    if settings.get("serve"):
        _serve(result_fd)
    if settings.get("request"):
        with open(settings["request"], "rb") as source:
            request = json.loads(source.read())
    else:
        request = json.loads(sys.stdin.buffer.read())
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    try:
        payload = _call(_load(request), request)
    except BaseException as exc:  # the candidate's failure is reported, never hidden
        payload = _failure(exc)
    _send(result_fd, payload, framed=False)
    os._exit(0 if payload["ok"] else 1)


if __name__ == "__main__":
    main()
