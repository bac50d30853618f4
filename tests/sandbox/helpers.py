"""Host-side checks for sandbox tests: what survived a run, seen from outside; skips that CI can forbid."""

from __future__ import annotations

import os
import time
from typing import NoReturn

import pytest

#: Candidate code that names its process ``token`` (PR_SET_NAME), so the host can find it.
SET_NAME = "import ctypes\nctypes.CDLL(None).prctl(15, {token!r}.encode(), 0, 0, 0)\n"


def processes_named(token: str) -> list[int]:
    """Live host pids whose command name is ``token`` (set by the candidate with PR_SET_NAME).

    Zombies do not count: they hold no memory and run nothing (and on a host whose
    init does not reap, killed orphans stay zombies).
    """
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/status") as status:
                    fields = dict(line.split(":\t", 1) for line in status.read().splitlines() if ":\t" in line)
            except OSError:
                continue
            if fields.get("Name", "").strip() == token and not fields.get("State", "").startswith("Z"):
                found.append(int(entry))
    return found


def survivors(token: str, *, within_s: float = 30.0) -> list[int]:
    """Host pids still named ``token`` once they are gone or ``within_s`` has passed (the kernel reaps asynchronously)."""
    deadline = time.monotonic() + within_s
    while (alive := processes_named(token)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive


def unavailable(name: str, reason: str, *, what: str = "sandbox") -> NoReturn:
    """Skip: ``name`` (a sandbox backend, or a store's database with ``what="store"``) cannot run here, or cannot
    give what the test needs; a failure instead when ``EVOLVE_REQUIRE_BACKENDS`` names it (scripts/test.sh sets it,
    so CI fails rather than skips)."""
    required = {b.strip() for b in os.environ.get("EVOLVE_REQUIRE_BACKENDS", "").split(",") if b.strip()}
    if name in required:
        pytest.fail(f"the {name} {what} is required here (EVOLVE_REQUIRE_BACKENDS) but cannot run: {reason}")
    pytest.skip(f"the {name} {what} cannot run on this machine: {reason}")
