"""The warm path on every backend: consecutive candidates in one slot share nothing, and no fault stops the slot.

Each test drives a real warm evaluator (one slot, so consecutive evaluations
go through the same worker and, on bwrap and process, the same zygote) and
checks from the host what the candidates could not see.
"""

from __future__ import annotations

import asyncio
import os
import signal
import textwrap
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from evolve.evaluators.pool import WarmPool
from evolve.evaluators.runner import Evaluator
from evolve.problem import load_problem
from evolve.values import EvalResult, EvalStatus
from tests.conftest import write_problem
from tests.sandbox.helpers import SET_NAME, processes_named, survivors

T = TypeVar("T")

YAML = """\
name: warm
description: Consecutive candidates in one slot.
objective:
  metric: score
limits:
  timeout_s: 4
  cpu_s: 3
  memory_mb: 512
  processes: 16
"""

EVALUATOR = """\
def evaluate(candidate):
    found = candidate.call("probe")
    return {"metrics": {"score": 1.0}, "artifacts": {"found": repr(found)}}
"""


def _program(body: str, **values: object) -> str:
    text = textwrap.indent(textwrap.dedent(body).strip().format(**values), "    ")
    return f"import builtins, os, sys, time\n\n# EVOLVE-BLOCK-START\ndef probe():\n{text}\n# EVOLVE-BLOCK-END\n"


# The first candidate leaves everything it can behind: files in its work dir, /tmp and /dev/shm, a
# daemon, patched builtins and modules (NumPy's, which the zygote preloads, included), an
# environment variable and an inheritable descriptor.
LEAVER = """\
for path in ("left_in_workdir", "/tmp/left_in_tmp", "/dev/shm/left_in_shm"):
    with open(path, "w") as out:
        out.write("left")
fd = os.open("/tmp/left_in_tmp", os.O_RDONLY)
os.set_inheritable(fd, True)
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        {name}time.sleep(60)
    os._exit(0)
builtins.LEFT_BEHIND = True
sys.modules["left_behind"] = type(sys)("left_behind")
os.environ["LEFT_BEHIND"] = "1"
import numpy
numpy.LEFT_BEHIND = True
time.sleep(0.2)  # the daemon is up and named before this candidate ends
return "left"
"""

FINDER = """\
found = [p for p in ("left_in_workdir", "/tmp/left_in_tmp", "/dev/shm/left_in_shm") if os.path.exists(p)]
found += [name for name in os.listdir("/tmp") + os.listdir("/dev/shm")]
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            with open(f"/proc/{{pid}}/comm") as comm:
                if comm.read().strip() == {token!r}:
                    found.append("the daemon, pid " + pid)
        except OSError:
            pass
if hasattr(builtins, "LEFT_BEHIND"):
    found.append("builtins")
if "left_behind" in sys.modules:
    found.append("sys.modules")
if "LEFT_BEHIND" in os.environ:
    found.append("environment")
import numpy
if hasattr(numpy, "LEFT_BEHIND"):
    found.append("numpy patched")
for fd in os.listdir("/proc/self/fd"):
    try:
        target = os.readlink(f"/proc/self/fd/{{fd}}")
    except OSError:
        continue
    if "left_in" in target:
        found.append("descriptor " + fd + " -> " + target)
return found
"""


def _run(coroutine: Callable[[], Awaitable[T]], evaluator: Evaluator) -> T:
    async def go() -> T:
        try:
            return await coroutine()
        finally:
            await evaluator.close()

    return asyncio.run(go())


def _evaluator(tmp_path: Path, backend: str, *, evaluator: str = EVALUATOR, yaml: str = YAML) -> Evaluator:
    problem = load_problem(write_problem(tmp_path / "source", yaml=yaml, evaluator=evaluator, program=_program("return 1")))
    return Evaluator(problem, problem_dir=tmp_path / "problem", sandbox=backend, executor="warm", slots=1)


def test_the_next_candidate_in_a_slot_finds_nothing_the_last_one_left(backend: str, tmp_path: Path) -> None:
    token = f"zy{uuid.uuid4().hex[:10]}"
    name = SET_NAME.format(token=token).replace("\n", "\n        ")
    evaluator = _evaluator(tmp_path, backend)

    async def both() -> tuple[EvalResult, list[int], EvalResult, list[int]]:
        first = await evaluator.evaluate(_program(LEAVER, name=name))
        workers = _pool(evaluator).worker_pids()
        second = await evaluator.evaluate(_program(FINDER, token=token))
        return first, workers, second, _pool(evaluator).worker_pids()

    first, workers, second, workers_after = _run(both, evaluator)
    assert first.status is EvalStatus.OK and first.artifacts["found"] == "'left'", first.artifacts
    assert second.status is EvalStatus.OK, second.artifacts
    assert second.artifacts["found"] == "[]", f"the second candidate found what the first left: {second.artifacts['found']}"
    assert workers == workers_after and len(workers) == 1, "both evaluations ran in the same warm worker"
    assert survivors(token) == [], "the first candidate's daemon outlived it"
    if backend != "docker":
        assert evaluator.health().warm_launchers, evaluator.health()


KILLER = """\
import signal
targets = [os.getppid(), 1]
for pid in os.listdir("/proc"):
    if pid.isdigit() and int(pid) != os.getpid():
        targets.append(int(pid))
for pid in targets:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
try:
    os.killpg(os.getpgid(0), signal.SIGKILL)
except OSError:
    pass
os.kill(-1, signal.SIGKILL)
return "still here"
"""


def test_a_candidate_that_kills_everything_it_can_reach_fails_alone(backend: str, tmp_path: Path) -> None:
    """Its parent, pid 1, every pid it sees, its group, kill(-1): it ends as an ERROR and the next evaluation is fine."""
    evaluator = _evaluator(tmp_path, backend)

    async def both() -> tuple[EvalResult, EvalResult]:
        return await evaluator.evaluate(_program(KILLER)), await evaluator.evaluate(_program("return 2"))

    killer, after = _run(both, evaluator)
    assert killer.status is EvalStatus.ERROR, killer.artifacts
    assert after.status is EvalStatus.OK, after.artifacts


def _pool(evaluator: Evaluator) -> WarmPool:
    assert isinstance(evaluator.executor, WarmPool)
    return evaluator.executor


def _descendants(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of every live descendant of ``pid``."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parent = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            try:
                found.append((child, Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")))
            except OSError:
                continue
            todo.append(child)
    return found


async def _started(token: str, seconds: float = 30) -> bool:
    """Whether a process named ``token`` appears within ``seconds`` (polled: /proc has no event to wait on)."""
    for _ in range(int(seconds / 0.05)):
        if processes_named(token):
            return True
        await asyncio.sleep(0.05)
    return False


SLEEPER = """\
{name}time.sleep(60)
"""


@pytest.mark.parametrize("victim", ["zygote", "worker"])
def test_a_zygote_or_worker_killed_mid_evaluation_costs_that_evaluation_only(backend: str, victim: str, tmp_path: Path) -> None:
    """Killed from outside while a candidate runs: that candidate is an ERROR, the slot comes back, the next is OK."""
    if victim == "zygote" and backend == "docker":
        pytest.skip("the docker backend starts a container per call: it has no zygote")
    token = f"zy{uuid.uuid4().hex[:10]}"
    name = SET_NAME.format(token=token)
    evaluator = _evaluator(tmp_path, backend)

    async def scenario() -> tuple[EvalResult, EvalResult, int]:
        pool = _pool(evaluator)
        running = asyncio.ensure_future(evaluator.evaluate(_program(SLEEPER, name=name)))
        assert await _started(token), "the candidate never started"
        (worker,) = pool.worker_pids()
        if victim == "worker":
            os.kill(worker, signal.SIGKILL)
        else:
            zygotes = [pid for pid, cmdline in _descendants(worker) if '"zygote": true' in cmdline and "bwrap" not in cmdline]
            assert zygotes, _descendants(worker)
            for pid in zygotes:
                os.kill(pid, signal.SIGKILL)
        killed = await running
        return killed, await evaluator.evaluate(_program("return 3")), pool.restarts

    killed, after, restarts = _run(scenario, evaluator)
    assert killed.status in {EvalStatus.ERROR, EvalStatus.TIMEOUT}, killed.artifacts
    assert killed.status is EvalStatus.ERROR or victim == "zygote", killed.artifacts
    assert after.status is EvalStatus.OK, after.artifacts
    assert survivors(token) == [], "the killed evaluation's candidate lives on"
    assert restarts == (1 if victim == "worker" else 0)


def test_a_timed_out_or_cancelled_evaluation_keeps_the_worker(backend: str, tmp_path: Path) -> None:
    """The worker kills an evaluation past its deadline itself; a cancelled one costs the worker, and the slot restarts."""
    token = f"zy{uuid.uuid4().hex[:10]}"
    yaml = YAML.replace("timeout_s: 4", "timeout_s: 1").replace("cpu_s: 3", "cpu_s: 1")
    hang = "import time\n\ndef evaluate(candidate):\n    candidate.call('probe')\n    time.sleep(60)\n"
    evaluator = _evaluator(tmp_path, backend, yaml=yaml, evaluator=hang)

    async def scenario() -> tuple[EvalResult, list[int], list[int], int]:
        pool = _pool(evaluator)
        timed_out = await evaluator.evaluate(_program("return 1"))
        workers = pool.worker_pids()
        running = asyncio.ensure_future(evaluator.evaluate(_program(SLEEPER, name=SET_NAME.format(token=token))))
        assert await _started(token), "the candidate never started"
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        return timed_out, workers, pool.worker_pids(), pool.restarts

    timed_out, workers, after_cancel, _restarts = _run(scenario, evaluator)
    assert timed_out.status is EvalStatus.TIMEOUT, timed_out.artifacts
    assert len(workers) == 1, "the worker survived its evaluation's deadline"
    assert after_cancel == [], "the cancelled evaluation's worker was stopped"
    assert survivors(token) == [], "the cancelled evaluation's candidate lives on"
