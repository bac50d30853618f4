"""Owned scratch directories and the sweep of those whose owner is gone."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from evolve.scratch import owned_tempdir, stale_tempdirs, sweep_stale


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_only_directories_of_owners_that_are_gone_are_swept(scratch: Path) -> None:
    mine = owned_tempdir("campaign")
    assert mine.name.startswith(f"evolve-campaign-{os.getpid()}x") and mine.parent == scratch
    dead = scratch / f"evolve-eval-{_dead_pid()}xabc-1"
    dead.mkdir()
    (dead / "left.txt").write_text("a killed run's files")
    not_ours = [scratch / "evolve-notes", scratch / "other-123x1-a", scratch / f"evolve-eval-{_dead_pid()}-no-tag"]
    for path in not_ours:
        path.mkdir()
    assert stale_tempdirs() == [dead]
    assert sweep_stale() == 1
    assert not dead.exists() and mine.exists() and all(p.exists() for p in not_ours)


def test_a_name_that_cannot_be_a_pid_is_left_alone_and_stops_nothing(scratch: Path) -> None:
    # anyone who can write the temporary directory can make one: it must never stop an evaluator from starting
    for name in ("evolve-x-4294967296x0-a", "evolve-x-99999999999999999999999x0-a", "evolve-x-0x0-a"):
        (scratch / name).mkdir()
    assert stale_tempdirs() == [] and sweep_stale() == 0
    assert len(list(scratch.iterdir())) == 3
