"""Temporary directories that name their owner, so what a killed process left can be removed.

Every scratch directory evolve makes on the host is ``evolve-<kind>-<pid>x<hex>-<random>``
under the system temporary directory, where ``pid`` is the process that owns
it. A process killed with ``kill -9`` cannot remove its own; ``sweep_stale``
(run when a campaign, a report or the server starts, and when an evaluator is
made) removes those whose owner is gone.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from evolve.sandbox.confine import process_alive

__all__ = ["owned_tempdir", "scratch_dir", "stale_tempdirs", "sweep_stale"]

_NAME = re.compile(r"^evolve-[a-z]+-(\d+)x[0-9a-f]+-")


def owned_tempdir(kind: str, *, tag: str | None = None) -> Path:
    """A fresh directory ``evolve-<kind>-<tag>-…`` (``tag``: ``<pid>x<hex>``, made here unless given)."""
    tag = tag or f"{os.getpid()}x{uuid.uuid4().hex[:10]}"
    return Path(tempfile.mkdtemp(prefix=f"evolve-{kind}-{tag}-"))


@contextlib.contextmanager
def scratch_dir(kind: str) -> Iterator[Path]:
    """An owned scratch directory for the length of a ``with`` block, removed afterwards whatever happened."""
    path = owned_tempdir(kind)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def stale_tempdirs() -> list[Path]:
    """Owned scratch directories whose owner process is gone."""
    found = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(tempfile.gettempdir()):
            match = _NAME.match(entry.name)
            if match and entry.is_dir(follow_symlinks=False) and not process_alive(int(match.group(1))):
                found.append(Path(entry.path))
    return found


def sweep_stale() -> int:
    """Remove the scratch directories of owners that are gone; how many."""
    stale = stale_tempdirs()
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return len(stale)
