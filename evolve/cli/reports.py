"""Reading a store: ``evolve status``, ``best``, ``pareto`` and ``export``."""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path
from typing import IO, Any

import click
from rich.markup import escape
from rich.table import Table

from evolve.bandit import model_report
from evolve.cli.common import DB_HELP, cli, err, fail, fmt, limits_text, open_store, out, pick_campaign
from evolve.problem import Limits
from evolve.reports import campaign_summary, held_out_score
from evolve.store import CampaignRow, Store
from evolve.values import Program

__all__ = ["best", "campaign_json", "export", "pareto", "status"]


_WIDE = 120  # the table's eleven columns fit from here; narrower, each campaign is a block of lines


def campaign_json(store: Store, row: CampaignRow) -> dict[str, Any]:
    """The shared summary (``evolve.reports.campaign_summary``, as the API reports it), and what the CLI adds."""
    summary = campaign_summary(store, row, detail=True)
    counts = summary["status_counts"]
    problem = store.load_problem(row.problem_id).config
    limits = problem.limits
    return {
        **summary, "status": row.status.value,
        "programs": sum(counts.values()), "valid_programs": row.valid_done + 1, "statuses": counts,
        "cells_filled": store.filled_cells(row.id),
        "sandbox": row.config.sandbox, "limits": {**limits.model_dump(mode="json"), "cpu_s": limits.cpu_seconds()},
        "budgets": {"max_cost_usd": row.config.max_cost_usd, "max_tokens": row.config.max_tokens},
        "models": model_report(row.config, store.model_stats(row.id)),
        "selection": row.config.search.selection,
        "stages": summary["stage_counts"],
    }


@cli.command()
@click.option("--db", default="evolve.db", show_default=True, help=DB_HELP)
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def status(db: str, as_json: bool) -> None:
    """Show every campaign in the store."""
    store = open_store(db, must_exist=True)
    store.mark_interrupted()
    rows = [campaign_json(store, r) for r in store.list_campaigns()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        out.print(f"no campaigns in {db}")
        return
    if out.width >= _WIDE:
        table = Table(title=f"campaigns in {db}")
        for col in ("id", "problem", "status", "iterations", "programs", "valid", "best score", "cells", "tokens", "cost $",
                    "sandbox"):
            table.add_column(col)
        for r in rows:
            table.add_row(r["id"], r["problem"], r["status"], f"{r['iterations_done']}/{r['iterations_target']}",
                          str(r["programs"]), str(r["valid_programs"]), fmt(r["best_score"]), str(r["cells_filled"]),
                          str(r["prompt_tokens"] + r["completion_tokens"]), f"{r['cost_usd']:.4f}", str(r["sandbox"]))
        out.print(table)
    else:  # an ordinary terminal, or a pipe: a block per campaign, nothing cut
        out.print(f"campaigns in {db}:", highlight=False)
        for r in rows:
            out.print(f"[bold]{r['id']}[/] {escape(r['problem'])}: {r['status']}, iterations {r['iterations_done']}/"
                      f"{r['iterations_target']}, best score {fmt(r['best_score'])}", highlight=False)
            out.print(f"  {r['programs']} programs ({r['valid_programs']} valid), {r['cells_filled']} cells, "
                      f"{r['prompt_tokens'] + r['completion_tokens']} tokens, ${r['cost_usd']:.4f}, "
                      f"sandbox {r['sandbox']}", highlight=False)
    for r in rows:
        if r["status"] == "running" and r["owner"]:
            lease = "" if r["lease_expires"] is None else (
                ", its lease until " + time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(r["lease_expires"])))
            out.print(f"{r['id']} run by {r['owner']}{lease} (renewed while it runs; resumable elsewhere once it lapses)",
                      highlight=False)
        out.print(f"{r['id']} limits: {limits_text(Limits.model_validate(r['limits']))}", highlight=False)
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
@click.option("--db", default="evolve.db", show_default=True, help=DB_HELP)
@click.option("--campaign", "campaign_id", default=None, help="campaign id (default: the most recent)")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.option("--out", "out_file", type=click.Path(dir_okay=False, writable=True), default=None, help="write the best program's code here")
def best(db: str, campaign_id: str | None, as_json: bool, out_file: str | None) -> None:
    """Show the best program of a campaign."""
    store = open_store(db, must_exist=True)
    row = pick_campaign(store, campaign_id)
    program = store.best_program(row.id)
    if program is None:
        fail(f"campaign {row.id} has no valid program yet")
    problem = store.load_problem(row.problem_id)
    if out_file:
        try:
            Path(out_file).write_text(program.code, encoding="utf-8")
        except OSError as exc:
            fail(f"cannot write the best program to {out_file}: {exc}")
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
    out.print(f"best of campaign {row.id} ({row.problem_name}): {data['metric']} = [bold]{fmt(program.score)}[/] "
              f"(program {program.id}, iteration {program.iteration}, generation {program.generation})", highlight=False)
    out.print("metrics: " + ", ".join(f"{k}={fmt(v)}" for k, v in program.metrics.items()), highlight=False)
    if held is not None:
        detail = "" if held.score is not None else f" ({held.status.value}: {held.error})"
        out.print(f"held-out instances: {data['metric']} = [bold]{fmt(held.score)}[/]{detail} "
                  f"(search instances: {fmt(program.score)})", highlight=False)
    if out_file:
        out.print(f"code written to {out_file}")
    else:
        click.echo(program.code)


@cli.command()
@click.option("--db", default="evolve.db", show_default=True, help=DB_HELP)
@click.option("--campaign", "campaign_id", default=None, help="campaign id (default: the most recent)")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def pareto(db: str, campaign_id: str | None, as_json: bool) -> None:
    """Show the Pareto front of a campaign over its problem's objectives."""
    store = open_store(db, must_exist=True)
    row = pick_campaign(store, campaign_id)
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
        table.add_row(r["program_id"], str(r["iteration"]), *(fmt(v) for v in r["objectives"].values()))
    out.print(table)


_EXPORT_FIELDS = ("id", "iteration", "generation", "island", "parent_id", "mate_id", "origin", "status", "score", "fitness",
                  "model", "template", "applied", "stage", "node", "cell", "eval_seconds", "llm_seconds", "created_at")


def _program_record(program: Program) -> dict[str, Any]:
    record = {name: getattr(program, name) for name in _EXPORT_FIELDS}
    record.update(origin=program.origin.value, status=program.status.value, metrics=program.metrics,
                  features=program.features, error=program.artifacts.get("error"), code=program.code)
    return record


def _top(programs: list[Program], n: int) -> list[Program]:
    """The ``n`` best valid programs, one per distinct code (an island's migrated copy is the same program)."""
    seen: set[str] = set()
    ranked = []
    for p in sorted((p for p in programs if p.fitness is not None), key=lambda p: (-(p.fitness or 0.0), p.iteration)):
        if p.code not in seen:
            seen.add(p.code)
            ranked.append(p)
    return ranked[:n]


def _write_rows(records: list[dict[str, Any]], fmt_name: str, stream: IO[str]) -> None:
    if fmt_name == "jsonl":
        for record in records:
            stream.write(json.dumps(record) + "\n")
        return
    metric_keys = sorted({k for r in records for k in r["metrics"]})
    feature_keys = sorted({k for r in records for k in r["features"]})
    columns = [*_EXPORT_FIELDS, *(f"metric.{k}" for k in metric_keys), *(f"feature.{k}" for k in feature_keys), "error", "code"]
    writer = csv.DictWriter(stream, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for r in records:
        writer.writerow({**r, **{f"metric.{k}": v for k, v in r["metrics"].items()},
                         **{f"feature.{k}": v for k, v in r["features"].items()}})


@cli.command()
@click.option("--db", default="evolve.db", show_default=True, help=DB_HELP)
@click.option("--campaign", "campaign_id", default=None, help="campaign id (default: the most recent)")
@click.option("--top", "top_n", type=click.IntRange(min=1), default=10, show_default=True,
              help="how many of the best programs (--format files)")
@click.option("--format", "fmt_name", type=click.Choice(["files", "jsonl", "csv"]), default="files", show_default=True,
              help="files: the best programs as .py files with a programs.json; jsonl or csv: every program of the campaign")
@click.option("--out", "out_path", type=click.Path(), default=None,
              help="folder (files; default evolve-export-ID) or file (jsonl, csv; default standard output)")
def export(db: str, campaign_id: str | None, top_n: int, fmt_name: str, out_path: str | None) -> None:
    """Export a campaign's programs: the best as files with their metrics, or all of them as JSON lines or CSV."""
    store = open_store(db, must_exist=True)
    row = pick_campaign(store, campaign_id)
    programs = store.list_programs(row.id)
    if fmt_name != "files":
        records = [_program_record(p) for p in programs]
        if out_path is None:
            _write_rows(records, fmt_name, sys.stdout)
            return
        try:
            with Path(out_path).open("w", newline="", encoding="utf-8") as stream:
                _write_rows(records, fmt_name, stream)
        except OSError as exc:
            fail(f"cannot write {out_path}: {exc}")
        err.print(f"wrote {len(records)} programs of campaign {row.id} to {out_path}", highlight=False)
        return
    folder = Path(out_path or f"evolve-export-{row.id}")
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        fail(f"{folder} exists and is not an empty folder: pass --out with a new folder")
    best = _top(programs, top_n)
    problem = store.load_problem(row.problem_id).config
    index = []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for rank, p in enumerate(best, start=1):
            name = f"rank{rank:02d}-{p.id}.py"
            (folder / name).write_text(p.code, encoding="utf-8")
            index.append({"rank": rank, "file": name, **{k: v for k, v in _program_record(p).items() if k != "code"}})
        summary = {"campaign_id": row.id, "problem": row.problem_name, "metric": problem.objective.metric,
                   "direction": problem.objective.direction.value, "programs": index}
        (folder / "programs.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write the export to {folder}: {exc}")
    out.print(f"wrote the {len(best)} best of campaign {row.id} ({row.problem_name}) to {folder}/ with programs.json "
              f"(best {problem.objective.metric} = {fmt(best[0].score if best else None)})", highlight=False)
