"""Whether a problem is ready for a campaign: what ``evolve check`` prints and what the REST API checks before it accepts one.

Loading a problem already checks its config, the markers of its initial
program and that its evaluator defines every stage's function
(``evolve.problem``). What only running can tell is checked here: the initial
program evaluates OK in the sandbox through the whole cascade, with the
controller's own validation (the objective metric, every feature and Pareto
metric the config names, finite numbers), and the held-out stage, when one is
declared, scores it too. Each finding says
what to fix and in which file.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evolve.evaluators.runner import Evaluator
from evolve.problem import Problem
from evolve.values import EvalResult

__all__ = ["Finding", "ProblemCheck", "check_problem", "initial_failure"]

_FIELD_FILES = {"config": "problem.yaml", "initial_program": "initial_program.py", "evaluator": "evaluator.py"}


@dataclass(frozen=True)
class Finding:
    """One thing to fix: the part at fault (``config``, ``initial_program`` or ``evaluator``) and what to do."""

    part: str
    message: str

    @property
    def file(self) -> str:
        return _FIELD_FILES[self.part]


@dataclass(frozen=True)
class ProblemCheck:
    """The verdict on a problem: its initial program's results and what to fix (nothing: ready)."""

    problem: Problem
    backend: str
    search: EvalResult
    held_out: EvalResult | None
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_json(self) -> dict[str, object]:
        return {
            "problem": self.problem.name, "ok": self.ok, "sandbox": self.backend,
            "stages": [s.name for s in self.problem.config.pipeline()],
            "initial_program": self.search.to_json(),
            "held_out": self.held_out.to_json() if self.held_out is not None else None,
            "findings": [{"file": f.file, "part": f.part, "message": f.message} for f in self.findings],
        }


def _blamed(result: EvalResult) -> str:
    """The part a failed evaluation points at: the evaluator when its own code failed, else the initial program."""
    error = result.artifacts.get("error", "")
    return "evaluator" if error.startswith("evaluator") or result.status.is_ok else "initial_program"


def initial_failure(problem: Problem, result: EvalResult, *, what: str = "the initial program") -> Finding | None:
    """Why ``result`` (of the initial program) cannot start a campaign, or None when it can."""
    metric = problem.config.objective.metric
    if result.objective(metric) is not None:
        return None
    why = result.artifacts.get("error") or f"no finite '{metric}' metric came back (evaluate() must return it in 'metrics')"
    return Finding(_blamed(result), f"{what} does not evaluate: {result.status.value}: {why}")


async def check_problem(problem: Problem, *, workdir: Path, sandbox: str = "auto", executor: str = "cold",
                        slots: contextlib.AbstractAsyncContextManager[Any] | None = None,
                        confine_evaluator: bool = False) -> ProblemCheck:
    """Evaluate the initial program through the cascade (and the held-out stage, if declared) and list what to fix.

    ``slots`` is held while evaluating (a server's cap on concurrent evaluations); ``confine_evaluator``
    runs the evaluator in a sandbox of its own (a submitted problem's).

    Raises:
        SandboxError: when the sandbox cannot run here or broke (not the problem's fault).
    """
    evaluator = Evaluator(problem, problem_dir=workdir / "problem", sandbox=sandbox, executor=executor,
                          confine_evaluator=confine_evaluator)
    try:
        async with slots or contextlib.nullcontext():
            search = await evaluator.evaluate(problem.initial_program)
            held_out = None
            if problem.config.held_out_stage() is not None and search.status.is_ok:
                held_out = await evaluator.evaluate(problem.initial_program, held_out=True)
    finally:
        await evaluator.close()
    findings = [f for f in [initial_failure(problem, search)] if f is not None]
    if held_out is not None and (failed := initial_failure(problem, held_out, what="the held-out stage")) is not None:
        findings.append(Finding("evaluator", f"{failed.message} (the held_out stage's function in evaluator.py)"))
    return ProblemCheck(problem=problem, backend=evaluator.backend, search=search, held_out=held_out, findings=findings)
