"""A hostile evaluator.py for the sandboxed-evaluator tests: it tries to escape, then scores its candidate honestly.

Each probe reports ``blocked: ...`` or ``REACHED: ...`` in the evaluation's
artifacts, so a test reads exactly which walls held; the score is the
quadratic problem's (``-(x - 3)^2`` of ``solve()``), so the same test sees
that a sandboxed evaluator still evaluates its candidates correctly.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["FORKS", "PROBES", "hostile_evaluator", "outside_address", "reached"]

#: How many processes the fork bomb tries to start.
FORKS = 400

_SOURCE = '''
import json
import os
import socket
import time

from evolve.evaluators import Invalid

TARGETS = json.loads(%(targets)r)


def _try(action):
    try:
        return "REACHED: " + str(action())[:200]
    except BaseException as exc:
        return "blocked: " + type(exc).__name__ + ": " + str(exc)[:200]


def _read(path):
    with open(path, "rb") as handle:
        return handle.read(64)


def _environment():
    found = [k for k, v in os.environ.items() if TARGETS["secret"] in v or k == TARGETS["secret_name"]]
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if TARGETS["secret"].encode() in _read_all("/proc/" + pid + "/environ"):
                    found.append(pid)
            except OSError:
                pass
    if found:
        return "in " + ", ".join(found)
    raise LookupError("the planted key is nowhere in this process's world")


def _read_all(path):
    with open(path, "rb") as handle:
        return handle.read()


def _processes():
    seen = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                seen.append(_read_all("/proc/" + pid + "/cmdline").replace(b"\\0", b" ").decode(errors="replace"))
            except OSError:
                pass
    foreign = [c for c in seen if any(word in c for word in TARGETS["host_words"])]
    if foreign:
        return foreign
    raise LookupError(str(len(seen)) + " processes in view, none of the host's")


def _connect(host, port):
    with socket.create_connection((host, port), timeout=2) as conn:
        return conn.getpeername()


def _fill(path):
    written = 0
    chunk = b"x" * (1 << 20)
    try:
        with open(path, "wb") as handle:
            while written < TARGETS["fill_bytes"]:
                handle.write(chunk)
                handle.flush()
                written += len(chunk)
    except OSError as exc:
        raise OSError(str(written >> 20) + " MiB written, then " + type(exc).__name__ + ": " + str(exc)) from None
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
    return str(written >> 20) + " MiB written"


def _fill_elsewhere():
    """The root and the problem's own folder: blocked only if both are."""
    verdicts = [_try(lambda: _fill("/fill")),
                _try(lambda: _fill(os.path.join(os.path.dirname(os.path.abspath(__file__)), "fill")))]
    if all(v.startswith("blocked") for v in verdicts):
        raise OSError(" / ".join(verdicts))
    return " / ".join(verdicts)


def _fork_bomb():
    children = []
    try:
        for _ in range(TARGETS["forks"]):
            pid = os.fork()
            if pid == 0:
                time.sleep(3)
                os._exit(0)
            children.append(pid)
    except OSError as exc:
        started = len(children)
        for pid in children:
            os.waitpid(pid, 0)
        raise OSError("started " + str(started) + " processes, then " + type(exc).__name__ + ": " + str(exc)) from None
    for pid in children:
        os.waitpid(pid, 0)
    return "started all " + str(len(children)) + " processes"


def evaluate(candidate):
    probes = {
        "store": lambda: _read(TARGETS["store"]),
        "store_wal": lambda: _read(TARGETS["store"] + "-wal"),
        "environment": _environment,
        "other_problem": lambda: _read(TARGETS["other_problem"]),
        "server_source": lambda: _read(TARGETS["server_source"]),
        "server_import": lambda: __import__("evolve.server.app"),
        "host_processes": _processes,
        "loopback": lambda: _connect("127.0.0.1", TARGETS["port"]),
        "network": lambda: _connect(TARGETS["outside_host"], TARGETS["port"]),
        "disk_tmp": lambda: _fill("/tmp/fill"),
        "disk_elsewhere": _fill_elsewhere,
        "fork_bomb": _fork_bomb,
    }
    artifacts = {name: _try(probe) for name, probe in probes.items()}
    x = candidate.call("solve")
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise Invalid("solve() must return a number")
    return {"metrics": {"value": -(x - 3.0) ** 2}, "features": {"x": x}, "artifacts": artifacts}
'''

#: The probes, by the artifact each writes.
PROBES = ("store", "store_wal", "environment", "other_problem", "server_source", "server_import", "host_processes",
          "loopback", "network", "disk_tmp", "disk_elsewhere", "fork_bomb")


def hostile_evaluator(*, store: str, secret_name: str, secret: str, other_problem: str, server_source: str, port: int,
                      outside_host: str = "10.255.255.1", fill_bytes: int = 1 << 30, forks: int = FORKS,
                      host_words: tuple[str, ...] = ("pytest", "uvicorn", "evolve serve")) -> str:
    """The evaluator's source, aimed at these real paths, secret and port of the host under test."""
    targets = {"store": store, "secret_name": secret_name, "secret": secret, "other_problem": other_problem,
               "server_source": server_source, "port": port, "outside_host": outside_host, "fill_bytes": fill_bytes,
               "forks": forks, "host_words": list(host_words)}
    return _SOURCE % {"targets": json.dumps(targets)}


def outside_address() -> str | None:
    """This host's address on its default route (not loopback), where a server on 0.0.0.0 answers; None without one."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))  # no packet is sent: this only picks the route
        except OSError:
            return None
        address: str = probe.getsockname()[0]
    return None if address.startswith("127.") else address


def reached(artifacts: dict[str, Any]) -> dict[str, str]:
    """The probes that got through (their artifact does not start with 'blocked')."""
    return {name: str(artifacts.get(name)) for name in PROBES if not str(artifacts.get(name, "")).startswith("blocked")}
