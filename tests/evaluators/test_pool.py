"""The warm pool as the executor seam sees it: the same verdicts as the cold path, slots that heal, workers that stay bounded."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from evolve.evaluators.executor import ColdExecutor, Executor
from evolve.evaluators.pool import WarmPool
from evolve.evaluators.runner import Evaluator
from evolve.evaluators.warm import MEMORY_BOUND
from evolve.problem import load_problem
from evolve.values import EvalResult, EvalStatus
from tests.conftest import QUADRATIC_EVALUATOR, QUADRATIC_YAML, write_problem

YAML = QUADRATIC_YAML.replace("timeout_s: 10", "timeout_s: 4")
# an evaluation process may address twice the candidate's memory: room for the ballast its worker holds
BIG_YAML = YAML.replace("memory_mb: 512", "memory_mb: 1024")

CANDIDATES = {
    "ok": "# EVOLVE-BLOCK-START\ndef solve():\n    return 2.5\n# EVOLVE-BLOCK-END\n",
    "invalid": "# EVOLVE-BLOCK-START\ndef solve():\n    return 'not a number'\n# EVOLVE-BLOCK-END\n",
    "crash": "# EVOLVE-BLOCK-START\ndef solve():\n    raise ValueError('no')\n# EVOLVE-BLOCK-END\n",
    "exit": "# EVOLVE-BLOCK-START\nimport os\ndef solve():\n    os._exit(4)\n# EVOLVE-BLOCK-END\n",
    "syntax": "# EVOLVE-BLOCK-START\ndef solve(:\n# EVOLVE-BLOCK-END\n",
}


def _evaluate_all(evaluator: Evaluator, codes: dict[str, str]) -> dict[str, EvalResult]:
    async def go() -> dict[str, EvalResult]:
        try:
            return {name: await evaluator.evaluate(code) for name, code in codes.items()}
        finally:
            await evaluator.close()

    return asyncio.run(go())


@pytest.mark.parametrize("executor", ["warm", "cold"])
def test_both_executors_fit_the_seam(executor: str, tmp_path: Path) -> None:
    problem = load_problem(write_problem(tmp_path / "q", yaml=YAML))
    evaluator = Evaluator(problem, problem_dir=tmp_path / "p", sandbox="bwrap", executor=executor, slots=2)
    assert isinstance(evaluator.executor, Executor)
    assert isinstance(evaluator.executor, WarmPool if executor == "warm" else ColdExecutor)
    assert evaluator.health().capacity == 2


def test_the_warm_pool_gives_the_cold_paths_verdicts(tmp_path: Path) -> None:
    """Same candidates, same statuses and metrics on both executors: the seam changes where, never what."""
    problem = load_problem(write_problem(tmp_path / "q", yaml=YAML))
    warm = _evaluate_all(Evaluator(problem, problem_dir=tmp_path / "w", sandbox="bwrap", executor="warm"), CANDIDATES)
    cold = _evaluate_all(Evaluator(problem, problem_dir=tmp_path / "c", sandbox="bwrap", executor="cold"), CANDIDATES)
    assert {n: r.status for n, r in warm.items()} == {n: r.status for n, r in cold.items()}
    assert {n: r.metrics for n, r in warm.items()} == {n: r.metrics for n, r in cold.items()}
    assert warm["ok"].status is EvalStatus.OK and warm["crash"].status is EvalStatus.ERROR
    assert "no" in warm["crash"].artifacts.get("error", "") + warm["crash"].artifacts.get("program_traceback", "")


BALLAST_EVALUATOR = f"""\
BALLAST = b"x" * {MEMORY_BOUND + (64 << 20)}  # resident: the worker that imported this is over its bound

{QUADRATIC_EVALUATOR}"""


def test_a_worker_over_its_memory_bound_is_replaced_after_its_evaluation(tmp_path: Path) -> None:
    problem = load_problem(write_problem(tmp_path / "q", yaml=BIG_YAML, evaluator=BALLAST_EVALUATOR))
    evaluator = Evaluator(problem, problem_dir=tmp_path / "p", sandbox="bwrap", executor="warm")
    pool = evaluator.executor
    assert isinstance(pool, WarmPool)

    async def go() -> tuple[list[EvalResult], list[list[int]], int]:
        try:
            results, pids = [], []
            for _ in range(3):
                results.append(await evaluator.evaluate(CANDIDATES["ok"]))
                await asyncio.sleep(0.3)  # the worker checks its size after answering
                pids.append(pool.worker_pids())
            return results, pids, pool.restarts
        finally:
            await evaluator.close()

    results, pids, restarts = asyncio.run(go())
    assert all(r.status is EvalStatus.OK for r in results), [r.artifacts for r in results]
    assert pids == [[], [], []], "a worker over its bound exited after each evaluation"
    assert restarts == 2


def test_a_pool_survives_a_change_of_event_loop(tmp_path: Path) -> None:
    """``Campaign.create`` and ``Campaign.run`` run under separate ``asyncio.run`` calls: the workers stay warm across."""
    problem = load_problem(write_problem(tmp_path / "q", yaml=YAML))
    evaluator = Evaluator(problem, problem_dir=tmp_path / "p", sandbox="bwrap", executor="warm")
    pool = evaluator.executor
    assert isinstance(pool, WarmPool)
    first = asyncio.run(evaluator.evaluate(CANDIDATES["ok"]))
    workers = pool.worker_pids()
    second = asyncio.run(evaluator.evaluate(CANDIDATES["ok"]))
    assert pool.worker_pids() == workers and len(workers) == 1
    asyncio.run(evaluator.close())
    assert first.status is second.status is EvalStatus.OK
    assert pool.worker_pids() == []
