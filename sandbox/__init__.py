"""Sandboxes that run untrusted candidate code. See ``base.Sandbox``.

Backends, strongest first: ``docker`` (containers, gVisor where installed),
``bwrap`` (bubblewrap namespaces + seccomp + cgroup + uid), and ``process``
(rlimits, cgroup and uid only: no file-system or network isolation). ``auto``
takes bwrap where it works (as strong as a container here, and 20 times
cheaper per run), else a reachable Docker engine; it never falls back to
``process``.
"""

from __future__ import annotations

from typing import get_args

from evolve.errors import ConfigError, SandboxError
from evolve.sandbox.base import Backend, RunOutcome, RunSpec, Sandbox, SandboxLimits
from evolve.sandbox.codec import CandidateValueError, decode_result

__all__ = [
    "BACKENDS",
    "DESCRIPTIONS",
    "CandidateValueError",
    "RunOutcome",
    "RunSpec",
    "Sandbox",
    "SandboxLimits",
    "backend_problem",
    "decode_result",
    "get_sandbox",
    "resolve_backend",
]

BACKENDS: tuple[str, ...] = get_args(Backend)

#: One line per concrete backend, for the CLI and the API to say what protects a run.
DESCRIPTIONS = {
    "bwrap": "bubblewrap: no network, read-only /usr only, private tmpfs, seccomp, rlimits and cgroups, unprivileged uid",
    "docker": "a fresh container per run: no network, read-only root, all capabilities dropped, unprivileged user",
    "process": "rlimits, cgroup and uid only: NO file-system or network isolation (trusted code only)",
}


def _construct(name: str) -> Sandbox:
    """Build backend ``name`` (concrete) without the start-up probe; its own checks still raise."""
    if name == "bwrap":
        from evolve.sandbox.bwrap import BwrapSandbox

        return BwrapSandbox()
    if name == "docker":
        from evolve.sandbox.container import DockerSandbox

        return DockerSandbox()
    from evolve.sandbox.process import ProcessSandbox

    return ProcessSandbox()


def backend_problem(name: str) -> str | None:
    """Why concrete backend ``name`` cannot work here, or None (bwrap: a real run; docker: the engine answers)."""
    from evolve.sandbox.bwrap import bwrap_problem

    if name == "bwrap":
        return bwrap_problem()  # a real bwrap run, cached per process
    try:
        _construct(name)
    except SandboxError as exc:
        return str(exc)
    return None


def resolve_backend(name: str) -> str:
    """The concrete backend for ``name``, checked to work here; ``auto`` becomes the strongest that does.

    Raises:
        ConfigError: for an unknown name.
        SandboxError: when the backend cannot work here, or ``auto`` finds no isolating one;
            the message says how to get one.
    """
    if name not in BACKENDS:
        raise ConfigError(f"unknown sandbox backend '{name}': choose one of {', '.join(BACKENDS)}")
    if name != "auto":
        if (why := backend_problem(name)) is not None:
            raise SandboxError(f"the {name} sandbox cannot run here: {why}")
        return name
    problems: dict[str, str] = {}
    for backend in ("bwrap", "docker"):
        if (why := backend_problem(backend)) is None:
            return backend
        problems[backend] = why
    reasons = "; ".join(f"{backend}: {why}" for backend, why in problems.items())
    raise SandboxError(
        f"no isolating sandbox is available ({reasons}). Install bubblewrap (apt-get install bubblewrap), "
        "or start a Docker engine (or podman system service) and set DOCKER_HOST; "
        "--sandbox process runs candidates without isolation, at your own risk"
    )


def get_sandbox(name: str) -> Sandbox:
    """The sandbox backend called ``name``.

    ``auto`` is resolved (and checked) first. A concrete name is built without
    the start-up probe: the evaluator worker, started once per evaluation, gets
    a name the controller already resolved and checked.

    Raises:
        ConfigError: for an unknown backend name.
        SandboxError: when that backend cannot work on this machine.
    """
    if name not in BACKENDS:
        raise ConfigError(f"unknown sandbox backend '{name}': choose one of {', '.join(BACKENDS)}")
    return _construct(resolve_backend(name) if name == "auto" else name)
