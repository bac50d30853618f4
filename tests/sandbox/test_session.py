"""Sandbox sessions on every backend: one confined process serving many calls, and how it ends."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from pathlib import Path

import pytest

from evolve.evaluators import Candidate, CandidateError, CandidateTimeout
from evolve.evaluators.runner import Evaluator
from evolve.problem import load_problem
from evolve.sandbox import Sandbox, SandboxLimits
from evolve.values import EvalStatus
from tests.conftest import write_problem
from tests.sandbox.helpers import SET_NAME, processes_named

LIMITS = SandboxLimits(wall_s=30, cpu_s=30)


def candidate(sandbox: Sandbox, code: str, *, limits: SandboxLimits = LIMITS, budget_s: float = 30.0) -> Candidate:
    return Candidate(code, sandbox=sandbox, limits=limits, deadline=time.monotonic() + budget_s)


def gone(token: str, *, within_s: float = 3.0) -> bool:
    """Whether no live process named ``token`` is left (SIGKILL takes a moment to land)."""
    deadline = time.monotonic() + within_s
    while processes_named(token):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_calls_return_values_in_order_and_state_persists(sandbox: Sandbox) -> None:
    code = "seen = []\ndef step(item, bins):\n    seen.append(item)\n    return {'sum': sum(seen), 'bins': [b - item for b in bins]}\n"
    c = candidate(sandbox, code)
    with c.session("step") as session:
        answers = [session.call(item, [10, 20]) for item in (1, 2)]
        assert c.call("step", 100, []) == {"sum": 100, "bins": []}, "a one-shot call shares the session's state"
        answers += [session.call(item, [10, 20]) for item in (3, 4)]
        assert session.call(item=5, bins=[]) == {"sum": 15, "bins": []}
    assert [a["sum"] for a in answers] == [1, 3, 6, 10]
    assert answers[2]["bins"] == [7, 17]
    assert c.calls == 6 and c.sandbox_failure is None


def test_numpy_results_decode_as_in_a_call(sandbox: Sandbox) -> None:
    code = "import numpy as np\ndef scores(bins):\n    return np.asarray(bins, dtype=np.float64) * 2\n"
    with candidate(sandbox, code).session("scores") as session:
        value = session.call([1.5, 2.0])
    assert value.dtype.name == "float64" and value.tolist() == [3.0, 4.0]


def test_two_sessions_share_nothing(sandbox: Sandbox) -> None:
    code = (
        "import os\n"
        "state = {}\n"
        "def probe(mark):\n"
        "    before = (dict(state), sorted(os.listdir('.')))\n"
        "    state[mark] = True\n"
        "    open(f'file-{mark}', 'w').write(mark)\n"
        "    return before\n"
    )
    c = candidate(sandbox, code)
    with c.session("probe") as first, c.session("probe") as second:
        assert first.call("a") == [{}, []]
        assert second.call("b") == [{}, []], "the second session saw the first one's state or files"
        assert first.call("c") == [{"a": True}, ["file-a"]]
    with c.session("probe") as third:
        assert third.call("d") == [{}, []], "a later session saw an earlier one's state or files"


READ_AHEAD = """
import fcntl, os
def peek(item):
    flags = fcntl.fcntl(0, fcntl.F_GETFL)
    fcntl.fcntl(0, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    try:
        return os.read(0, 1 << 16).decode(errors='replace')
    except BlockingIOError:
        return None
    finally:
        fcntl.fcntl(0, fcntl.F_SETFL, flags)

def wait_for_next(item):
    return os.read(0, 1 << 16).decode(errors='replace')
"""


def test_the_candidate_cannot_read_a_request_before_it_is_sent(sandbox: Sandbox) -> None:
    # The next request is written only after this call's answer came back, so stdin is
    # empty during every call: a non-blocking read finds nothing, whatever the timing.
    with candidate(sandbox, READ_AHEAD).session("peek") as session:
        assert [session.call(item) for item in range(20)] == [None] * 20
    # A blocking read waits for a request that is never sent while the call runs.
    with candidate(sandbox, READ_AHEAD).session("wait_for_next", timeout=2.0) as session, pytest.raises(CandidateTimeout):
        session.call(0)


FAILURES = {
    "raises": ("raise ValueError('boom')", CandidateError, "the program says: 'ValueError: boom'"),
    "crashes": ("os._exit(3)", CandidateError, "exited with code 3"),
    "hangs": ("time.sleep(60)", CandidateTimeout, "ran past its"),
    "floods output": ("while True:\n            sys.stdout.write('x' * 65536)", CandidateError, "printed more than"),
    "returns too much": ("return 'x' * 300_000", CandidateError, "returned more than"),
    "forges a malformed result": (
        "for fd in result_channels():\n            os.write(fd, (9).to_bytes(4, 'big') + b'{not json')\n        return 1",
        CandidateError, "malformed data",
    ),
}

FAILING = """
import os, sys, time
{name_self}
def result_channels():
    # The harness's result channel: a pipe or socket other than stdin, stdout and stderr.
    std = {{os.readlink(f'/proc/self/fd/{{fd}}') for fd in (0, 1, 2)}}
    found = []
    for entry in os.listdir('/proc/self/fd'):
        fd = int(entry)
        try:
            target = os.readlink(f'/proc/self/fd/{{fd}}')
        except OSError:
            continue
        if fd > 2 and target.startswith(('pipe:', 'socket:')) and target not in std:
            found.append(fd)
    return found

def step(i):
    if os.fork() == 0:  # a descendant that must not outlive the session
        os.setsid()
        time.sleep(60)
        os._exit(0)
    if i == 1:
        {failure}
    return i
"""


@pytest.mark.parametrize("case", list(FAILURES))
def test_a_failing_call_is_the_candidates_error_and_ends_the_session(sandbox: Sandbox, case: str) -> None:
    failure, error, fragment = FAILURES[case]
    token = f"ev{uuid.uuid4().hex[:10]}"
    code = FAILING.format(name_self=SET_NAME.format(token=token), failure=failure)
    c = candidate(sandbox, code, limits=SandboxLimits(wall_s=30, cpu_s=30, output_bytes=100_000, result_bytes=200_000))
    with c.session("step", timeout=4.0) as session:
        assert session.call(0) == 0
        with pytest.raises(error) as caught:
            session.call(1)
        assert fragment in str(caught.value)
        if case == "raises":
            assert "step" in caught.value.traceback
        assert gone(token), "the session's processes outlived its failure"
        with pytest.raises(CandidateError, match="is over after an earlier error"):
            session.call(2)
    assert c.sandbox_failure is None


def test_no_process_outlives_the_session_however_the_block_ends(sandbox: Sandbox) -> None:
    token = f"ev{uuid.uuid4().hex[:10]}"
    code = FAILING.format(name_self=SET_NAME.format(token=token), failure="pass")
    with candidate(sandbox, code).session("step") as session:
        session.call(0)
        assert processes_named(token), "the candidate's processes should be alive during the session"
    assert gone(token), "a process of the session outlived a normal exit"
    with pytest.raises(KeyError), candidate(sandbox, code).session("step") as session:
        session.call(0)
        raise KeyError("the evaluator failed")
    assert gone(token), "a process of the session outlived an evaluator's exception"


def test_a_program_that_fails_to_load_fails_the_first_call(sandbox: Sandbox) -> None:
    for code, message in [("import nonexistent_module_xyz\n", "ModuleNotFoundError"), ("x = 1\n", "defines no function 'step'")]:
        with candidate(sandbox, code).session("step") as session, pytest.raises(CandidateError, match=message):
            session.call(0)


def test_the_session_shares_the_evaluations_wall_clock(sandbox: Sandbox) -> None:
    code = "import time\ndef step(seconds):\n    time.sleep(seconds)\n    return seconds\n"
    with candidate(sandbox, code, budget_s=3.0).session("step") as session:
        assert session.call(0.1) == 0.1
        with pytest.raises(CandidateTimeout):
            for _ in range(10):
                session.call(0.5)  # each fits, not all together


def test_outside_its_block_a_session_refuses_calls(sandbox: Sandbox) -> None:
    session = candidate(sandbox, "def step():\n    return 1\n").session("step")
    with pytest.raises(RuntimeError):
        session.call()
    with session:
        assert session.call() == 1
    with pytest.raises(RuntimeError):
        session.call()


def test_round_trip_latency(sandbox: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    code = "def priority(item, bins):\n    return [-(b - item) for b in bins]\n"
    bins = [float(b) for b in range(40, 90)]
    c = candidate(sandbox, code)
    started = time.monotonic()
    with c.session("priority") as session:
        opened = time.monotonic() - started
        session.call(1.0, bins)
        times = []
        for item in range(2000):
            t0 = time.perf_counter()
            session.call(float(item % 50), bins)
            times.append(time.perf_counter() - t0)
    times.sort()
    with capsys.disabled():
        print(f"\n[{sandbox.name}] session start + first call {opened * 1e3:.1f} ms; round trip (50 bins) "
              f"median {statistics.median(times) * 1e6:.0f} us, p90 {times[int(len(times) * 0.9)] * 1e6:.0f} us, "
              f"max {times[-1] * 1e6:.0f} us over {len(times)} calls")


ONLINE_EVALUATOR = """
from evolve.evaluators import Invalid

ITEMS = [0.42, 0.71, 0.18, 0.55, 0.29, 0.63, 0.11, 0.37, 0.52, 0.08]


def evaluate(candidate):
    bins = []  # remaining capacities; the candidate sees one item at a time and never the rest
    with candidate.session("priority") as session:
        for item in ITEMS:
            fits = [i for i, room in enumerate(bins) if room >= item]
            if not fits:
                bins.append(1.0 - item)
                continue
            scores = session.call(item, [bins[i] for i in fits])
            if not isinstance(scores, list) or len(scores) != len(fits):
                raise Invalid(f"priority() must return one score per bin, got {scores!r}")
            best = fits[max(range(len(fits)), key=lambda k: scores[k])]
            bins[best] -= item
    return {"metrics": {"value": -float(len(bins))}, "features": {"x": float(len(bins))}}
"""


def _evaluate(tmp_path: Path, backend: str, program: str) -> tuple[EvalStatus, dict[str, float], dict[str, object]]:
    folder = write_problem(tmp_path / "online", evaluator=ONLINE_EVALUATOR)
    result = asyncio.run(Evaluator(load_problem(folder), problem_dir=tmp_path / "work", sandbox=backend).evaluate(program))
    return result.status, dict(result.metrics), dict(result.artifacts)


def test_an_evaluator_drives_a_session_through_the_real_evaluator(tmp_path: Path, backend: str) -> None:
    best_fit = "def priority(item, bins):\n    return [-(room - item) for room in bins]\n"
    status, metrics, _ = _evaluate(tmp_path, backend, best_fit)
    assert status is EvalStatus.OK and metrics == {"value": -4.0}
    crashing = ("calls = []\ndef priority(item, bins):\n    calls.append(item)\n"
                "    if len(calls) == 2:\n        raise RuntimeError('gave up')\n    return [0.0] * len(bins)\n")
    status, _, artifacts = _evaluate(tmp_path, backend, crashing)
    assert status is EvalStatus.ERROR and "gave up" in str(artifacts.get("error"))


def test_one_call_of_a_session_returns_at_most_a_mebibyte(sandbox: Sandbox) -> None:
    # a candidate padding each answer made the trusted side parse 30 MB per step
    code = "def step(n):\n    return 'x' * n\n"
    with candidate(sandbox, code).session("step") as session:
        assert session.call(1000) == "x" * 1000
        with pytest.raises(CandidateError, match="returned more than 1048576 bytes"):
            session.call(2 << 20)
