"""``kill -9`` at random moments of a real campaign, and what the store says after each.

The README promises that ``kill -9`` at any moment loses at most the proposals
in flight, and that ``evolve resume`` continues from the store alone: the
initial program is not re-added, counters continue, elites stay intact. Here a
real ``evolve run`` (mutator model, a small problem, a SQLite file) is killed
again and again at moments drawn from a seeded RNG, from start-up through the
initial evaluation to mid-run, and after each kill the database itself is
compared with what it held just before.

Every command runs under a small launcher that is a child subreaper
(``PR_SET_CHILD_SUBREAPER``), so whatever the campaign started and left
behind when it died becomes the launcher's child and can be found in /proc,
however it was re-parented.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import QUADRATIC_EVALUATOR, QUADRATIC_YAML, write_problem

SEED = 20240917
EVAL_CONCURRENCY = 2
LLM_CONCURRENCY = 2
IN_FLIGHT = EVAL_CONCURRENCY + LLM_CONCURRENCY  # the most proposals one process can have issued and not yet recorded
TARGET = 200  # long enough that the last kill still finds it running: warm evaluations make 30 or more a second

# Runs ARGV as its child in a new session, prints the child's pid, and as a child subreaper
# adopts everything the child leaves behind; exits (with the child's exit code) only once it
# has no child left, that is once every process the command started is gone.
LAUNCHER = """
import ctypes, os, subprocess, sys
if ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
    sys.exit("prctl(PR_SET_CHILD_SUBREAPER) failed")
child = subprocess.Popen(sys.argv[1:], start_new_session=True)
print(child.pid, flush=True)
code = 0
while True:
    try:
        pid, status = os.wait()
    except ChildProcessError:
        break
    if pid == child.pid:
        code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


# ------------------------------------------------------------------ processes
def _stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of a process, or None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def children(pid: int) -> list[int]:
    """Live (non-zombie) children of ``pid``, from /proc."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat(int(entry))) is not None and st[1] == pid and st[0] != "Z":
            out.append(int(entry))
    return out


@dataclass
class Launched:
    """One evolve command under the launcher."""

    launcher: subprocess.Popen[str]
    pid: int  # the evolve process (leader of its own session and process group)
    started: float

    def alive(self) -> bool:
        st = _stat(self.pid)
        return st is not None and st[0] != "Z"

    def survivors(self) -> list[tuple[int, str]]:
        """What the command started and is still running, the evolve process itself aside."""
        return [(p, _cmdline(p)) for p in children(self.launcher.pid) if p != self.pid]

    def wait_all_gone(self, timeout: float) -> bool:
        """Whether every process of the command is gone within ``timeout`` (the launcher exits then)."""
        try:
            self.launcher.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def kill_everything(self) -> list[str]:
        """SIGKILL every process the command left, group by group, until none is left; their command lines."""
        seen: dict[int, str] = {}
        deadline = time.monotonic() + 30
        while self.launcher.poll() is None and time.monotonic() < deadline:
            for pid, cmd in self.survivors():
                if cmd:  # an exiting process has no command line left
                    seen.setdefault(pid, cmd)
                with suppress(ProcessLookupError, PermissionError):
                    os.killpg(os.getpgid(pid), signal.SIGKILL)  # a worker leads its own group, its sandbox in it or below
                with suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
        assert self.launcher.poll() is not None, "the campaign's processes could not all be killed"
        return list(seen.values())


def launch(args: list[str], *, cwd: Path, env: dict[str, str]) -> Launched:
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER, sys.executable, "-m", "evolve", *args], cwd=cwd, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert launcher.stdout is not None
    pid = int(launcher.stdout.readline())
    return Launched(launcher=launcher, pid=pid, started=time.monotonic())


def wait_until(what: str, check: Callable[[], bool], *, proc: Launched, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert proc.alive(), f"the campaign process ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


# ---------------------------------------------------------------------- store
@dataclass(frozen=True)
class Snapshot:
    """What the database holds, read straight from its tables."""

    campaigns: list[dict[str, Any]]
    programs: dict[str, dict[str, Any]]  # id -> the columns a program never changes after it is recorded
    n_children: dict[str, int]
    elites: dict[tuple[int, str], tuple[str, float]]  # (island, cell) -> (program id, fitness)
    llm_sums: tuple[int, int, float]
    llm_iterations: set[int]

    @property
    def campaign(self) -> dict[str, Any] | None:
        return self.campaigns[0] if self.campaigns else None

    def iterations(self) -> list[int]:
        return sorted(p["iteration"] for p in self.programs.values())

    def gaps(self) -> set[int]:
        its = set(self.iterations())
        return set(range(1, max(its, default=0) + 1)) - its


_PROGRAM_COLUMNS = ("id", "iteration", "island", "parent_id", "generation", "origin", "status", "score", "fitness", "cell",
                    "code", "code_hash", "model")


@contextmanager
def _connect(db: Path) -> Iterator[sqlite3.Connection]:
    with closing(sqlite3.connect(db, timeout=30)) as conn:
        conn.row_factory = sqlite3.Row
        yield conn


def done(db: Path) -> int:
    """The campaign's iterations_done; -1 while there is no campaign (a light query: polled while the campaign runs)."""
    if not db.exists():
        return -1
    try:
        with _connect(db) as conn:
            row = conn.execute("SELECT iterations_done FROM campaigns").fetchone()
    except sqlite3.OperationalError:  # no schema yet
        return -1
    return -1 if row is None else int(row[0])


def read(db: Path) -> Snapshot | None:
    """The store's tables in one read transaction; None while there is no schema yet."""
    if not db.exists():
        return None
    with _connect(db) as conn:
        conn.execute("BEGIN")  # one consistent snapshot of all tables (WAL readers never block the writer)
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not {"campaigns", "programs", "elites", "llm_calls"} <= tables:
            return None
        campaigns = [dict(r) for r in conn.execute("SELECT * FROM campaigns")]
        rows = conn.execute(f"SELECT {', '.join(_PROGRAM_COLUMNS)}, n_children FROM programs").fetchall()
        elites = {(r["island"], r["cell"]): (r["program_id"], r["fitness"]) for r in conn.execute("SELECT * FROM elites")}
        sums = conn.execute("SELECT COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0), "
                            "COALESCE(SUM(cost_usd), 0.0) FROM llm_calls").fetchone()
        calls = {r[0] for r in conn.execute("SELECT DISTINCT iteration FROM llm_calls")}
        conn.execute("COMMIT")
    return Snapshot(
        campaigns=campaigns,
        programs={r["id"]: {c: r[c] for c in _PROGRAM_COLUMNS} for r in rows},
        n_children={r["id"]: r["n_children"] for r in rows},
        elites=elites, llm_sums=(sums[0], sums[1], sums[2]), llm_iterations=calls,
    )


_EMPTY = Snapshot(campaigns=[], programs={}, n_children={}, elites={}, llm_sums=(0, 0, 0.0), llm_iterations=set())


def check_consistent(s: Snapshot) -> None:
    """What must hold in the store at any moment, a kill included: every counter is what the tables say."""
    assert len(s.campaigns) <= 1, "a second campaign was created"
    campaign = s.campaign
    if campaign is None:
        assert not s.programs and not s.elites
        return
    programs = list(s.programs.values())
    initial = [p for p in programs if p["origin"] == "initial"]
    assert len(initial) == 1 and initial[0]["iteration"] == 0, "exactly one initial program, at iteration 0"
    its = s.iterations()
    assert len(its) == len(set(its)), "iteration numbers are unique"
    proposals = [p for p in programs if p["origin"] != "initial"]
    assert campaign["iterations_done"] == len(proposals)
    assert campaign["valid_done"] == sum(p["status"] == "ok" and p["fitness"] is not None for p in proposals)
    prompt, completion, cost = s.llm_sums
    assert (campaign["prompt_tokens"], campaign["completion_tokens"]) == (prompt, completion)
    assert campaign["cost_usd"] == pytest.approx(cost)
    assert s.llm_iterations <= set(its), "model calls are committed with their program, never without it"
    for pid, n in s.n_children.items():
        assert n == sum(p["parent_id"] == pid for p in programs), f"n_children of {pid}"
    ok = [p for p in programs if p["status"] == "ok" and p["fitness"] is not None]
    best = s.programs[campaign["best_program_id"]]
    assert best["fitness"] == campaign["best_fitness"] == max(p["fitness"] for p in ok)
    for (island, cell), (pid, fitness) in s.elites.items():
        elite = s.programs[pid]
        assert elite["status"] == "ok" and elite["cell"] == cell and elite["fitness"] == fitness, (island, cell)
    for p in ok:  # every valid program was offered to its cell, so that cell's elite is at least as good
        assert p["cell"] is not None
        assert (p["island"], p["cell"]) in s.elites, f"the elite of program {p['id']}'s cell is missing"
        assert s.elites[(p["island"], p["cell"])][1] >= p["fitness"], f"program {p['id']} beats the elite of its cell"


def check_kept(old: Snapshot, new: Snapshot) -> None:
    """Nothing recorded in ``old`` is lost or changed in ``new``; an elite is only ever replaced by a strictly better one."""
    missing = old.programs.keys() - new.programs.keys()
    assert not missing, f"programs recorded before were lost: {sorted(missing)}"
    for pid, program in old.programs.items():
        assert new.programs[pid] == program, f"program {pid} changed"
    for key, (pid, fitness) in old.elites.items():
        assert key in new.elites, f"the elite of {key} is gone"
        new_pid, new_fitness = new.elites[key]
        if new_pid != pid:
            assert new_fitness > fitness and new.programs[new_pid]["cell"] == key[1], f"elite {key} replaced by a worse one"
    if old.campaign is not None:
        assert new.campaign is not None and new.campaign["id"] == old.campaign["id"]
        for counter in ("iterations_done", "valid_done", "prompt_tokens", "completion_tokens"):
            assert new.campaign[counter] >= old.campaign[counter], counter


def describe(s: Snapshot | None, pid: int) -> str:
    """Where a kill of process ``pid`` left the store."""
    if s is None:
        return "no schema"
    if s.campaign is None:
        return "no campaign"
    claimed = "claimed by it" if str(s.campaign["owner"]).endswith(f":{pid}") else "not claimed by it"
    return f"campaign {claimed}, {s.campaign['iterations_done']} iterations done"


# ------------------------------------------------------------------- the test
def evolve(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "evolve", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def evaluating(proc: Launched) -> bool:
    """Whether the evolve process has an evaluator worker running."""
    return any(("evolve.evaluators.worker" in cmd or "evolve.evaluators.warm" in cmd)
               for cmd in (_cmdline(p) for p in children(proc.pid)))


def progressed(db: Path, n: int) -> Callable[[Launched, int], bool]:
    """Ready once the process has recorded ``n`` iterations."""
    return lambda proc, started_done: done(db) >= started_done + n


@dataclass(frozen=True)
class Kill:
    """A moment to kill at: once ``ready`` (given the process and the iterations done when it started), after ``delay_s``."""

    moment: str
    ready: Callable[[Launched, int], bool]
    delay_s: float


@pytest.mark.slow
def test_kill_9_at_random_moments_loses_only_what_was_in_flight(tmp_path: Path) -> None:
    folder = write_problem(tmp_path / "quad")
    (tmp_path / "c.json").write_text(json.dumps({"migration_interval": 2}))  # a ring migration every 4 iterations
    db = tmp_path / "k.db"
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    run_args = ["run", str(folder), "--model", "mutator", "--iterations", str(TARGET), "--seed", "7", "--islands", "2",
                "--eval-concurrency", str(EVAL_CONCURRENCY), "--llm-concurrency", str(LLM_CONCURRENCY),
                "--config", str(tmp_path / "c.json"), "--db", str(db), "-q"]
    resume_args = ["resume", "--db", str(db), "-q"]
    rng = random.Random(SEED)
    plan = [
        Kill("start-up: the store just created", lambda p, d: db.exists(), rng.uniform(0, 0.05)),
        Kill("the initial program's evaluation", lambda p, d: evaluating(p), rng.uniform(0, 0.05)),
        Kill("the first evaluations", lambda p, d: done(db) >= 0, rng.uniform(0, 0.2)),
        Kill("resume start-up", lambda p, d: True, rng.uniform(0.2, 1.5)),
        *(Kill("mid-run", progressed(db, rng.randint(1, 8)), rng.uniform(0, 0.3)) for _ in range(2)),
    ]
    history: list[Snapshot] = []
    kills: list[dict[str, Any]] = []
    lost: set[int] = set()  # iterations of proposals in flight at a kill
    for kill in plan:
        start = read(db)
        if start is None or start.campaign is None:
            if db.exists():  # killed before the campaign was committed: nothing to resume, the CLI says so, the user runs again
                refused = evolve(*resume_args, cwd=tmp_path, env=env)
                assert refused.returncode == 2 and "no campaign" in refused.stderr, refused.stderr
            proc = launch(run_args, cwd=tmp_path, env=env)
        else:
            proc = launch(resume_args, cwd=tmp_path, env=env)
        started_at = max(start.iterations(), default=0) if start else 0
        started_done = done(db)
        wait_until(kill.moment, partial(kill.ready, proc, started_done), proc=proc)
        time.sleep(kill.delay_s)
        before = read(db)
        assert proc.alive(), f"the campaign ended before the kill at {kill.moment}"
        os.killpg(proc.pid, signal.SIGKILL)  # the campaign's whole process group
        killed_at = time.monotonic() - proc.started
        gone = proc.wait_all_gone(timeout=5)  # workers and sandboxes die with the controller (death signals)
        left = proc.kill_everything()
        assert gone and left == [], f"still running 5 s after the kill at {kill.moment}: {left}"
        after = read(db)
        kills.append({
            "moment": kill.moment, "delay_s": round(kill.delay_s, 3), "at_s": round(killed_at, 2), "left_running": len(left),
            "store": describe(after, proc.pid),
        })
        for snap in (before, after):
            if snap is not None:
                check_consistent(snap)
                if history:
                    check_kept(history[-1], snap)
                history.append(snap)
        if after is not None:
            new = after.gaps() - lost
            assert len(new) < IN_FLIGHT, f"the kill at {kill.moment} lost {sorted(new)}, more than can be in flight"
            assert all(g > started_at for g in new), "only proposals of the killed process can be lost"
            lost |= new
    print("\nkills:", json.dumps(kills, indent=1))
    assert kills[1]["store"] == "no campaign", "the second kill came after the initial evaluation"
    assert kills[2]["store"] != "no campaign" and history[-1].campaign is not None

    status = json.loads(evolve("status", "--db", str(db), "--json", cwd=tmp_path, env=env).stdout)
    assert [s["status"] for s in status] == ["interrupted"]
    final = launch(resume_args, cwd=tmp_path, env=env)
    assert final.wait_all_gone(timeout=180), "the last resume did not finish"
    assert final.launcher.returncode == 0
    end = read(db)
    assert end is not None and end.campaign is not None
    check_consistent(end)
    check_kept(history[-1], end)
    assert end.gaps() == set(), f"a resumed run proposes again what a kill cut off (lost on the way: {sorted(lost)})"
    assert (end.campaign["iterations_done"], end.campaign["status"]) == (TARGET, "finished")
    assert len(end.programs) == TARGET + 1
    # the killed runs' scratch directories (work dirs, evaluations in flight) were swept by the runs after them
    assert sorted(p.name for p in tmp_path.glob("evolve-*")) == [], "scratch directories of killed runs are left"


SLEEPY_YAML = QUADRATIC_YAML.replace("timeout_s: 10", "timeout_s: 60")
# The trusted evaluator sleeps before it runs the candidate: no sandbox exists yet, so nothing but the
# worker's own deadline or its death signal (armed against the controller) can end it.
SLEEPY_EVALUATOR = QUADRATIC_EVALUATOR.replace("def evaluate(candidate):\n", "def evaluate(candidate):\n    __import__('time').sleep(50)\n")


@pytest.mark.slow
def test_no_process_of_a_campaign_outlives_kill_9(tmp_path: Path) -> None:
    folder = write_problem(tmp_path / "sleepy", yaml=SLEEPY_YAML, evaluator=SLEEPY_EVALUATOR)
    proc = launch(["run", str(folder), "--model", "mutator", "--iterations", "1", "--db", str(tmp_path / "o.db"), "-q"],
                  cwd=tmp_path, env={**os.environ, "TMPDIR": str(tmp_path)})
    try:
        wait_until("the initial program's evaluation", lambda: evaluating(proc), proc=proc)
        time.sleep(0.5)  # the worker is in evaluate(), asleep
        os.killpg(proc.pid, signal.SIGKILL)
        gone = proc.wait_all_gone(timeout=3)
        assert gone, f"still running 3 s after the controller's kill -9: {proc.survivors()}"
    finally:
        proc.kill_everything()
