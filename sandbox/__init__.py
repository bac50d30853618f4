"""Sandboxes that run untrusted candidate code. See ``base.Sandbox``."""

from evolve.errors import ConfigError
from evolve.sandbox.base import RunOutcome, RunSpec, Sandbox, SandboxLimits
from evolve.sandbox.codec import CandidateValueError, decode_result
from evolve.sandbox.process import ProcessSandbox

__all__ = [
    "BACKENDS",
    "CandidateValueError",
    "ProcessSandbox",
    "RunOutcome",
    "RunSpec",
    "Sandbox",
    "SandboxLimits",
    "decode_result",
    "get_sandbox",
]

BACKENDS = ("process",)


def get_sandbox(name: str) -> Sandbox:
    """The sandbox backend called ``name``.

    Raises:
        ConfigError: for an unknown backend name.
    """
    if name == "process":
        return ProcessSandbox()
    raise ConfigError(f"unknown sandbox backend '{name}': choose one of {', '.join(BACKENDS)}")
