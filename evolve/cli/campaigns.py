"""Starting and continuing campaigns: ``evolve run`` and ``evolve resume``, with their live progress and report."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import click
import yaml
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from evolve.campaign import Campaign
from evolve.campaign import Progress as CampaignProgress
from evolve.cli.common import DB_HELP, EXIT_INTERRUPTED, cli, err, fail, fmt, limits_text, open_store, out, pick_campaign
from evolve.config import EMBEDDED_MODEL, MAX_ITERATIONS, CampaignConfig, ModelSpec, parse_campaign_config
from evolve.evaluators.executor import EXECUTORS
from evolve.llm.embedded import EmbeddedTransport, describe_embedded
from evolve.problem import resolve_problem
from evolve.sandbox import BACKENDS, DESCRIPTIONS
from evolve.scratch import owned_tempdir
from evolve.store import Store
from evolve.values import CampaignStatus

__all__ = ["resume", "run"]


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
                             best=fmt(p.best_score), valid=valid, cells=p.cells_filled, tokens=tokens, cost=cost)
        elif not self._quiet and p.iterations_done // self._step > self._printed // self._step:
            self._printed = p.iterations_done
            err.print(f"iteration {p.iterations_done}/{p.iterations_target} · best {fmt(p.best_score)} · valid {valid} "
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
        out.print(f"best {campaign.problem.config.objective.metric} = [bold]{fmt(best.score)}[/] "
                  f"(program {best.id}, iteration {best.iteration}); see it with: evolve best --db {db}", highlight=False)
    if status is CampaignStatus.STOPPED:
        out.print(f"continue with: evolve resume --db {db} --campaign {campaign.id}", highlight=False)
    if status is CampaignStatus.BUDGET_SPENT:
        out.print(f"{campaign.stop_reason}; continue with a larger budget: evolve resume --db {db} --campaign {campaign.id} "
                  "--max-cost-usd N or --max-tokens N", highlight=False)


def _load_config_file(path: str | None) -> CampaignConfig:
    """The campaign config file, validated (the defaults without one)."""
    if path is None:
        return CampaignConfig()
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        fail(f"cannot read the campaign config {path}: {exc}")
    if not isinstance(data, dict):
        fail(f"the campaign config {path} must be a mapping of settings (models, iterations, ...), not {type(data).__name__}")
    return parse_campaign_config(data, source=path)


def _model_specs(models: tuple[str, ...], api_base: str | None, api_key_env: str | None, mode: str | None,
                 base: CampaignConfig) -> list[ModelSpec] | None:
    """The ensemble: --model flags (equal weights) override the config file, which overrides EVOLVE_MODEL, then the
    embedded model. None: the config file's models, as they are."""
    names = list(models)
    from_file = "models" in base.model_fields_set
    if not names and not from_file and os.environ.get("EVOLVE_MODEL"):
        names = [os.environ["EVOLVE_MODEL"]]
    if not names:
        if from_file:
            return None
        names = [EMBEDDED_MODEL]
    endpoint = api_base or (os.environ.get("EVOLVE_API_BASE") if not models else None)
    return [ModelSpec.named(name, api_base=endpoint, api_key_env=api_key_env, mode=mode) for name in names]


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
@click.option("--iterations", "-n", type=click.IntRange(1, MAX_ITERATIONS), default=None,
              help="total iterations (proposals)  [default: 100]")
@click.option("--db", default="evolve.db", show_default=True, help=DB_HELP)
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
@click.option("--sandbox-evaluator/--trust-evaluator", "evaluator_sandbox", default=None,
              help="run the problem's evaluator.py in a sandbox of its own (for an evaluator you did not write)  "
                   "[default: trusted]")
@click.option("--quiet", "-q", is_flag=True, help="no progress display")
def run(problem: str, models: tuple[str, ...], api_base: str | None, api_key_env: str | None, mode: str | None,
        config_file: str | None, iterations: int | None, db: str, seed: int | None, islands: int | None,
        strategy: str | None, selection: str | None, max_wall_s: float | None, max_cost_usd: float | None,
        max_tokens: int | None, eval_concurrency: int | None, llm_concurrency: int | None, sandbox: str | None,
        executor: str | None, ray_address: str | None, evaluator_sandbox: bool | None,
        quiet: bool) -> None:
    """Start a campaign on PROBLEM (a built-in name or a problem folder)."""
    prob = resolve_problem(problem)
    base = _load_config_file(config_file)
    config = base.updated(  # the flags given (None: as the file or the default says), validated as one config
        iterations=iterations, seed=seed, islands=islands, max_wall_s=max_wall_s, max_cost_usd=max_cost_usd,
        max_tokens=max_tokens, eval_concurrency=eval_concurrency, llm_concurrency=llm_concurrency, sandbox=sandbox,
        executor=executor, ray_address=ray_address, evaluator_sandbox=evaluator_sandbox,
        models=_model_specs(models, api_base, api_key_env, mode, base),
        search=base.search.updated(strategy=strategy, selection=selection),
    )
    store = Store.open(db)
    workdir = owned_tempdir("campaign")
    try:
        campaign = asyncio.run(Campaign.create(store, prob, config, workdir=workdir))
        initial = store.best_program(campaign.id)
        chosen = config.search.strategy
        n = campaign.config.island_count
        how = f"{n} island{'s' if n > 1 else ''}" if chosen == "evolve" else f"strategy {chosen}"
        err.print(f"campaign {campaign.id}: {prob.name}, {how}, "
                  f"initial {prob.config.objective.metric} = {fmt(initial.score if initial else None)}", highlight=False)
        _model_notice(campaign)
        backend = campaign.config.sandbox
        err.print(f"sandbox: {backend} ({DESCRIPTIONS[backend]}); limits: {limits_text(prob.config.limits)}", highlight=False)
        status = _run_async(lambda stop: _drive(campaign, stop, quiet=quiet))
        _report(store, campaign, status, db)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if status is CampaignStatus.STOPPED and config.max_wall_s is None:
        sys.exit(EXIT_INTERRUPTED)


@cli.command()
@click.option("--db", default="evolve.db", show_default=True, help=DB_HELP)
@click.option("--campaign", "campaign_id", default=None, help="campaign id (default: the most recent)")
@click.option("--iterations", "-n", type=click.IntRange(1, MAX_ITERATIONS), default=None,
              help="new total iterations (default: the original target)")
@click.option("--max-cost-usd", type=float, default=None, help="new cost budget (what was spent counts against it)")
@click.option("--max-tokens", type=int, default=None, help="new token budget (what was used counts against it)")
@click.option("--quiet", "-q", is_flag=True)
def resume(db: str, campaign_id: str | None, iterations: int | None, max_cost_usd: float | None, max_tokens: int | None,
           quiet: bool) -> None:
    """Continue a stopped, interrupted, finished or out-of-budget campaign from the store."""
    store = open_store(db, must_exist=True)
    store.mark_interrupted()
    row = pick_campaign(store, campaign_id, resumable=True)
    if iterations is not None and iterations < row.iterations_done:
        fail(f"--iterations {iterations} is below the {row.iterations_done} iterations already done")
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
