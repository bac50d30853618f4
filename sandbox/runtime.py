"""The Python a sandboxed candidate runs on, and the packages it may import.

Containers and bubblewrap show the candidate a read-only ``/usr`` and nothing
else of the host, so its interpreter must live there (or in a prefix that is
readable by every user and gets mounted too), and the third-party packages
it may import (NumPy by default) are mounted one by one, read-only, under
``SITE_DIR``. The candidate runs as an unprivileged uid, so each of those
paths must be readable by others: a Python installed under a private home
(``/root/.pyenv``) is replaced by the system Python of the same version.
"""

from __future__ import annotations

import importlib.util
import os
import stat
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from evolve.errors import SandboxError

__all__ = ["DEFAULT_PACKAGES", "SITE_DIR", "SandboxRuntime", "sandbox_runtime"]

SITE_DIR = "/opt/evolve-site"
DEFAULT_PACKAGES = ("numpy",)


@dataclass(frozen=True, slots=True)
class SandboxRuntime:
    """An interpreter path, the host prefix to mount for it (None under /usr), and package mounts."""

    python: str
    prefix: str | None
    packages: tuple[tuple[str, str], ...]  # (host dir, path inside the sandbox)


def _readable_by_others(path: Path) -> bool:
    """Whether an unprivileged stranger can reach and read ``path``."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    need = stat.S_IXOTH | stat.S_IROTH if stat.S_ISDIR(mode) else stat.S_IROTH
    if mode & need != need:
        return False
    for parent in path.parents:
        try:
            if not parent.stat().st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
    return True


def _interpreter() -> tuple[str, str | None]:
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    own = Path(os.path.realpath(sys.executable))
    candidates: list[tuple[Path, str | None]] = []
    prefix = Path(os.path.realpath(sys.base_prefix))
    candidates.append((own, None if own.is_relative_to("/usr") else str(prefix)))
    candidates.append((Path("/usr/bin") / version, None))
    candidates.append((Path("/usr/local/bin") / version, None))
    for path, mount in candidates:
        if path.is_file() and _readable_by_others(path) and (mount is None or _readable_by_others(Path(mount) / "lib" / version)):
            return str(path), mount
    raise SandboxError(
        f"no {version} that an unprivileged user can run: {own} is private. "
        f"Install the system {version} (apt-get install {version}) or use a Python under /usr"
    )


def _package_dirs(name: str) -> list[Path]:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SandboxError(f"the sandbox should offer the package '{name}', but it is not installed here")
    root = Path(next(iter(spec.submodule_search_locations)))
    dirs = [root]
    libs = root.with_name(f"{name}.libs")  # shared libraries bundled by manylinux wheels
    if libs.is_dir():
        dirs.append(libs)
    return dirs


@cache
def sandbox_runtime(packages: tuple[str, ...] = DEFAULT_PACKAGES) -> SandboxRuntime:
    """Find the interpreter and package directories for sandboxed runs.

    Raises:
        SandboxError: when no interpreter or package is readable by an unprivileged uid.
    """
    python, prefix = _interpreter()
    mounts: list[tuple[str, str]] = []
    for name in packages:
        for directory in _package_dirs(name):
            if not _readable_by_others(directory):
                raise SandboxError(
                    f"{directory} is not readable by other users, so a sandboxed candidate cannot import '{name}'. "
                    "Install evolve in a virtual environment outside a private home directory"
                )
            mounts.append((str(directory), f"{SITE_DIR}/{directory.name}"))
    return SandboxRuntime(python=python, prefix=prefix, packages=tuple(mounts))
