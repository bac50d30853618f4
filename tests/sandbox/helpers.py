"""Host-side checks for sandbox tests: what survived a run, seen from outside."""

from __future__ import annotations

import os

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
