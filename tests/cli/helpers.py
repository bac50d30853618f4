"""Running the CLI as a user does: ``python -m evolve`` in a real process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

__all__ = ["evolve"]


def evolve(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``evolve ARGS`` in ``cwd``; its exit code, standard output and standard error."""
    return subprocess.run([sys.executable, "-m", "evolve", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=env)
