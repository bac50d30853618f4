"""Choosing a backend: auto takes the strongest that works and never falls back to process."""

from __future__ import annotations

import pytest

import evolve.sandbox.bwrap as bwrap_module
from evolve.errors import ConfigError, SandboxError
from evolve.sandbox import DESCRIPTIONS, resolve_backend
from evolve.sandbox.confine import cgroup_layout
from tests.sandbox.helpers import unavailable


def test_auto_prefers_bubblewrap_where_it_works() -> None:
    if (why := bwrap_module.bwrap_problem()) is not None:
        unavailable("bwrap", why)
    assert resolve_backend("auto") == "bwrap"
    assert "no network" in DESCRIPTIONS["bwrap"]


def test_auto_without_any_isolating_backend_stops_and_says_how_to_get_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bwrap_module, "bwrap_problem", lambda: "bubblewrap is not installed (apt-get install bubblewrap)")
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(SandboxError) as caught:
        resolve_backend("auto")
    message = str(caught.value)
    assert "apt-get install bubblewrap" in message and "DOCKER_HOST" in message and "--sandbox process" in message


def test_an_explicit_backend_that_cannot_run_is_an_error_not_a_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bwrap_module, "bwrap_problem", lambda: "bubblewrap is not installed (apt-get install bubblewrap)")
    with pytest.raises(SandboxError, match="the bwrap sandbox cannot run here: bubblewrap is not installed"):
        resolve_backend("bwrap")


def test_unknown_backend_names_the_choices() -> None:
    with pytest.raises(ConfigError, match="unknown sandbox backend 'chroot': choose one of auto, bwrap, docker, process"):
        resolve_backend("chroot")


def test_cgroups_are_used_where_the_host_offers_them() -> None:
    layout = cgroup_layout()
    if layout is None:  # the bwrap backend's per-run cgroup (memory across processes, pids, cpu) needs one
        unavailable("bwrap", "this host offers no writable cgroup with memory and pids controllers")
    assert layout.memory_parent.is_dir() and layout.pids_parent.is_dir()
