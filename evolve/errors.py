"""The one error hierarchy of evolve.

Every error a user can meet is an ``EvolveError``; the CLI prints its message on
one line and exits with code 2. Bad candidates are never errors: they are data
(``EvalResult`` with a non-OK status).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError

__all__ = [
    "ConfigError",
    "DiffError",
    "EvolveError",
    "LLMError",
    "ProblemError",
    "SandboxError",
    "StoreError",
    "format_errors",
]


class EvolveError(Exception):
    """Base class of every error evolve raises on purpose."""


class ConfigError(EvolveError):
    """A configuration value (CLI option, settings, campaign config) is invalid."""


class ProblemError(ConfigError):
    """A problem folder or payload is missing, malformed or inconsistent.

    ``field`` names the part at fault (``config``, ``initial_program`` or
    ``evaluator``) when it is known, for answers that point at an input.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class DiffError(EvolveError):
    """A model's answer could not be turned into a valid child program."""


class SandboxError(EvolveError):
    """The sandbox itself failed (not the candidate inside it)."""


class StoreError(EvolveError):
    """The store could not be opened, migrated, read or written."""


class LLMError(EvolveError):
    """A language model call failed after its retries."""


def format_errors(exc: ValidationError, *, name: Callable[[str], str] = str) -> str:
    """A pydantic error as one line: each field at fault (its dotted path, through ``name``) with what is wrong.

    Every validated input (problem.yaml, a campaign config, the server's settings) is reported through this.
    """
    parts = []
    for error in exc.errors():
        where = name(".".join(str(p) for p in error["loc"])) if error["loc"] else "(top level)"
        what = "unknown key (remove it or check its spelling)" if error["type"] == "extra_forbidden" else error["msg"]
        parts.append(f"{where}: {what}")
    return "; ".join(parts)
