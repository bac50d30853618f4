"""Every backend: limits, timeouts that kill every descendant, capped output, the result channel."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid

import numpy as np

from evolve.sandbox import RunOutcome, Sandbox, SandboxLimits, decode_result
from evolve.sandbox.base import RunSpec
from evolve.sandbox.confine import cgroup_layout
from tests.sandbox.helpers import SET_NAME, survivors, unavailable


def run(sandbox: Sandbox, code: str, function: str = "main", *, limits: SandboxLimits | None = None,
        args: list[object] | None = None) -> RunOutcome:
    spec = RunSpec(code=code, request=json.dumps({"function": function, "args": args or []}).encode(),
                   limits=limits or SandboxLimits(wall_s=10, cpu_s=10))
    return asyncio.run(sandbox.run(spec))


def value_of(outcome: RunOutcome) -> object:
    assert outcome.result is not None, f"no result: exit {outcome.exit_code}, stderr {outcome.stderr[-500:]!r}"
    envelope = decode_result(outcome.result)
    assert envelope["ok"], envelope
    return envelope["value"]


def test_result_comes_back_through_its_own_channel_not_stdout(sandbox: Sandbox) -> None:
    outcome = run(sandbox, "def main(a):\n    print('{\"ok\": true, \"value\": 999}')\n    return a * 2\n", args=[21])
    assert value_of(outcome) == 42
    assert b"999" in outcome.stdout + outcome.stderr


def test_numpy_arrays_round_trip_without_pickle(sandbox: Sandbox) -> None:
    value = value_of(run(sandbox, "import numpy as np\ndef main():\n    return np.arange(6, dtype=np.float32).reshape(2, 3)\n"))
    assert isinstance(value, np.ndarray)
    assert value.shape == (2, 3) and value.dtype.name == "float32" and value[1, 2] == 5.0


#: README ("Secrets"): the candidate's whole environment, built from nothing (HOME and TMPDIR: its work dir).
DOCUMENTED_ENV = {"PATH", "HOME", "TMPDIR", "LANG", "PYTHONDONTWRITEBYTECODE", "PYTHONHASHSEED",
                  "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"}
#: What bubblewrap adds: PWD, for the work dir it changes into.
BWRAP_ADDS = {"PWD"}
#: Under docker evolve sets HOME and two BLAS settings; the engine adds PATH, HOSTNAME and (podman) TERM and
#: container; Python, finding no LANG, coerces the C locale to C.UTF-8 with LC_CTYPE.
DOCKER_ENV = {"HOME", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"}
DOCKER_ENGINE_ADDS = {"PATH", "HOSTNAME", "TERM", "container", "LC_CTYPE"}


def test_the_environment_is_exactly_the_documented_one(sandbox: Sandbox) -> None:
    os.environ["EVOLVE_TEST_SECRET"] = "sk-planted-secret-123"
    try:
        seen = value_of(run(sandbox, "import os\ndef main():\n    return [dict(os.environ), os.getcwd()]\n"))
    finally:
        del os.environ["EVOLVE_TEST_SECRET"]
    assert isinstance(seen, list)
    env, cwd = seen
    assert "sk-planted" not in json.dumps(env)
    if sandbox.name == "docker":
        assert DOCKER_ENV <= set(env) <= DOCKER_ENV | DOCKER_ENGINE_ADDS, sorted(env)
        assert env["HOME"] == cwd and env.get("LC_CTYPE", "C.UTF-8") == "C.UTF-8"
    else:
        assert set(env) == DOCUMENTED_ENV | (BWRAP_ADDS if sandbox.name == "bwrap" else set()), sorted(env)
        assert env["HOME"] == env["TMPDIR"] == env.get("PWD", cwd) == cwd  # the work dir
        assert (env["LANG"], env["PYTHONDONTWRITEBYTECODE"], env["PYTHONHASHSEED"]) == ("C.UTF-8", "1", "0")
    assert all(env[k] == "1" for k in env if k.endswith("_NUM_THREADS"))


def test_the_candidate_runs_as_an_unprivileged_user(sandbox: Sandbox) -> None:
    uid = value_of(run(sandbox, "import os\ndef main():\n    return os.getuid()\n"))
    assert uid != 0


def test_wall_timeout_kills_every_descendant(sandbox: Sandbox) -> None:
    token = f"ev{uuid.uuid4().hex[:10]}"
    child = "import sys, time\n" + SET_NAME.format(token=token) + "print('child up', flush=True)\ntime.sleep(600)\n"
    code = f"import time, subprocess, sys\ndef main():\n    subprocess.Popen([sys.executable, '-c', {child!r}])\n    time.sleep(600)\n"
    started = time.monotonic()
    outcome = run(sandbox, code, limits=SandboxLimits(wall_s=5.0, cpu_s=5))
    elapsed = time.monotonic() - started
    assert outcome.timed_out and b"child up" in outcome.stdout + outcome.stderr  # the child was running, under its name, when time ran out
    assert elapsed < 120, elapsed  # stopped at its 5 s, not after the 600 s the candidate and its child asked for
    assert survivors(token) == [], "a child of the candidate outlived the run"


def test_output_flood_is_capped_and_stopped(sandbox: Sandbox) -> None:
    outcome = run(sandbox, "import sys\ndef main():\n    while True:\n        sys.stdout.write('x' * 65536)\n",
                  limits=SandboxLimits(wall_s=20, cpu_s=20, output_bytes=100_000))
    assert outcome.output_exceeded and not outcome.timed_out
    assert len(outcome.stdout) + len(outcome.stderr) <= 100_000


def test_memory_limit_stops_a_huge_allocation(sandbox: Sandbox) -> None:
    outcome = run(sandbox, "def main():\n    return len(bytearray(4 << 30))\n",
                  limits=SandboxLimits(wall_s=10, cpu_s=10, memory_bytes=512 << 20))
    assert outcome.result is not None
    envelope = decode_result(outcome.result)
    assert envelope["ok"] is False and "MemoryError" in envelope["error"]


def test_cpu_limit_kills_a_busy_loop(sandbox: Sandbox) -> None:
    outcome = run(sandbox, "def main():\n    while True:\n        pass\n", limits=SandboxLimits(wall_s=20, cpu_s=1))
    assert not outcome.timed_out and outcome.result is None and outcome.exit_code is not None and outcome.exit_code != 0


def test_candidate_exceptions_are_reported_with_a_traceback(sandbox: Sandbox) -> None:
    outcome = run(sandbox, "def main():\n    raise ValueError('boom')\n")
    assert outcome.result is not None
    envelope = decode_result(outcome.result)
    assert envelope["ok"] is False and envelope["error"] == "ValueError: boom" and "main" in envelope["traceback"]


def test_each_run_gets_a_fresh_work_directory(sandbox: Sandbox) -> None:
    code = "import os\ndef main():\n    before = sorted(os.listdir('.'))\n    open('scratch.txt', 'w').write('x')\n    return before\n"
    assert value_of(run(sandbox, code)) == []
    assert value_of(run(sandbox, code)) == [], "a file written by one run was visible to the next"


def test_a_daemon_holding_stdout_does_not_stall_the_run(sandbox: Sandbox) -> None:
    token = f"ev{uuid.uuid4().hex[:10]}"
    code = (
        "import ctypes, os, time\n"
        "def main():\n"
        "    ready, up = os.pipe()\n"
        "    if os.fork() == 0:\n"
        "        os.setsid()\n"
        "        if os.fork() == 0:\n"
        f"            ctypes.CDLL(None).prctl(15, {token!r}.encode(), 0, 0, 0)\n"
        "            os.write(up, b'1')\n"
        "            time.sleep(600)\n"
        "        os._exit(0)\n"
        "    os.read(ready, 1)\n"  # the daemon is up, named, and holds stdout
        "    return 7\n"
    )
    started = time.monotonic()
    assert value_of(run(sandbox, code)) == 7
    assert time.monotonic() - started < 120  # the run ended with main(), not with the daemon's 600 s
    assert survivors(token) == [], "the daemon outlived the run"


def test_memory_is_capped_across_processes_where_cgroups_exist(sandbox: Sandbox) -> None:
    if sandbox.name != "docker" and cgroup_layout() is None:
        unavailable(sandbox.name, "no writable cgroup here: memory is capped per process only (RLIMIT_AS)")
    code = (
        "import os\n"
        "def main():\n"
        "    pids = []\n"
        "    for _ in range(4):\n"
        "        pid = os.fork()\n"
        "        if pid == 0:\n"
        "            block = bytearray(200 << 20)\n"
        "            for i in range(0, len(block), 4096):\n"
        "                block[i] = 1\n"
        "            os._exit(0)\n"
        "        pids.append(pid)\n"
        "    return [os.waitpid(pid, 0)[1] for pid in pids]\n"
    )
    roomy = value_of(run(sandbox, code, limits=SandboxLimits(wall_s=60, cpu_s=20, memory_bytes=2 << 30)))
    assert roomy == [0, 0, 0, 0]  # each child fits its own rlimits: only a limit on the group can stop them
    outcome = run(sandbox, code, limits=SandboxLimits(wall_s=60, cpu_s=20, memory_bytes=384 << 20))
    # 4 x 200 MB touched at once against a 384 MB group: the kernel's OOM killer SIGKILLs the biggest, the children
    # (a MemoryError would be exit status 1, an rlimit's SIGSEGV or SIGXCPU another signal)
    statuses = value_of(outcome)
    assert isinstance(statuses, list) and all(s in (0, signal.SIGKILL) for s in statuses), statuses
    assert statuses.count(signal.SIGKILL) >= 1, statuses


def test_a_forked_child_that_unwinds_into_the_harness_does_not_write_a_result(sandbox: Sandbox) -> None:
    # the child's fork() returns into the candidate, which raises (or returns): it must not speak for the run
    code = "import os, time\ndef main():\n    if os.fork() == 0:\n        raise MemoryError('the child')\n    time.sleep(0.5)\n    return 7\n"
    assert value_of(run(sandbox, code)) == 7
    code = ("import os, time\ndef main():\n    child = os.fork()\n    if child:\n        os.waitpid(child, 0)\n"
            "    return 'parent' if child else 'child'\n")
    assert value_of(run(sandbox, code)) == "parent"
