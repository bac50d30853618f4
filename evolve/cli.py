"""The ``evolve`` command line: run, resume, status, best, pareto, problems, serve.

Bad input (unknown problem, malformed problem.yaml, unreadable database) gives
a one-line error that says what to do and exit code 2, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, NoReturn

import click
import yaml
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from evolve.bandit import model_report
from evolve.campaign import Campaign
from evolve.campaign import Progress as CampaignProgress
from evolve.catalog import CATALOG, DEFAULT_MODEL, model_file, model_state
from evolve.config import EMBEDDED_MODEL, CampaignConfig, parse_campaign_config
from evolve.errors import EvolveError, StoreError
from evolve.evaluators.executor import EXECUTORS
from evolve.grids import grid_warnings
from evolve.llm.embedded import EmbeddedTransport, describe_embedded
from evolve.problem import Limits, builtin_problem_names, resolve_problem
from evolve.reports import held_out_score
from evolve.sandbox import BACKENDS, DESCRIPTIONS
from evolve.scratch import owned_tempdir
from evolve.secrets import install_log_redaction, redact
from evolve.store import CampaignRow, Store
from evolve.values import CampaignStatus

__all__ = ["main"]

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
_DB_HELP = "SQLite file path or SQLAlchemy URL of the store"
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _fail(message: str) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(redact(message))}", highlight=False, soft_wrap=True)
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
            TextColumn("best {task.fields[best]} · valid {task.fields[valid]} · cells {task.fields[cells]} · tokens {task.fields[tokens]}"
                       " · {task.fields[cost]}"),
            TimeElapsedColumn(), console=err, transient=False,
        )
        self._task = self._bar.add_task("run", total=target, completed=done, best="—", valid="—", cells=0, tokens=0, cost="$0")

    def __enter__(self) -> _Display:
        if self._live:
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live:
            self._bar.stop()

    def update(self, p: CampaignProgress) -> None:
        valid = f"{100 * p.valid_done / p.iterations_done:.0f}%" if p.iterations_done else "—"
        tokens, cost = p.tokens, f"${p.cost_usd:.4f}"
        if self._live:
            self._bar.update(self._task, completed=p.iterations_done, total=p.iterations_target,
                             best=_fmt(p.best_score), valid=valid, cells=p.cells_filled, tokens=tokens, cost=cost)
        elif not self._quiet and p.iterations_done // self._step > self._printed // self._step:
            self._printed = p.iterations_done
            err.print(f"iteration {p.iterations_done}/{p.iterations_target} · best {_fmt(p.best_score)} · valid {valid} "
                      f"· cells {p.cells_filled} · tokens {tokens} · {cost}", highlight=False)


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
    applied: dict[str, dict[str, int]] = {}
    for (name, _), counts in store.applied_counts(campaign.id).items():
        for how, n in counts.items():
            applied.setdefault(name, {})[how] = applied.get(name, {}).get(how, 0) + n
    for spec, model in zip(campaign.ensemble.specs, campaign.ensemble.models, strict=True):
        if isinstance(model.transport, EmbeddedTransport) and model.transport.speed.answers:
            err.print(f"model {spec.name} here: {model.transport.speed.summary()}", highlight=False)
        if applied.get(spec.name):
            err.print(f"model {spec.name}'s answers: "
                      + ", ".join(f"{k} {v}" for k, v in sorted(applied.pop(spec.name).items())), highlight=False)
    if best is not None:
        out.print(f"best {campaign.problem.config.objective.metric} = [bold]{_fmt(best.score)}[/] "
                  f"(program {best.id}, iteration {best.iteration}); see it with: evolve best --db {db}", highlight=False)
    if status is CampaignStatus.STOPPED:
        out.print(f"continue with: evolve resume --db {db} --campaign {campaign.id}", highlight=False)
    if status is CampaignStatus.BUDGET_SPENT:
        out.print(f"{campaign.stop_reason}; continue with a larger budget: evolve resume --db {db} --campaign {campaign.id} "
                  "--max-cost-usd N or --max-tokens N", highlight=False)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="evolve")
def cli() -> None:
    """LLM-driven evolutionary algorithm discovery."""


def _load_config_file(path: str | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        _fail(f"cannot read the campaign config {path}: {exc}")
    if not isinstance(data, dict):
        _fail(f"the campaign config {path} must be a mapping of settings (models, iterations, ...), not {type(data).__name__}")
    return data


def _model_settings(models: tuple[str, ...], api_base: str | None, api_key_env: str | None, mode: str | None,
                    from_file: list[Any] | None) -> list[Any]:
    """The ensemble: --model flags (equal weights) override the config file, which overrides EVOLVE_MODEL, then the embedded model."""
    names = list(models)
    if not names and from_file is None and os.environ.get("EVOLVE_MODEL"):
        names = [os.environ["EVOLVE_MODEL"]]
    if not names:
        if from_file is not None:
            return from_file
        names = [EMBEDDED_MODEL]
    base = api_base or (os.environ.get("EVOLVE_API_BASE") if not models else None)
    extra = {k: v for k, v in {"api_base": base, "api_key_env": api_key_env, "mode": mode}.items() if v is not None}
    return [{"name": name, **extra} for name in names]


def _model_notice(campaign: Campaign) -> None:
    err.print("models: " + ", ".join(campaign.ensemble.describe()), highlight=False)
    cap = campaign.ensemble.in_flight_cap()
    if cap < campaign.config.llm_concurrency:
        err.print(f"model calls in flight: at most {cap}, below --llm-concurrency {campaign.config.llm_concurrency}, "
                  "because of the models' own max_in_flight (an embedded model answers one call at a time)", highlight=False)
    embedded = [s for s in campaign.config.models if s.in_process]
    for spec in embedded:
        err.print(f"model {spec.name} is {describe_embedded(spec.name)} ({spec.mode}, {spec.prompt_style} prompts); "
                  "its speed here is reported at the end", highlight=False)
    if embedded:
        err.print("for better programs choose a stronger model: --model openai/gpt-4o-mini (with OPENAI_API_KEY set), or "
                  "--api-base http://127.0.0.1:8000/v1 --model hosted_vllm/NAME for a local server", highlight=False)


@cli.command()
@click.argument("problem")
@click.option("--model", "models", multiple=True,
              help=f"repeat for an ensemble: '{EMBEDDED_MODEL}' (embedded, the default; see evolve models), 'smollm2', "
                   "'mutator', 'gguf:/path/model.gguf', or a litellm model string such as openai/gpt-4o-mini  [env: EVOLVE_MODEL]")
@click.option("--api-base", default=None, help="base URL of an OpenAI-compatible endpoint (vLLM, Ollama, llama.cpp)  [env: EVOLVE_API_BASE]")
@click.option("--api-key-env", default=None, help="name of the environment variable holding the key for --api-base")
@click.option("--mode", type=click.Choice(["diff", "rewrite"]), default=None,
              help="SEARCH/REPLACE edits or whole rewrites (default: diff; rewrite for smollm2)")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="YAML or JSON campaign settings (models with weights, budgets, ...); flags given here win")
@click.option("--iterations", "-n", type=int, default=None, help="total iterations (proposals)  [default: 100]")
@click.option("--db", default="evolve.db", show_default=True, help=_DB_HELP)
@click.option("--seed", type=int, default=None, help="[default: 0]")
@click.option("--islands", type=int, default=None, help="[default: 4]")
@click.option("--strategy", type=click.Choice(["evolve", "repeated-sampling", "hill-climb"]), default=None,
              help="evolve: MAP-Elites islands; the baselines: every proposal from the initial program, or from the best  "
                   "[default: evolve]")
@click.option("--selection", type=click.Choice(["weights", "bandit"]), default=None,
              help="choose among --model's by fixed weights, or by a bandit on how often each improves  [default: weights]")
@click.option("--max-wall-s", type=float, default=None, help="stop after this many seconds")
@click.option("--max-cost-usd", type=float, default=None, help="stop once model calls have cost this much")
@click.option("--max-tokens", type=int, default=None, help="stop once model calls have used this many tokens")
@click.option("--eval-concurrency", type=int, default=None, help="parallel evaluations (default: CPU count)")
@click.option("--llm-concurrency", type=int, default=None, help="model calls in flight  [default: 4]")
@click.option("--sandbox", type=click.Choice(BACKENDS), default=None,
              help="where candidates run: auto = bwrap where it works, else docker; never process unless asked  [default: auto]")
@click.option("--executor", type=click.Choice(EXECUTORS), default=None,
              help="warm: long-lived evaluator workers and sandbox zygotes; cold: fresh processes per evaluation "
                   "(slower, for debugging); ray: warm evaluators on the nodes of a Ray cluster  [default: warm]")
@click.option("--ray-address", default=None, help="the Ray cluster's head, HOST:PORT (--executor ray)  [default: RAY_ADDRESS, "
                                                  "else the cluster this host runs]")
@click.option("--quiet", "-q", is_flag=True, help="no progress display")
def run(problem: str, models: tuple[str, ...], api_base: str | None, api_key_env: str | None, mode: str | None,
        config_file: str | None, iterations: int | None, db: str, seed: int | None, islands: int | None,
        strategy: str | None, selection: str | None, max_wall_s: float | None, max_cost_usd: float | None,
        max_tokens: int | None, eval_concurrency: int | None, llm_concurrency: int | None, sandbox: str | None,
        executor: str | None, ray_address: str | None,
        quiet: bool) -> None:
    """Start a campaign on PROBLEM (a built-in name or a problem folder)."""
    prob = resolve_problem(problem)
    settings = _load_config_file(config_file)
    flags = {
        "iterations": iterations, "seed": seed, "islands": islands, "max_wall_s": max_wall_s, "max_cost_usd": max_cost_usd,
        "max_tokens": max_tokens, "eval_concurrency": eval_concurrency, "llm_concurrency": llm_concurrency, "sandbox": sandbox,
        "executor": executor, "ray_address": ray_address,
    }
    settings.update({k: v for k, v in flags.items() if v is not None})
    search = {k: v for k, v in {"strategy": strategy, "selection": selection}.items() if v is not None}
    if search:
        given = settings.get("search")
        settings["search"] = {**(given if isinstance(given, dict) else {}), **search}
    settings["models"] = _model_settings(models, api_base, api_key_env, mode, settings.get("models"))
    config = parse_campaign_config(settings, source=config_file or "options")
    store = Store.open(db)
    workdir = owned_tempdir("campaign")
    try:
        campaign = asyncio.run(Campaign.create(store, prob, config, workdir=workdir))
        initial = store.best_program(campaign.id)
        chosen = config.search.strategy
        n = campaign.config.island_count
        how = f"{n} island{'s' if n > 1 else ''}" if chosen == "evolve" else f"strategy {chosen}"
        err.print(f"campaign {campaign.id}: {prob.name}, {how}, "
                  f"initial {prob.config.objective.metric} = {_fmt(initial.score if initial else None)}", highlight=False)
        _model_notice(campaign)
        backend = campaign.config.sandbox
        err.print(f"sandbox: {backend} ({DESCRIPTIONS[backend]}); limits: {_limits_text(prob.config.limits)}", highlight=False)
        status = _run_async(lambda stop: _drive(campaign, stop, quiet=quiet))
        _report(store, campaign, status, db)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if status is CampaignStatus.STOPPED and config.max_wall_s is None:
        sys.exit(EXIT_INTERRUPTED)


@cli.command()
@click.option("--db", default="evolve.db", show_default=True, help=_DB_HELP)
@click.option("--campaign", "campaign_id", default=None, help="campaign id (default: the most recent)")
@click.option("--iterations", "-n", type=int, default=None, help="new total iterations (default: the original target)")
@click.option("--max-cost-usd", type=float, default=None, help="new cost budget (what was spent counts against it)")
@click.option("--max-tokens", type=int, default=None, help="new token budget (what was used counts against it)")
@click.option("--quiet", "-q", is_flag=True)
def resume(db: str, campaign_id: str | None, iterations: int | None, max_cost_usd: float | None, max_tokens: int | None,
           quiet: bool) -> None:
    """Continue a stopped, interrupted, finished or out-of-budget campaign from the store."""
    store = _open_store(db, must_exist=True)
    store.mark_interrupted()
    row = _pick_campaign(store, campaign_id, resumable=True)
    if iterations is not None and iterations < row.iterations_done:
        _fail(f"--iterations {iterations} is below the {row.iterations_done} iterations already done")
    budgets = {k: v for k, v in {"max_cost_usd": max_cost_usd, "max_tokens": max_tokens}.items() if v is not None}
    workdir = owned_tempdir("campaign")
    try:
        campaign = Campaign.resume(store, row.id, workdir=workdir, iterations=iterations, budgets=budgets)
        err.print(f"resuming campaign {campaign.id} ({campaign.problem.name}) at {row.iterations_done}/{campaign.target}, "
                  f"{row.prompt_tokens + row.completion_tokens} tokens and ${row.cost_usd:.4f} spent", highlight=False)
        _model_notice(campaign)
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
    problem = store.load_problem(row.problem_id).config
    limits = problem.limits
    return {
        "id": row.id, "problem": row.problem_name, "status": row.status.value,
        "iterations_done": row.iterations_done, "iterations_target": row.iterations_target,
        "programs": sum(counts.values()), "valid_programs": row.valid_done + 1,
        "statuses": counts, "best_score": best.score if best else None, "best_program_id": row.best_program_id,
        "cells_filled": store.filled_cells(row.id), "prompt_tokens": row.prompt_tokens,
        "completion_tokens": row.completion_tokens, "cost_usd": row.cost_usd,
        "created_at": row.created_at, "updated_at": row.updated_at, "error": row.error,
        "owner": row.owner, "lease_expires": row.lease_expires,
        "sandbox": row.config.get("sandbox"), "limits": {**limits.model_dump(mode="json"), "cpu_s": limits.cpu_seconds()},
        "budgets": {"max_cost_usd": row.config.get("max_cost_usd"), "max_tokens": row.config.get("max_tokens")},
        "models": model_report(CampaignConfig.model_validate(row.config), store.model_stats(row.id)),
        "selection": row.config.get("search", {}).get("selection", "weights"),
        "stages": store.stage_counts(row.id),
        "grid_warnings": grid_warnings(store, row.id, list(problem.features), programs=row.iterations_done),
    }


@cli.command()
@click.option("--db", default="evolve.db", show_default=True, help=_DB_HELP)
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def status(db: str, as_json: bool) -> None:
    """Show every campaign in the store."""
    store = _open_store(db, must_exist=True)
    store.mark_interrupted()
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
        if r["status"] == "running" and r["owner"]:
            lease = "" if r["lease_expires"] is None else (
                ", its lease until " + time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(r["lease_expires"])))
            out.print(f"{r['id']} run by {r['owner']}{lease} (renewed while it runs; resumable elsewhere once it lapses)",
                      highlight=False)
        out.print(f"{r['id']} limits: {_limits_text(Limits.model_validate(r['limits']))}", highlight=False)
        for warning in r["grid_warnings"]:
            out.print(f"{r['id']} [yellow]warning[/]: {escape(warning)}", highlight=False)
        skipped = {k: r["statuses"].get(k, 0) for k in ("duplicate", "near_duplicate", "unchanged")}
        if any(skipped.values()):
            out.print(f"{r['id']} not evaluated: {skipped['duplicate']} duplicates of earlier programs, "
                      f"{skipped['near_duplicate']} near-duplicates of elites, "
                      f"{skipped['unchanged']} answers that left their parent unchanged", highlight=False)
        if len(r["stages"]) > 1:
            out.print(f"{r['id']} evaluations ended at stage: "
                      + ", ".join(f"{k} {v}" for k, v in sorted(r["stages"].items())), highlight=False)
        budgets = ", ".join(f"{k} {v:g}" for k, v in r["budgets"].items() if v is not None)
        if budgets:
            out.print(f"{r['id']} budgets: {budgets}", highlight=False)
        for m in r["models"]:
            gain = "—" if m["mean_improvement"] is None else f"{m['mean_improvement']:+.4g}"
            estimate = "" if m["bandit_estimate"] is None else f", bandit estimate {100 * m['bandit_estimate']:.0f}% improve"
            out.print(f"{r['id']} model {m['model']} ({m['template']}): {m['proposals']} proposals "
                      f"({100 * m['share']:.0f}% of them{estimate}), "
                      f"{100 * m['success_rate']:.0f}% valid, {m['improved']} improved on their parent (mean gain {gain}), "
                      f"{m['requests']} requests ({m['failed_requests']} failed), "
                      f"{m['prompt_tokens'] + m['completion_tokens']} tokens, ${m['cost_usd']:.4f}", highlight=False)


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
    held = held_out_score(store, row, problem, program)
    data = {
        "campaign_id": row.id, "problem": row.problem_name, "program_id": program.id,
        "metric": problem.config.objective.metric, "direction": problem.config.objective.direction.value,
        "score": program.score, "metrics": program.metrics, "features": program.features,
        "held_out": held.to_json() if held else None,
        "iteration": program.iteration, "generation": program.generation, "island": program.island,
        "model": program.model, "code": program.code,
    }
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    out.print(f"best of campaign {row.id} ({row.problem_name}): {data['metric']} = [bold]{_fmt(program.score)}[/] "
              f"(program {program.id}, iteration {program.iteration}, generation {program.generation})", highlight=False)
    out.print("metrics: " + ", ".join(f"{k}={_fmt(v)}" for k, v in program.metrics.items()), highlight=False)
    if held is not None:
        detail = "" if held.score is not None else f" ({held.status.value}: {held.error})"
        out.print(f"held-out instances: {data['metric']} = [bold]{_fmt(held.score)}[/]{detail} "
                  f"(search instances: {_fmt(program.score)})", highlight=False)
    if out_file:
        out.print(f"code written to {out_file}")
    else:
        click.echo(program.code)


@cli.command()
@click.option("--db", default="evolve.db", show_default=True, help=_DB_HELP)
@click.option("--campaign", "campaign_id", default=None, help="campaign id (default: the most recent)")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def pareto(db: str, campaign_id: str | None, as_json: bool) -> None:
    """Show the Pareto front of a campaign over its problem's objectives."""
    store = _open_store(db, must_exist=True)
    row = _pick_campaign(store, campaign_id)
    objectives = store.load_problem(row.problem_id).config.pareto_objectives()
    front = store.pareto_front(row.id, objectives)
    rows: list[dict[str, Any]] = [{"program_id": p.id, "iteration": p.iteration, "score": p.score,
                                   "objectives": {o.metric: p.metrics[o.metric] for o in objectives}} for p in front]
    if as_json:
        click.echo(json.dumps({"campaign_id": row.id, "objectives": [o.model_dump(mode="json", exclude_none=True) for o in objectives],
                               "front": rows}, indent=2))
        return
    table = Table(title=f"Pareto front of campaign {row.id} ({row.problem_name}): {len(rows)} program(s)")
    table.add_column("program")
    table.add_column("iteration")
    for o in objectives:
        table.add_column(f"{o.metric} ({o.direction.value[:3]})")
    for r in rows:
        table.add_row(r["program_id"], str(r["iteration"]), *(_fmt(v) for v in r["objectives"].values()))
    out.print(table)


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


@cli.command()
@click.option("--host", default=None, help="bind address  [env: EVOLVE_HOST; default 127.0.0.1; beyond loopback needs EVOLVE_API_TOKEN]")
@click.option("--port", type=int, default=None, help="port  [env: EVOLVE_PORT; default 8000]")
@click.option("--db", default=None, help=f"{_DB_HELP}  [env: EVOLVE_DB; default evolve.db]")
@click.option("--max-evaluations", type=int, default=None, help="evaluations at once across all campaigns  [env: EVOLVE_MAX_EVALUATIONS]")
@click.option("--sandbox", type=click.Choice(BACKENDS), default=None, help="sandbox of every evaluation  [env: EVOLVE_SANDBOX]")
def serve(host: str | None, port: int | None, db: str | None, max_evaluations: int | None, sandbox: str | None) -> None:
    """Serve the REST API (docs at /docs). The token comes only from EVOLVE_API_TOKEN, never from an option."""
    import uvicorn

    from evolve.server import create_app, load_settings

    settings = load_settings(host=host, port=port, db=db, max_evaluations=max_evaluations, sandbox=sandbox)
    app = create_app(settings)
    Store.open(settings.db).close()  # a bad --db is a one-line error here, not a failed start-up
    where = f"http://{settings.host}:{settings.port}"
    auth = "a token is required for writes" + (" and reads" if settings.reads_need_token else "") if settings.api_token else \
        "no token: writes are open to local clients (set EVOLVE_API_TOKEN to require one)"
    err.print(f"serving {settings.db} on {where} (API docs at {where}/docs); {auth}", highlight=False)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info", timeout_graceful_shutdown=30)


@cli.command("models")
@click.option("--prepare", "prepare", multiple=True, metavar="NAME",
              help="assemble and verify this packaged model now (repeatable; 'default' for the default model)")
def models_command(prepare: tuple[str, ...]) -> None:
    """The packaged models, offline and in-process: which is the default, their licenses and whether each is ready here."""
    for name in prepare:
        name = DEFAULT_MODEL if name == "default" else name
        if name not in CATALOG:
            _fail(f"unknown packaged model '{name}': use one of {', '.join(CATALOG)}")
        path = model_file(CATALOG[name], show_progress=True)
        err.print(f"{name}: verified {path}", highlight=False)
    for m in CATALOG.values():
        default = " (the default)" if m.name == DEFAULT_MODEL else ""
        out.print(f"{m.name}{default}: {m.title}, {m.license}; {m.source}", highlight=False)
        out.print(f"  {escape(model_state(m))}", highlight=False)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors become one line and exit code 2."""
    install_log_redaction()
    try:
        cli.main(args=argv, prog_name="evolve", standalone_mode=True)
    except StoreError as exc:
        _fail(f"{exc}")
    except EvolveError as exc:
        _fail(str(exc))
