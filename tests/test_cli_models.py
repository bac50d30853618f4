"""The CLI with real models: the embedded default, budgets, planted secrets, and no network beyond loopback."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from evolve.diff import SearchReplace, render_diff
from evolve.llm.mutator import propose_edits
from tests.conftest import write_problem
from tests.llm.openai_server import serve
from tests.test_campaign_models import mutating_answer

OPENAI_KEY = "sk-planted-openai-key-000000000000"
SERVER_KEY = "planted-server-key-123456789"


def keyless_env(**extra: str) -> dict[str, str]:
    """This process's environment without any credential, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not any(w in k.upper() for w in ("KEY", "TOKEN", "SECRET"))}
    return {**env, **extra}


def evolve(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "evolve", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=env or keyless_env())


@pytest.mark.slow
def test_with_no_key_a_run_uses_the_embedded_model_end_to_end(tmp_path: Path) -> None:
    run = evolve("run", "circle_packing", "--iterations", "20", "--db", "e.db", cwd=tmp_path, timeout=900)
    assert run.returncode == 0, run.stderr
    assert "model smollm2 is the embedded SmolLM2-135M-Instruct" in run.stderr and "--model openai/gpt-4o-mini" in run.stderr
    with sqlite3.connect(tmp_path / "e.db") as conn:
        proposals = conn.execute("SELECT model, template FROM programs WHERE origin != 'initial'").fetchall()
        calls = conn.execute("SELECT prompt_tokens, completion_tokens, outcome FROM llm_calls").fetchall()
    assert len(proposals) == 20 and set(proposals) == {("smollm2", "rewrite")}
    assert len(calls) >= 20 and all(p > 300 and c > 0 for p, c, outcome in calls if outcome != "timeout")
    status = json.loads(evolve("status", "--db", "e.db", "--json", cwd=tmp_path).stdout)[0]
    assert status["prompt_tokens"] > 20 * 300 and status["cost_usd"] == 0.0
    assert [(m["model"], m["proposals"]) for m in status["models"]] == [("smollm2", 20)]


def test_a_token_budget_stops_a_run_and_resume_takes_a_larger_one(tmp_path: Path) -> None:
    folder = write_problem(tmp_path / "quad")
    run = evolve("run", str(folder), "--model", "mutator", "--max-tokens", "3000", "--iterations", "500", "--db", "b.db", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "token budget reached" in run.stdout and "--max-tokens N" in run.stdout
    first = json.loads(evolve("status", "--db", "b.db", "--json", cwd=tmp_path).stdout)[0]
    assert first["status"] == "budget_spent" and first["budgets"]["max_tokens"] == 3000
    assert 3000 <= first["prompt_tokens"] + first["completion_tokens"] < 6000 and first["iterations_done"] < 500
    table = evolve("status", "--db", "b.db", cwd=tmp_path).stdout
    assert "budgets: max_tokens 3000" in table and "model mutator (diff):" in table
    again = evolve("resume", "--db", "b.db", "--max-tokens", "6000", "-q", cwd=tmp_path)
    assert again.returncode == 0 and "spent" in again.stderr
    second = json.loads(evolve("status", "--db", "b.db", "--json", cwd=tmp_path).stdout)[0]
    assert second["status"] == "budget_spent" and second["iterations_done"] > first["iterations_done"]
    assert 6000 <= second["prompt_tokens"] + second["completion_tokens"] < 9000


def environment_dumping_answer(body: dict[str, Any]) -> str:
    """Edits like a model would, and makes the candidate print its whole environment to stderr (which is stored)."""
    prompt = "\n".join(m["content"] for m in body["messages"])
    edits = propose_edits(prompt.split("```python\n")[-1].split("```")[0], np.random.default_rng(len(prompt)))
    first = edits[0]
    dump = "    __import__('sys').stderr.write(repr(dict(__import__('os').environ)) + open('/proc/self/environ').read())\n"
    return render_diff([SearchReplace(first.search, dump + first.replace), *edits[1:]])


def test_planted_keys_reach_no_output_store_prompt_or_sandbox(tmp_path: Path) -> None:
    folder = write_problem(tmp_path / "quad")
    env = keyless_env(OPENAI_API_KEY=OPENAI_KEY, EVOLVE_TEST_SERVER_KEY=SERVER_KEY)
    with serve(environment_dumping_answer, faults={"server_error": 0.3, "rate_limit": 0.1}, retry_after="0.1", echo_auth=True,
               seed=5) as (base, server):
        config = tmp_path / "c.yaml"
        config.write_text(json.dumps({"models": [{"name": "openai/stub", "api_base": base, "api_key_env": "EVOLVE_TEST_SERVER_KEY",
                                                  "retry_base_s": 0.05}]}))
        run = evolve("run", str(folder), "--config", str(config), "--iterations", "8", "--db", "s.db", cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stderr
    assert {e.auth for e in server.log} == {f"Bearer {SERVER_KEY}"}  # the named key went where it was meant to, nowhere else
    assert server.faults_seen().get("server_error")  # errors echoed the key back
    outputs = [run.stdout, run.stderr]
    for args in (["status", "--json"], ["status"], ["best", "--json"]):
        result = evolve(*args, "--db", "s.db", cwd=tmp_path, env=env)
        outputs += [result.stdout, result.stderr]
    with sqlite3.connect(tmp_path / "s.db") as conn:
        stderr_dumps = [r[0] for r in conn.execute("SELECT artifacts FROM programs") if "environ" in r[0] or "PATH" in r[0]]
    assert stderr_dumps, "the candidates' environment dumps were stored, so the sandbox environment is searched too"
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("s.db*"))
    prompts = json.dumps([e.body for e in server.log])
    for secret in (OPENAI_KEY, SERVER_KEY):
        assert all(secret not in text for text in outputs)
        assert secret.encode() not in stored
        assert secret not in prompts
    assert b"[redacted]" in stored  # the echoes were there, and were scrubbed


AUDIT = """
import json, socket, sys
log = open(sys.argv[1], "w")
def hook(event, args):
    if event == "socket.connect":
        sock, address = args
        log.write(json.dumps({"event": event, "family": int(sock.family), "address": str(address)}) + "\\n")
    elif event == "socket.getaddrinfo":
        log.write(json.dumps({"event": event, "host": str(args[0])}) + "\\n")
    log.flush()
sys.addaudithook(hook)
from evolve.cli import main
sys.argv = ["evolve", *sys.argv[2:]]
main()
"""


def test_importing_and_running_a_campaign_opens_no_connection_beyond_loopback(tmp_path: Path) -> None:
    folder = write_problem(tmp_path / "quad")
    events = tmp_path / "sockets.jsonl"
    with serve(mutating_answer) as (base, server):
        result = subprocess.run(
            [sys.executable, "-c", AUDIT, str(events), "run", str(folder), "--model", "openai/stub-model", "--api-base", base,
             "--iterations", "4", "--db", "n.db", "-q"],
            cwd=tmp_path, capture_output=True, text=True, timeout=300, env=keyless_env(),
        )
    assert result.returncode == 0, result.stderr
    assert len(server.log) >= 4  # litellm was imported and used
    seen = [json.loads(line) for line in events.read_text().splitlines()]
    connects = [e for e in seen if e["event"] == "socket.connect"]
    assert connects, "the audit hook saw the model calls"
    for e in connects:
        assert e["family"] == 1 or e["address"].startswith(("('127.", "('::1'")), e  # AF_UNIX or loopback only
    assert all(e["host"] in ("127.0.0.1", "localhost", "::1", "None") for e in seen if e["event"] == "socket.getaddrinfo"), seen
