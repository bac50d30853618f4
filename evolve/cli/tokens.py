"""``evolve token create|list|revoke``: the API tokens of a server's store, with their roles and limits.

A token is printed once, when it is made; the store keeps only its digest.
Every change is in the audit trail (``GET /audit``) as the ``cli`` actor.
"""

from __future__ import annotations

import json

import click

from evolve.cli.common import DB_HELP, cli, fail, fmt, open_store, out
from evolve.store import ROLES
from evolve.store.access import TokenNameError

__all__ = ["token"]

_DB = click.option("--db", default="evolve.db", show_default=True, envvar="EVOLVE_DB", help=f"{DB_HELP}  [env: EVOLVE_DB]")


@cli.group()
def token() -> None:
    """API tokens of a server: read (dashboard, GET), run (submit, start/stop/resume its own), admin (everything)."""


@token.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), required=True, help="what the token may do")
@click.option("--max-campaigns", type=click.IntRange(1, 10_000), default=None, help="its campaigns running at once")
@click.option("--max-evaluations", type=click.IntRange(1, 100_000), default=None,
              help="evaluations in flight at once, over its running campaigns")
@click.option("--max-cost-usd", type=click.FloatRange(min=0, min_open=True), default=None,
              help="model spend over all its campaigns")
@_DB
def create(name: str, role: str, max_campaigns: int | None, max_evaluations: int | None, max_cost_usd: float | None,
           db: str) -> None:
    """Make token NAME and print it, this once (keep it: the store holds only its digest)."""
    store = open_store(db)
    try:
        value, _row = store.create_token(name, role, max_campaigns=max_campaigns, max_evaluations=max_evaluations,
                                         max_cost_usd=max_cost_usd)
        store.add_audit("cli", "token_create", target=name, detail=f"role {role}")
    except TokenNameError as exc:
        fail(str(exc))
    finally:
        store.close()
    click.echo(value)
    click.echo(f"token '{name}' ({role}) made; it is shown only now. Send it as 'Authorization: Bearer <token>'.",
               err=True)


@token.command("list")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@_DB
def list_command(as_json: bool, db: str) -> None:
    """The tokens, revoked ones too (never their values)."""
    store = open_store(db, must_exist=True)
    try:
        rows = store.list_tokens()
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps([r.to_json() for r in rows], indent=2))
        return
    if not rows:
        out.print(f"no tokens in {db}: make one with 'evolve token create NAME --role run --db {db}'", highlight=False)
        return
    for r in rows:
        limits = ", ".join(f"{k} {fmt(v)}" for k, v in (("campaigns", r.max_campaigns), ("evaluations", r.max_evaluations),
                                                         ("usd", r.max_cost_usd)) if v is not None) or "no limits"
        state = "active" if r.active else "revoked"
        out.print(f"{r.name:<24} {r.role:<6} {state:<8} {limits}", highlight=False)


@token.command("revoke")
@click.argument("name")
@_DB
def revoke(name: str, db: str) -> None:
    """Revoke token NAME: a server refuses it from its next request on."""
    store = open_store(db, must_exist=True)
    try:
        store.revoke_token(name)
        store.add_audit("cli", "token_revoke", target=name)
    finally:
        store.close()
    out.print(f"token '{name}' revoked", highlight=False)
