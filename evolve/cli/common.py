"""What every command shares: the consoles, the one-line error, the store and campaign lookups, the group."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import click
from rich.console import Console
from rich.markup import escape

from evolve.problem import Limits
from evolve.secrets import redact
from evolve.store import CampaignRow, Store
from evolve.values import CampaignStatus

__all__ = ["DB_HELP", "EXIT_INTERRUPTED", "EXIT_USAGE", "cli", "err", "fail", "fmt", "limits_text", "open_store", "out", "pick_campaign"]


out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
DB_HELP = "SQLite file path or SQLAlchemy URL of the store"
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def fail(message: str) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(redact(message))}", highlight=False, soft_wrap=True)
    sys.exit(EXIT_USAGE)


def fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.6g}"


def open_store(db: str, *, must_exist: bool = False) -> Store:
    if must_exist and "://" not in db and not Path(db).expanduser().exists():
        fail(f"no database at {db}: start a campaign with 'evolve run PROBLEM --db {db}' or pass --db")
    return Store.open(db)


def pick_campaign(store: Store, campaign_id: str | None, *, resumable: bool = False) -> CampaignRow:
    if campaign_id:
        return store.get_campaign(campaign_id)
    rows = store.list_campaigns()
    if resumable:
        rows = [r for r in rows if r.status is not CampaignStatus.FAILED]
    if not rows:
        fail(f"no campaign in {store.url}: start one with 'evolve run PROBLEM'")
    return rows[-1]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="evolve")
def cli() -> None:
    """LLM-driven evolutionary algorithm discovery."""



def limits_text(limits: Limits) -> str:
    return (f"{limits.timeout_s:g} s wall, {limits.cpu_seconds()} s CPU, {limits.memory_mb} MB, "
            f"{limits.processes} processes, {limits.output_bytes} output bytes")
