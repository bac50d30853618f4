"""A user's own model, installed as a package with an ``evolve.models`` entry point, runs a campaign like a built-in.

The plug-in package is built here as a wheel (a zip with its dist-info: no build tool needed offline) and
installed by pip into a folder of its own; the CLI then runs with that folder on its path, as a user's
environment would have it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.cli.helpers import evolve
from tests.conftest import write_problem

PLUGIN = '''\
"""A tiny model plug-in: nudges the program's returned constant towards 3, and fails its first call (rate limit)."""

import re

from evolve import ModelPlugin
from evolve.llm import CallOutcome, ProviderError, RawAnswer

CALLS = []


class Nudger(ModelPlugin):
    async def call(self, messages, *, temperature, seed, max_tokens, timeout_s):
        CALLS.append(seed)
        if len(CALLS) == 1:
            raise ProviderError(CallOutcome.RATE_LIMITED, "slow down", retry_after_s=0.01)
        prompt = messages[-1]["content"]
        found = re.findall(r"return (-?[0-9.]+)", prompt)
        old = found[-1] if found else "0.5"
        new = float(old) + (0.25 if float(old) < 3 else -0.1)
        answer = f"Move closer.\\n<<<<<<< SEARCH\\n    return {old}\\n=======\\n    return {new:.4f}\\n>>>>>>> REPLACE\\n"
        return RawAnswer(text=answer, prompt_tokens=100, completion_tokens=20, cost_usd=0.001, finish_reason="stop")


def broken(spec):
    raise RuntimeError("no licence server")
'''


def _record(files: dict[str, bytes]) -> str:
    lines = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        lines.append(f"{name},sha256={digest},{len(data)}")
    return "\n".join(lines) + "\n"


def build_wheel(folder: Path) -> Path:
    dist = "evolve_nudger-0.1.dist-info"
    files = {
        "evolve_nudger.py": PLUGIN.encode(),
        f"{dist}/METADATA": b"Metadata-Version: 2.1\nName: evolve-nudger\nVersion: 0.1\n",
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{dist}/entry_points.txt": b"[evolve.models]\nnudger = evolve_nudger:Nudger\nbroken = evolve_nudger:broken\n",
    }
    wheel = folder / "evolve_nudger-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        zf.writestr(f"{dist}/RECORD", _record(files) + f"{dist}/RECORD,,\n")
    return wheel


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("plugin")
    target = tmp / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--target", str(target),
                    str(build_wheel(tmp))], check=True, timeout=120)
    return target


def with_plugin(path: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(path), *filter(None, [os.environ.get("PYTHONPATH")])])}


def test_an_installed_plugin_model_runs_a_campaign_with_retries_and_accounting(plugin_path: Path, tmp_path: Path) -> None:
    write_problem(tmp_path / "quad")
    run = evolve("run", "quad", "--model", "nudger", "--iterations", "6", "--islands", "1", "--llm-concurrency", "1",
                 "--eval-concurrency", "1", "--db", "p.db", "--max-cost-usd", "1", cwd=tmp_path, env=with_plugin(plugin_path),
                 timeout=300)
    assert run.returncode == 0, run.stderr
    assert "models: nudger (100%, diff)" in run.stderr
    status = json.loads(evolve("status", "--db", "p.db", "--json", cwd=tmp_path, env=with_plugin(plugin_path)).stdout)[0]
    assert status["status"] == "finished" and status["best_score"] > -(3 - 0.5) ** 2  # it improved on the initial program
    with sqlite3.connect(tmp_path / "p.db") as conn:
        calls = conn.execute("SELECT model, outcome, cost_usd, prompt_tokens FROM llm_calls ORDER BY id").fetchall()
    # the first request was refused (a rate limit) and retried, as for a built-in model; each answer priced and counted
    assert calls[0][:2] == ("nudger", "rate_limited") and all(c[:2] == ("nudger", "ok") for c in calls[1:])
    assert len(calls) == 7 and status["cost_usd"] == pytest.approx(0.006) and status["prompt_tokens"] == 600
    assert status["models"][0]["model"] == "nudger" and status["models"][0]["requests"] == 7


def test_a_plugin_is_listed_among_the_models_and_a_broken_one_says_which_package(plugin_path: Path, tmp_path: Path) -> None:
    write_problem(tmp_path / "quad")
    unknown = evolve("run", "quad", "--model", "nudgr", cwd=tmp_path, env=with_plugin(plugin_path))
    assert unknown.returncode == 2 and "nudger" in unknown.stderr and "unknown model 'nudgr'" in unknown.stderr
    broken = evolve("run", "quad", "--model", "broken", "--iterations", "2", "--db", "b.db", cwd=tmp_path,
                    env=with_plugin(plugin_path))
    assert broken.returncode == 2
    assert "the model plug-in 'broken' (evolve_nudger:broken) could not be loaded: RuntimeError: no licence server" in broken.stderr
    assert "Traceback" not in broken.stderr
