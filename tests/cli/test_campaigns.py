"""The CLI as a user runs it: real processes, a real database file."""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evolve.sandbox.bwrap import bwrap_problem
from tests.cli.helpers import evolve
from tests.conftest import QUADRATIC_YAML, write_problem


def test_problems_lists_the_builtins(tmp_path: Path) -> None:
    result = evolve("problems", "--json", cwd=tmp_path)
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["circle_packing"]["known_best"] == pytest.approx(2.635983)
    assert rows["function_minimization"]["direction"] == "minimize"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["run", "no_such_problem"], "unknown problem 'no_such_problem'"),
        (["run", "BADPROBLEM"], "problem.yaml: colour: unknown key"),
        (["status", "--db", "junk.db"], "not a database"),
        (["best", "--db", "missing.db"], "no database at missing.db"),
        (["run", "circle_packing", "--islands", "0"], "islands"),
        (["run", "circle_packing", "--iterations", "0"], "0 is not in the range 1<=x<=10000000"),
        (["run", "circle_packing", "--config", "latin1.yaml"], "cannot read the campaign config latin1.yaml"),
        (["run", "circle_packing", "--sandbox", "chroot"], "'chroot' is not one of 'auto', 'bwrap', 'docker', 'process'"),
        (["run", "circle_packing", "--model", "gpt4"], "unknown model 'gpt4'"),
        (["run", "circle_packing", "--max-cost-usd", "-1"], "max_cost_usd"),
        (["run", "circle_packing", "--model", "openai/x", "--api-base", "ftp://h"], "api_base"),
        (["run", "circle_packing", "--model", "openai/x", "--api-base", "http://127.0.0.1:9/v1", "--api-key-env", "NO_SUCH_VAR"],
         "NO_SUCH_VAR, which is not set"),
        (["run", "circle_packing", "--model", "gguf:/nowhere/m.gguf"], "no GGUF file at /nowhere/m.gguf"),
        (["run", "circle_packing", "--api-base", "http://127.0.0.1:9/v1"], "with api_base, name the model with its provider"),
        (["run", "circle_packing", "--config", "missing.yaml"], "cannot read the campaign config missing.yaml"),
        (["run", "circle_packing", "--config", "list.yaml"], "must be a mapping"),
        (["run", "circle_packing", "--config", "typo.yaml"], "itrations: unknown key (remove it or check its spelling)"),
        (["run", "circle_packing", "--model", "mutator", "--executor", "ray", "--ray-address", "127.0.0.1:1"],
         "no Ray cluster answers at 127.0.0.1:1"),
        (["status", "--db", "postgresql+psycopg://u:pw@127.0.0.1:x/db"], "not a database URL"),
        (["serve", "--host", "0.0.0.0"], "refusing to serve on 0.0.0.0 without a token"),
        (["serve", "--port", "70000"], "EVOLVE_PORT: Input should be less than or equal to 65535"),
        (["serve", "--db", "junk.db", "--port", "1"], "not a database"),
    ],
)
def test_bad_input_gives_one_line_and_exit_code_2(tmp_path: Path, args: list[str], fragment: str) -> None:
    write_problem(tmp_path / "bad", yaml=QUADRATIC_YAML + "colour: blue\n")
    (tmp_path / "junk.db").write_bytes(b"not a database at all" * 50)
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    (tmp_path / "typo.yaml").write_text("itrations: 5\n")
    (tmp_path / "latin1.yaml").write_bytes("iterations: 5 # caf\xe9\n".encode("latin-1"))
    result = evolve(*[str(tmp_path / "bad") if a == "BADPROBLEM" else a for a in args], cwd=tmp_path)
    assert result.returncode == 2
    assert fragment in result.stderr and "Traceback" not in result.stderr
    message = [line for line in result.stderr.strip().splitlines() if line and not line.startswith(("Usage:", "Try '"))]
    assert len(message) <= 3  # one message (terminal wrapping aside), after click's usage hint for bad options


def test_run_status_best_on_a_problem_folder(tmp_path: Path, db_spec: str) -> None:
    folder = write_problem(tmp_path / "quad")
    run = evolve("run", str(folder), "--model", "mutator", "--iterations", "12", "--seed", "3", "--islands", "2", "--db", db_spec,
                 cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    if bwrap_problem() is None:  # the default sandbox where bubblewrap works, and the CLI says so
        assert "sandbox: bwrap (bubblewrap: no network" in run.stderr
    status = json.loads(evolve("status", "--db", db_spec, "--json", cwd=tmp_path).stdout)
    assert status[0]["iterations_done"] == 12 and status[0]["programs"] == 13 and status[0]["status"] == "finished"
    assert status[0]["sandbox"] in {"bwrap", "docker"}
    assert status[0]["owner"].split(":")[0] == socket.gethostname() and status[0]["lease_expires"] is None  # done: no lease
    assert status[0]["limits"] == {"timeout_s": 10.0, "cpu_s": 10, "memory_mb": 512, "processes": 32, "output_bytes": 1 << 20,
                                  "num_cpus": 1.0, "num_gpus": 0.0}
    table = evolve("status", "--db", db_spec, cwd=tmp_path).stdout
    assert "limits: 10 s wall, 10 s CPU, 512 MB, 32 processes" in table
    best = evolve("best", "--db", db_spec, "--json", "--out", "best.py", cwd=tmp_path)
    data = json.loads(best.stdout)
    assert data["score"] == status[0]["best_score"] and "def solve" in data["code"]
    assert (tmp_path / "best.py").read_text() == data["code"]


def test_ctrl_c_stops_cleanly_and_the_campaign_can_resume(tmp_path: Path) -> None:
    folder = write_problem(tmp_path / "quad")
    db = tmp_path / "c.db"
    proc = subprocess.Popen([sys.executable, "-m", "evolve", "run", str(folder), "--model", "mutator", "--iterations", "100000",
                             "--db", str(db), "-q"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    done = 0
    while time.monotonic() < deadline and done < 5:
        time.sleep(0.2)
        try:
            with sqlite3.connect(db) as conn:
                done = conn.execute("SELECT COALESCE(MAX(iterations_done), 0) FROM campaigns").fetchone()[0]
        except sqlite3.OperationalError:
            continue
    proc.send_signal(signal.SIGINT)
    stdout, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "evolve resume" in stdout
    status = json.loads(evolve("status", "--db", str(db), "--json", cwd=tmp_path).stdout)[0]
    assert status["status"] == "stopped" and status["programs"] == status["iterations_done"] + 1


def test_each_model_flag_gets_its_own_models_settings() -> None:
    """--model smollm2 gets smollm2's catalog settings, a hosted model the plain defaults: never the default model's."""
    from evolve.catalog import CATALOG
    from evolve.cli.campaigns import _model_specs
    from evolve.config import CampaignConfig

    specs = _model_specs(("smollm2", "openai/gpt-4o-mini"), None, None, None, CampaignConfig())
    assert specs is not None
    small, hosted = specs
    assert (small.mode, small.max_tokens) == (CATALOG["smollm2"].mode, CATALOG["smollm2"].max_tokens) == ("rewrite", 768)
    assert (hosted.mode, hosted.max_tokens, hosted.top_k, hosted.temperature) == ("diff", 4096, None, 0.8)
