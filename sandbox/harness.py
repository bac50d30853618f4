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


# ---------------------------------------------------------------- zygote
# With ``"zygote": true`` the harness is a warm launcher: it imports NumPy once, then
# reads spawn requests from ``control`` (a SOCK_SEQPACKET socket: one request per
# message, the run's settings as JSON, and five descriptors passed with SCM_RIGHTS:
# the child's stdin, stdout, stderr, result channel and a status socket). For each it
# forks a *keeper*, which enters new user, mount and pid namespaces, mounts a fresh
# sized tmpfs on /tmp and /dev/shm, and forks the candidate's process as the init of
# the new pid namespace: a fresh /proc, the environment of the settings, no
# capabilities, then the usual limits and seccomp filter before any candidate code
# runs. When that init ends the kernel kills everything left in its namespace and the
# mounts go with it, so nothing a candidate made reaches the next. The keeper
# reports the exit status on the status socket as JSON; it kills the candidate when
# the host writes to or closes its end (the deadline, or the host went away).

_CLONE_NEWNS, _CLONE_NEWUSER, _CLONE_NEWPID = 0x00020000, 0x10000000, 0x20000000
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REC, _MS_PRIVATE = 2, 4, 8, 0x4000, 1 << 18
_SPAWN_FDS = 5
_SETTINGS_BYTES = 1 << 20
_EXIT_NO_LAUNCH = 87
_CAPSET = {"x86_64": 126, "aarch64": 91}  # the capset system call's number
_CAPSET_NUMBER: int | None = None  # this machine's, found by the zygote


def _zygote(settings: dict[str, Any]) -> None:
    """Serve spawn requests on the control socket until it closes; never returns."""
    import ctypes
    import signal
    import socket

    global _CAPSET_NUMBER
    import gc
    import platform

    sys.path[:0] = settings.get("paths", [])
    try:  # noqa: SIM105 - the harness stays free of imports it does not need
        import numpy  # noqa: F401 - imported once here, every child finds it loaded
    except ImportError:
        pass
    _CAPSET_NUMBER = _CAPSET.get(platform.machine())
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, 9)  # PR_SET_PDEATHSIG: die with whoever started the zygote
    libc.prctl(4, 0)  # PR_SET_DUMPABLE 0: its memory is nobody's to read
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # keepers are reaped by the kernel
    control = socket.socket(fileno=int(settings["control"]))
    gc.freeze()  # what is loaded now stays out of the collector's way: a child's collections copy none of its pages
    while True:
        try:
            message, fds, _flags, _address = socket.recv_fds(control, _SETTINGS_BYTES, _SPAWN_FDS)
        except OSError:
            os._exit(0)
        if not message:  # the host closed the control socket
            os._exit(0)
        if len(fds) == _SPAWN_FDS and os.fork() == 0:
            control.close()
            _keeper(json.loads(message), fds, libc)
        for fd in fds:
            os.close(fd)


def _write_file(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _keeper(settings: dict[str, Any], fds: list[int], libc: Any) -> None:
    """Fork's first half: namespaces and mounts for one run, then its init, then its exit status; never returns."""
    import ctypes
    import signal

    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    libc.prctl(1, 9)  # die with the zygote
    stdin, stdout, stderr, result, status = fds
    for target, fd in ((0, stdin), (1, stdout), (2, stderr), (3, result), (4, status)):
        os.dup2(fd, target)
    os.closerange(5, 1 << 16)  # nothing of the zygote's (its control socket included) reaches the run
    status = 4

    def fail(what: str) -> None:
        message = f"sandbox launcher: cannot {what} (errno {ctypes.get_errno()})"  # the host raises SandboxError
        os.write(status, json.dumps({"error": message}).encode())
        os._exit(_EXIT_NO_LAUNCH)

    libc.prctl(4, 1)  # dumpable again (the zygote is not): a process writes its own uid_map only if it is
    uid, gid = os.getuid(), os.getgid()
    if libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNS | _CLONE_NEWPID) != 0:
        fail("create the run's namespaces")
    try:
        _write_file("/proc/self/setgroups", "deny")
        _write_file("/proc/self/uid_map", f"{uid} {uid} 1")
        _write_file("/proc/self/gid_map", f"{gid} {gid} 1")
    except OSError:
        fail("map the run's user")
    if libc.mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None) != 0:
        fail("make the run's mounts private")
    size = int(settings["limits"]["file_bytes"])
    flags = _MS_NOSUID | _MS_NODEV
    for where, bytes_ in ((b"/tmp", size), (b"/dev/shm", min(size, int(settings["shm_bytes"])))):
        if libc.mount(b"tmpfs", where, b"tmpfs", flags, f"size={bytes_},mode=1777".encode()) != 0:
            fail(f"mount a fresh tmpfs on {where.decode()}")
    init = os.fork()
    if init == 0:
        _init(settings, libc)
    for fd in (0, 1, 2, 3):
        os.close(fd)
    pidfd = os.pidfd_open(init)
    ready, _, _ = select.select([pidfd, status], [], [])
    if status in ready:  # a kill request, or the host is gone
        os.kill(init, signal.SIGKILL)
        try:  # noqa: SIM105 - take the request off the socket: closing it unread resets the host's end before it reads
            os.read(status, 64)
        except OSError:
            pass
    _pid, wait_status = os.waitpid(init, 0)
    try:
        os.write(status, json.dumps({"exit": os.waitstatus_to_exitcode(wait_status)}).encode())
    finally:
        os._exit(0)


def _drop_capabilities(libc: Any) -> None:
    """Empty every capability set (the new user namespace granted a full set to its first process)."""
    import ctypes

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    header = Header(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (Data * 2)()
    if _CAPSET_NUMBER is None or libc.syscall(_CAPSET_NUMBER, ctypes.byref(header), data) != 0:
        os.write(2, b"sandbox launcher: cannot drop the run's capabilities\n")
        os._exit(_EXIT_NO_LAUNCH)


def _init(settings: dict[str, Any], libc: Any) -> None:
    """The run's first process (pid 1 of its namespace): its own /proc, work dir, environment; then ``_run``."""
    global _HARNESS_PID
    _HARNESS_PID = os.getpid()
    os.close(4)  # the status socket is the keeper's
    libc.prctl(1, 9)  # die with the keeper
    if libc.mount(b"proc", b"/proc", b"proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, None) != 0:
        os.write(2, b"sandbox launcher: cannot mount the run's /proc\n")
        os._exit(_EXIT_NO_LAUNCH)
    with open("/proc/self/oom_score_adj", "w") as oom:
        oom.write("1000")  # in a shared cgroup, the out-of-memory killer takes the run, never the launcher
    os.chdir("/tmp")
    os.environ.clear()
    os.environ.update(settings["env"])
    sys.argv[:] = ["-c", json.dumps(settings)]  # what a cold run's candidate sees: its own call's settings
    _drop_capabilities(libc)
    _run(settings, 3)


def _run(settings: dict[str, Any], result_fd: int) -> None:
    """Confine this process, then serve the session or make the one call ``settings`` describe; never returns."""
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


def main() -> None:
    global _HARNESS_PID
    _HARNESS_PID = os.getpid()
    settings = json.loads(sys.argv[1])
    if settings.get("zygote"):
        _zygote(settings)
    _run(settings, _result_fd(settings["result"]))


if __name__ == "__main__":
    main()
