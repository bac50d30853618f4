"""Problems: ``evolve problems``, ``eval``, ``check`` and ``new``."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from evolve.checking import check_problem
from evolve.cli.common import cli, err, fail, fmt, out
from evolve.evaluators.runner import Evaluator
from evolve.problem import builtin_problem_names, resolve_problem
from evolve.sandbox import BACKENDS
from evolve.scaffold import new_problem
from evolve.scratch import scratch_dir
from evolve.values import EvalResult

__all__ = ["check", "eval_command", "new", "problems"]


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def problems(as_json: bool) -> None:
    """List the built-in problems."""
    rows: list[dict[str, Any]] = []
    for name in builtin_problem_names():
        cfg = resolve_problem(name).config
        rows.append({
            "name": name, "metric": cfg.objective.metric, "direction": cfg.objective.direction.value,
            "known_best": cfg.known_best.value if cfg.known_best else None,
            "known_best_source": cfg.known_best.source if cfg.known_best else None,
            "stages": [s.name for s in cfg.pipeline()], "held_out": cfg.held_out is not None,
            "objectives": [o.metric for o in cfg.pareto_objectives()],
            "summary": cfg.description.strip().splitlines()[0],
        })
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="built-in problems (details: problems/NAME/README.md)")
    table.add_column("name", no_wrap=True)
    for col in ("objective", "known best", "stages", "held-out"):
        table.add_column(col)
    for r in rows:
        best = "—" if r["known_best"] is None else f"{r['known_best']:.10g}"
        table.add_row(r["name"], f"{r['direction']} {r['metric']}", best, " → ".join(r["stages"]), "yes" if r["held_out"] else "no")
    out.print(table)


def _read_candidate(path: str) -> str:
    try:
        return Path(path).expanduser().read_text(encoding="utf-8")
    except FileNotFoundError:
        fail(f"no candidate program at {path}: give the path of a Python file (e.g. a copy of the problem's initial_program.py)")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read the candidate program {path}: {exc}")


def _print_result(title: str, result: EvalResult, metric: str) -> None:
    score = result.objective(metric)
    colour = "green" if result.status.is_ok else "red"
    out.print(f"{escape(title)}: [bold {colour}]{result.status.value}[/], {metric} = [bold]{fmt(score)}[/] "
              f"(stage reached: {result.stage or '—'}, {result.duration_s:.2f} s)", highlight=False)
    for what, values in (("metrics", result.metrics), ("features", result.features)):
        if values:
            out.print(f"  {what}: " + ", ".join(f"{k}={fmt(v)}" for k, v in values.items()), highlight=False)
    for key, text in result.artifacts.items():
        lines = text.rstrip().splitlines() or [""]
        out.print(f"  {escape(key)}: {escape(lines[0])}", highlight=False)
        for line in lines[1:]:
            out.print(f"    {escape(line)}", highlight=False)


_SANDBOX_HELP = "where the candidate runs (as in 'evolve run')  [default: auto]"
_EXECUTOR_HELP = "warm (as a campaign runs it, the default) or cold (a fresh evaluator process)"
_CONFINE_HELP = "run evaluator.py in a sandbox of its own, as the server runs a submitted problem's"


@cli.command("eval")
@click.argument("problem")
@click.argument("candidate", type=click.Path(dir_okay=False))
@click.option("--held-out", is_flag=True, help="score on the problem's held-out instances instead of the search's")
@click.option("--sandbox", type=click.Choice(BACKENDS), default="auto", help=_SANDBOX_HELP)
@click.option("--executor", type=click.Choice(["warm", "cold"]), default="warm", help=_EXECUTOR_HELP)
@click.option("--sandbox-evaluator", "confine", is_flag=True, help=_CONFINE_HELP)
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def eval_command(problem: str, candidate: str, held_out: bool, sandbox: str, executor: str, confine: bool,
                 as_json: bool) -> None:
    """Score one program CANDIDATE on PROBLEM exactly as a campaign would (sandbox, cascade, validation).

    Exits 0 when the program evaluates OK, 1 when it does not (its status and error are printed), 2 on bad input.
    """
    prob = resolve_problem(problem)
    code = _read_candidate(candidate)
    if held_out and prob.config.held_out_stage() is None:
        fail(f"problem '{prob.name}' declares no held_out stage in problem.yaml: drop --held-out or add one")

    async def go(workdir: Path) -> tuple[EvalResult, str]:
        evaluator = Evaluator(prob, problem_dir=workdir / "problem", sandbox=sandbox, executor=executor,
                              confine_evaluator=confine)
        try:
            return await evaluator.evaluate(code, held_out=held_out), evaluator.backend
        finally:
            await evaluator.close()

    with scratch_dir("eval") as workdir:
        result, backend = asyncio.run(go(workdir))
    metric = prob.config.objective.metric
    if as_json:
        click.echo(json.dumps({"problem": prob.name, "candidate": candidate, "sandbox": backend, "held_out": held_out,
                               "metric": metric, "score": result.objective(metric), **result.to_json()}, indent=2))
    else:
        _print_result(f"{candidate} on {prob.name}{' (held-out instances)' if held_out else ''} in the {backend} sandbox",
                      result, metric)
    sys.exit(0 if result.status.is_ok else 1)


@cli.command()
@click.argument("problem")
@click.option("--sandbox", type=click.Choice(BACKENDS), default="auto", help=_SANDBOX_HELP)
@click.option("--sandbox-evaluator", "confine", is_flag=True, help=_CONFINE_HELP)
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def check(problem: str, sandbox: str, confine: bool, as_json: bool) -> None:
    """Check PROBLEM as the REST API does before accepting it: its files, and its initial program evaluated in the sandbox.

    Exits 0 when a campaign can start from it, 1 with what to fix when not, 2 when a file cannot be read or parsed.
    """
    prob = resolve_problem(problem)  # the config, the markers and the evaluator's functions: a one-line error if wrong
    with scratch_dir("check") as workdir:
        checked = asyncio.run(check_problem(prob, workdir=workdir, sandbox=sandbox, confine_evaluator=confine))
    if as_json:
        click.echo(json.dumps(checked.to_json(), indent=2))
        sys.exit(0 if checked.ok else 1)
    metric = prob.config.objective.metric
    stages = " → ".join(s.name for s in prob.config.pipeline())
    out.print(f"problem {prob.name} ({prob.source}): config, markers and evaluator functions are valid; "
              f"stages {stages}", highlight=False)
    _print_result("initial program", checked.search, metric)
    if checked.held_out is not None:
        _print_result("initial program on the held-out instances", checked.held_out, metric)
    for finding in checked.findings:
        err.print(f"[bold red]fix {finding.file}:[/] {escape(finding.message)}", highlight=False)
    if checked.ok:
        out.print(f"ready: evolve run {problem}", highlight=False)
    sys.exit(0 if checked.ok else 1)


@cli.command()
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--like", default=None, metavar="PROBLEM", help="copy this built-in problem instead of the scaffold")
def new(folder: str, like: str | None) -> None:
    """Create a problem folder FOLDER to edit: problem.yaml (every field explained), an initial program, an evaluator, a README."""
    made = new_problem(Path(folder), like=like)
    what = f"a copy of {like}" if like else "the scaffold"
    out.print(f"created {made} from {what}: edit its files, then check it with: evolve check {made}", highlight=False)
