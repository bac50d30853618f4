"""The ``evolve`` command line: run, resume, status, best, pareto, export, problems, eval, check, new, serve, models, doctor, token.

Bad input (unknown problem, malformed problem.yaml, unreadable database) gives
a one-line error that says what to do and exit code 2, never a traceback.
"""

from __future__ import annotations

from evolve.cli import campaigns, problems, reports, service, tokens  # noqa: F401 - each registers its commands on the group
from evolve.cli.common import cli, fail
from evolve.errors import EvolveError, StoreError
from evolve.secrets import install_log_redaction

__all__ = ["cli", "main"]


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors become one line and exit code 2."""
    install_log_redaction()
    try:
        cli.main(args=argv, prog_name="evolve", standalone_mode=True)
    except StoreError as exc:
        fail(f"{exc}")
    except EvolveError as exc:
        fail(str(exc))
