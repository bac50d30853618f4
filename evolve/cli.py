"""The ``evolve`` command line: run, resume, status, best, problems.

Bad input (unknown problem, malformed problem.yaml, unreadable database) gives
a one-line error that says what to do and exit code 2, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from evolve.campaign import Campaign, owner_alive
from evolve.campaign import Progress as CampaignProgress
from evolve.config import parse_campaign_config
from evolve.errors import EvolveError, StoreError
from evolve.problem import Limits, builtin_problem_names, resolve_problem
from evolve.sandbox import BACKENDS, DESCRIPTIONS
from evolve.store import CampaignRow, Store
from evolve.values import CampaignStatus

__all__ = ["main"]

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
_DB_HELP = "SQLite file path or SQLAlchemy URL of the store"
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _fail(message: str) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    sys.exit(EXIT_USAGE)


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.6g}"


def _open_store(db: str, *, must_exist: bool = False) -> Store:
    if must_exist and "://" not in db and not Path(db).expanduser().exists():
        _fail(f"no database at {db}: start a campaign with 'evolve run PROBLEM --db {db}' or pass --db")
    return Store.open(db)


def _pick_campaign(store: Store, campaign_id: str | None, *, resumable: bool = False) -> CampaignRow:
    if campaign_id:
        return store.get_campaign(campaign_id)
    rows = store.list_campaigns()
    if resumable:
        rows = [r for r in rows if r.status is not CampaignStatus.FAILED]
    if not rows:
        _fail(f"no campaign in {store.url}: start one with 'evolve run PROBLEM'")
    return rows[-1]


class _Display:
    """Live progress: a rich bar on a terminal, a line every ~10% otherwise."""

    def __init__(self, target: int, done: int, *, quiet: bool) -> None:
        self._quiet = quiet
        self._live = err.is_terminal and not quiet
        self._step = max(1, target // 10)
        self._printed = done
        self._bar = Progress(
            TextColumn("[bold]evolving"), BarColumn(), MofNCompleteColumn(),
            TextColumn("best {task.fields[best]} · valid {task.fields[valid]} · cells {task.fields[cells]} · tokens {task.fields[tokens]}"),
            TimeElapsedColumn(), console=err, transient=False,
        )
        self._task = self._bar.add_task("run", total=target, completed=done, best="—", valid="—", cells=0, tokens=0)

    def __enter__(self) -> _Display:
        if self._live:
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live:
            self._bar.stop()

    def update(self, p: CampaignProgress) -> None:
        valid = f"{100 * p.valid_done / p.iterations_done:.0f}%" if p.iterations_done else "—"
        tokens = p.prompt_tokens + p.completion_tokens
        if self._live:
            self._bar.update(self._task, completed=p.iterations_done, total=p.iterations_target,
                             best=_fmt(p.best_score), valid=valid, cells=p.cells_filled, tokens=tokens)
        elif not self._quiet and p.iterations_done // self._step > self._printed // self._step:
            self._printed = p.iterations_done
            err.print(f"iteration {p.iterations_done}/{p.iterations_target} · best {_fmt(p.best_score)} · valid {valid} "
                      f"· cells {p.cells_filled} · tokens {tokens}", highlight=False)


def _run_async(make: Callable[[asyncio.Event], Coroutine[Any, Any, CampaignStatus]]) -> CampaignStatus:
    async def runner() -> CampaignStatus:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            return await make(stop)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    return asyncio.run(runner())


def _drive(campaign: Campaign, stop: asyncio.Event, *, quiet: bool) -> Coroutine[Any, Any, CampaignStatus]:
    async def go() -> CampaignStatus:
        p = campaign.progress()
        with _Display(p.iterations_target, p.iterations_done, quiet=quiet) as display:
            return await campaign.run(stop=stop, on_progress=display.update)

    return go()


def _report(store: Store, campaign: Campaign, status: CampaignStatus, db: str) -> None:
    row = store.get_campaign(campaign.id)
    best = store.best_program(campaign.id)
    counts = store.status_counts(campaign.id)
    summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    out.print(f"campaign [bold]{campaign.id}[/] ({campaign.problem.name}): {status.value}, "
              f"{row.iterations_done}/{row.iterations_target} iterations ({summary})", highlight=False)
    if best is not None:
        out.print(f"best {campaign.problem.config.objective.metric} = [bold]{_fmt(best.score)}[/] "
                  f"(program {best.id}, iteration {best.iteration}); see it with: evolve best --db {db}", highlight=False)
    if status is CampaignStatus.STOPPED:
        out.print(f"continue with: evolve resume --db {db} --campaign {campaign.id}", highlight=False)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="evolve")
def cli() -> None:
    """LLM-driven evolutionary algorithm discovery."""


@cli.command()
@click.argument("problem")
@click.option("--model", "model", default="mutator", show_default=True, help="'mutator' or a litellm model string, e.g. openai/gpt-4o-mini")
@click.option("--api-base", default=None, help="base URL of an OpenAI-compatible endpoint")
@click.option("--mode", type=click.Choice(["diff", "rewrite"]), default="diff", show_default=True)
@click.option("--iterations", "-n", type=int, default=100, show_default=True, help="total iterations (proposals)")
@click.option("--db", default="evolve.db", show_default=True, help=_DB_HELP)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--islands", type=int, default=4, show_default=True)
@click.option("--max-wall-s", type=float, default=None, help="stop after this many seconds")
@click.option("--eval-concurrency", type=int, default=None, help="parallel evaluations (default: CPU count)")
@click.option("--llm-concurrency", type=int, default=4, show_default=True, help="model calls in flight")
@click.option("--sandbox", type=click.Choice(BACKENDS), default="auto", show_default=True,
              help="where candidates run: auto = bwrap where it works, else docker; never process unless asked")
@click.option("--quiet", "-q", is_flag=True, help="no progress display")
def run(problem: str, model: str, api_base: str | None, mode: str, iterations: int, db: str, seed: int, islands: int,
        max_wall_s: float | None, eval_concurrency: int | None, llm_concurrency: int, sandbox: str, quiet: bool) -> None:
    """Start a campaign on PROBLEM (a built-in name or a problem folder)."""
    prob = resolve_problem(problem)
    settings: dict[str, Any] = {
        "models": [{"name": model, "api_base": api_base, "mode": mode}],
        "iterations": iterations, "seed": seed, "islands": islands, "max_wall_s": max_wall_s,
        "llm_concurrency": llm_concurrency, "sandbox": sandbox,
    }
    if eval_concurrency is not None:
        settings["eval_concurrency"] = eval_concurrency
    config = parse_campaign_config(settings, source="options")
    store = Store.open(db)
    workdir = Path(tempfile.mkdtemp(prefix="evolve-"))
    try:
        campaign = asyncio.run(Campaign.create(store, prob, config, workdir=workdir))
        initial = store.best_program(campaign.id)
        err.print(f"campaign {campaign.id}: {prob.name}, model {model}, {islands} islands, "
                  f"initial {prob.config.objective.metric} = {_fmt(initial.score if initial else None)}", highlight=False)
        backend = campaign.config.sandbox
        err.print(f"sandbox: {backend} ({DESCRIPTIONS[backend]}); limits: {_limits_text(prob.config.limits)}", highlight=False)
        status = _run_async(lambda stop: _drive(campaign, stop, quiet=quiet))
        _report(store, campaign, status, db)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if status is CampaignStatus.STOPPED and max_wall_s is None:
        sys.exit(EXIT_INTERRUPTED)


@cli.command()
@click.option("--db", default="evolve.db", show_default=True, help=_DB_HELP)
@click.option("--campaign", "campaign_id", default=None, help="campaign id (default: the most recent)")
@click.option("--iterations", "-n", type=int, default=None, help="new total iterations (default: the original target)")
@click.option("--quiet", "-q", is_flag=True)
def resume(db: str, campaign_id: str | None, iterations: int | None, quiet: bool) -> None:
    """Continue a stopped, interrupted or finished campaign from the store."""
    store = _open_store(db, must_exist=True)
    store.mark_interrupted(owner_alive)
    row = _pick_campaign(store, campaign_id, resumable=True)
    if iterations is not None and iterations < row.iterations_done:
        _fail(f"--iterations {iterations} is below the {row.iterations_done} iterations already done")
    workdir = Path(tempfile.mkdtemp(prefix="evolve-"))
    try:
        campaign = Campaign.resume(store, row.id, workdir=workdir, iterations=iterations)
        err.print(f"resuming campaign {campaign.id} ({campaign.problem.name}) at {row.iterations_done}/{campaign.target}",
                  highlight=False)
        status = _run_async(lambda stop: _drive(campaign, stop, quiet=quiet))
        _report(store, campaign, status, db)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if status is CampaignStatus.STOPPED:
        sys.exit(EXIT_INTERRUPTED)


def _limits_text(limits: Limits) -> str:
    return (f"{limits.timeout_s:g} s wall, {limits.cpu_seconds()} s CPU, {limits.memory_mb} MB, "
            f"{limits.processes} processes, {limits.output_bytes} output bytes")


def _campaign_json(store: Store, row: CampaignRow) -> dict[str, Any]:
    best = store.get_program(row.best_program_id) if row.best_program_id else None
    counts = store.status_counts(row.id)
    limits = store.load_problem(row.problem_id).config.limits
    return {
        "id": row.id, "problem": row.problem_name, "status": row.status.value,
        "iterations_done": row.iterations_done, "iterations_target": row.iterations_target,
        "programs": sum(counts.values()), "valid_programs": row.valid_done + 1,
        "statuses": counts, "best_score": best.score if best else None, "best_program_id": row.best_program_id,
        "cells_filled": store.filled_cells(row.id), "prompt_tokens": row.prompt_tokens,
        "completion_tokens": row.completion_tokens, "cost_usd": row.cost_usd,
        "created_at": row.created_at, "updated_at": row.updated_at, "error": row.error,
        "sandbox": row.config.get("sandbox"), "limits": {**limits.model_dump(mode="json"), "cpu_s": limits.cpu_seconds()},
    }


@cli.command()
@click.option("--db", default="evolve.db", show_default=True, help=_DB_HELP)
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def status(db: str, as_json: bool) -> None:
    """Show every campaign in the store."""
    store = _open_store(db, must_exist=True)
    store.mark_interrupted(owner_alive)
    rows = [_campaign_json(store, r) for r in store.list_campaigns()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        out.print(f"no campaigns in {db}")
        return
    table = Table(title=f"campaigns in {db}")
    for col in ("id", "problem", "status", "iterations", "programs", "valid", "best score", "cells", "tokens", "cost $", "sandbox"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["id"], r["problem"], r["status"], f"{r['iterations_done']}/{r['iterations_target']}",
                      str(r["programs"]), str(r["valid_programs"]), _fmt(r["best_score"]), str(r["cells_filled"]),
                      str(r["prompt_tokens"] + r["completion_tokens"]), f"{r['cost_usd']:.4f}", str(r["sandbox"]))
    out.print(table)
    for r in rows:
        out.print(f"{r['id']} limits: {_limits_text(Limits.model_validate(r['limits']))}", highlight=False)


@cli.command()
@click.option("--db", default="evolve.db", show_default=True, help=_DB_HELP)
@click.option("--campaign", "campaign_id", default=None, help="campaign id (default: the most recent)")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.option("--out", "out_file", type=click.Path(dir_okay=False, writable=True), default=None, help="write the best program's code here")
def best(db: str, campaign_id: str | None, as_json: bool, out_file: str | None) -> None:
    """Show the best program of a campaign."""
    store = _open_store(db, must_exist=True)
    row = _pick_campaign(store, campaign_id)
    program = store.best_program(row.id)
    if program is None:
        _fail(f"campaign {row.id} has no valid program yet")
    problem = store.load_problem(row.problem_id)
    if out_file:
        Path(out_file).write_text(program.code)
    data = {
        "campaign_id": row.id, "problem": row.problem_name, "program_id": program.id,
        "metric": problem.config.objective.metric, "direction": problem.config.objective.direction.value,
        "score": program.score, "metrics": program.metrics, "features": program.features,
        "iteration": program.iteration, "generation": program.generation, "island": program.island,
        "model": program.model, "code": program.code,
    }
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    out.print(f"best of campaign {row.id} ({row.problem_name}): {data['metric']} = [bold]{_fmt(program.score)}[/] "
              f"(program {program.id}, iteration {program.iteration}, generation {program.generation})", highlight=False)
    out.print("metrics: " + ", ".join(f"{k}={_fmt(v)}" for k, v in program.metrics.items()), highlight=False)
    if out_file:
        out.print(f"code written to {out_file}")
    else:
        click.echo(program.code)


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
            "summary": cfg.description.strip().splitlines()[0],
        })
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="built-in problems")
    for col in ("name", "objective", "known best", "summary"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], f"{r['direction']} {r['metric']}", _fmt(r["known_best"]), r["summary"])
    out.print(table)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors become one line and exit code 2."""
    try:
        cli.main(args=argv, prog_name="evolve", standalone_mode=True)
    except StoreError as exc:
        _fail(f"{exc}")
    except EvolveError as exc:
        _fail(str(exc))
