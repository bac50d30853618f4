"""Problems: ``evolve problems``, ``eval``, ``check`` and ``new``."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.table import Table

from evolve.cli.common import cli, out
from evolve.problem import builtin_problem_names, resolve_problem

__all__ = ["problems"]


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
