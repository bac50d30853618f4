"""The CLI with real models: the embedded default, budgets, planted secrets, and no connection beyond the endpoint in any process."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from evolve.catalog import CATALOG, DEFAULT_MODEL
from evolve.diff import SearchReplace, render_diff
from evolve.llm.embedded import embedded_model_path
from evolve.llm.mutator import propose_edits
from evolve.sandbox.bwrap import bwrap_problem
from tests.conftest import QUADRATIC_EVALUATOR, QUADRATIC_PROGRAM, write_problem
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
@pytest.mark.timeout(900)  # the README's quickstart model: about 40 s a proposal on 2 cores, more under load
def test_with_no_key_a_run_uses_the_default_embedded_model_end_to_end(tmp_path: Path) -> None:
    run = evolve("run", "circle_packing", "--iterations", "3", "--db", "e.db", cwd=tmp_path, timeout=900)
    assert run.returncode == 0, run.stderr
    assert (f"model {DEFAULT_MODEL} is the embedded {CATALOG[DEFAULT_MODEL].title}, Apache-2.0, run in-process on the CPU "
            "(diff, compact prompts)") in run.stderr and "--model openai/gpt-4o-mini" in run.stderr
    assert f"model {DEFAULT_MODEL} here: " in run.stderr and "s per answer over 3 (reading prompts" in run.stderr
    with sqlite3.connect(tmp_path / "e.db") as conn:
        proposals = conn.execute("SELECT model, template FROM programs WHERE origin != 'initial'").fetchall()
        calls = conn.execute("SELECT prompt_tokens, completion_tokens, outcome FROM llm_calls").fetchall()
    assert len(proposals) == 3 and set(proposals) == {(DEFAULT_MODEL, "diff")}
    assert len(calls) >= 3 and all(p > 300 and c > 0 for p, c, outcome in calls if outcome != "timeout")
    status = json.loads(evolve("status", "--db", "e.db", "--json", cwd=tmp_path).stdout)[0]
    assert status["prompt_tokens"] > 3 * 300 and status["cost_usd"] == 0.0
    assert [(m["model"], m["proposals"]) for m in status["models"]] == [(DEFAULT_MODEL, 3)]


def test_a_gguf_file_of_ones_own_is_named_as_such_not_as_a_packaged_model(tmp_path: Path) -> None:
    path = tmp_path / "mine.gguf"
    path.symlink_to(embedded_model_path("smollm2"))
    run = evolve("run", "circle_packing", "--model", f"gguf:{path}", "--iterations", "1", "--db", "g.db", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    notice = next(line for line in run.stderr.splitlines() if line.startswith(f"model gguf:{path} is "))
    assert notice.startswith(f"model gguf:{path} is the GGUF file {path} (your own, not verified), run in-process")
    assert not any(m.title.split(" ")[0] in run.stderr for m in CATALOG.values())  # no packaged model is named


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


# ----------------------------------------------------------------------------------------- network audit
# Every process a campaign starts runs under strace: the controller (and the embedded model in it), each
# warm evaluator worker (`python -I -B -m evolve.evaluators.warm`, which no sitecustomize or audit hook can
# reach) and the evaluations it forks, each slot's zygote and the candidates it forks (bwrap, the harness). Each syscall that can send anything to an
# address is recorded with it; so is each execve, to show which programs were traced.
TRACED = "connect,sendto,sendmsg,sendmmsg,execve"
# Canaries: connection attempts planted in the trusted evaluator and in the candidate (outside its
# EVOLVE-BLOCK, so every child keeps it), to an AF_UNIX path that exists nowhere. Seeing them in the
# trace shows the trace reaches those processes; they are the only destinations not of evolve's making.
CANARY_EVALUATOR = "/nonexistent/evolve-audit/evaluator"
CANARY_CANDIDATE = "/nonexistent/evolve-audit/candidate"
CANARY = """
def _canary(path):
    import socket
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(path)
    except OSError:
        pass
    finally:
        s.close()
"""
AUDIT_EVALUATOR = CANARY + QUADRATIC_EVALUATOR.replace("def evaluate(candidate):\n",
                                                       f"def evaluate(candidate):\n    _canary({CANARY_EVALUATOR!r})\n")
AUDIT_PROGRAM = CANARY + f"_canary({CANARY_CANDIDATE!r})\n" + QUADRATIC_PROGRAM

# What a campaign executes, and nothing else: the controller, its evaluator workers, the confinement
# launcher (`/bin/sh` joining the cgroups, `setpriv` switching uid, `taskset`/`nice` without a CPU
# quota), bwrap with the sandbox's interpreter (the harness or zygote, or the start-up probe `-c pass`),
# `ldconfig -p` (ctypes.util.find_library, loading libseccomp) and `uname -p` (platform.processor(), in
# litellm's imports). An execve of anything else is a process the audit does not know about.
KNOWN_PROGRAMS = re.compile(
    r'^"[^"]*/(python3[.\d]*|python)", \[[^\]]*?"-m", "evolve(", "run"|\.evaluators\.(worker|warm)")'
    r'|^"/bin/sh", \["/bin/sh", "-c", "unset PWD OLDPWD; '
    r'|^"[^"]*/(setpriv|taskset|nice)", '
    r'|^"[^"]*/bwrap", '
    r'|^"[^"]*/(python3[.\d]*|python)", \["[^"]*", "-I", ("-B", "-c", "\\"\\"\\"Child-side harness|"-c", "pass")'
    r'|^"[^"]*/ldconfig", \["[^"]*", "-p"\]'
    r'|^"[^"]*/uname", \["uname", "-p"\]'
)
NSCD_SOCKET = "/var/run/nscd/socket"  # glibc's name-service cache: a local socket on this host, absent here
_ADDRESS = re.compile(r"\{sa_family=(AF_\w+), ([^{}]*)\}")
_SYSCALL = re.compile(r"^(\w+)\((.*)")


@dataclass(frozen=True)
class Destination:
    syscall: str
    family: str
    fields: str  # as strace prints them: 'sin_port=htons(8080), sin_addr=inet_addr("127.0.0.1")', 'sun_path="/x"'
    line: str

    @property
    def unix_path(self) -> str | None:
        match = re.search(r'sun_path=(@?"[^"]*")', self.fields)
        return json.loads(match.group(1).lstrip("@")) if match and self.family == "AF_UNIX" else None

    @property
    def inet(self) -> tuple[str, int] | None:
        port = re.search(r"sin6?_port=htons\((\d+)\)", self.fields)
        host = re.search(r'inet_addr\("([^"]+)"\)|inet_pton\(AF_INET6, "([^"]+)"', self.fields)
        if port is None or host is None:
            return None
        return host.group(1) or host.group(2), int(port.group(1))


@dataclass(frozen=True)
class Trace:
    programs: list[str]  # the argv of every execve that succeeded, as strace prints it
    destinations: list[Destination]

    def ran(self, fragment: str) -> int:
        return sum(fragment in argv for argv in self.programs)


def read_trace(folder: Path) -> Trace:
    programs, destinations = [], []
    for path in folder.iterdir():  # one file per traced process or thread
        for line in path.read_text(errors="replace").splitlines():
            match = _SYSCALL.match(line)
            if match is None:  # '<... resumed>' halves and exit notices carry no address
                continue
            name, rest = match.groups()
            if name == "execve":
                if line.rstrip().endswith("= 0"):
                    programs.append(rest)
                continue
            destinations += [Destination(name, family, fields, line) for family, fields in _ADDRESS.findall(rest)]
    return Trace(programs, destinations)


def allowed(d: Destination, endpoint: tuple[str, int] | None) -> bool:
    """Whether a destination is one a campaign may address: the configured endpoint, the kernel, or a canary."""
    if d.family == "AF_UNSPEC":  # connect(AF_UNSPEC) dissolves a datagram socket's association; it reaches nothing
        return d.syscall == "connect"
    if d.family == "AF_NETLINK":  # the kernel itself (nl_pid=0): bwrap configuring the sandbox's own loopback
        return "nl_pid=0," in d.fields
    if d.family == "AF_UNIX":  # the canaries, or the host's name-service cache, which setpriv asks about the run uid
        return d.unix_path in (CANARY_EVALUATOR, CANARY_CANDIDATE, NSCD_SOCKET)
    return endpoint is not None and d.inet == endpoint


def traced_campaign(tmp_path: Path, model_args: list[str], *, iterations: int,
                    endpoint: tuple[str, int] | None = None) -> Trace:
    """Run a campaign under ``strace -f`` (every process it starts); assert it worked and addressed only allowed places."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.fail("the network audit needs strace: scripts/install.sh --dev installs it (apt-get install strace)")
    folder = write_problem(tmp_path / "audit", program=AUDIT_PROGRAM, evaluator=AUDIT_EVALUATOR)
    sandbox = "bwrap" if bwrap_problem() is None else "process"  # a backend whose candidates are our descendants
    out = tmp_path / "trace"
    out.mkdir()
    result = subprocess.run(
        [strace, "-f", "-ff", "-qq", "--seccomp-bpf", "-e", "signal=none", "-s", "160", "-e", f"trace={TRACED}",
         "-o", str(out / "t"), sys.executable, "-m", "evolve", "run", str(folder), *model_args, "--iterations", str(iterations),
         "--sandbox", sandbox, "--db", "n.db", "-q"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, env=keyless_env(),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    trace = read_trace(out)
    # the trace covered every kind of process: the controller, the warm workers and the evaluations they fork,
    # the zygotes and the sandboxed candidates they fork
    assert trace.ran("-m\", \"evolve\", \"run\"") == 1, trace.programs
    workers = trace.ran("evolve.evaluators.warm")
    assert workers >= 1, trace.programs
    evaluator_canaries = sum(d.unix_path == CANARY_EVALUATOR for d in trace.destinations)
    candidate_canaries = sum(d.unix_path == CANARY_CANDIDATE for d in trace.destinations)
    assert evaluator_canaries >= 1 and candidate_canaries >= 1, "the trace did not reach the evaluator or the candidate"
    assert evaluator_canaries >= workers, "a worker's evaluations went untraced"
    if sandbox == "bwrap":
        assert trace.ran('/bwrap", ') >= workers
    unknown = [argv for argv in trace.programs if not KNOWN_PROGRAMS.match(argv)]
    assert not unknown, f"the campaign executed programs the audit does not know: {unknown}"
    refused = [d.line for d in trace.destinations if not allowed(d, endpoint)]
    assert not refused, f"addressed beyond the configured endpoint {endpoint}: {refused[:20]}"
    return trace


def test_a_mutator_campaign_addresses_nothing_in_any_process(tmp_path: Path) -> None:
    trace = traced_campaign(tmp_path, ["--model", "mutator"], iterations=4)
    assert not [d for d in trace.destinations if d.family in ("AF_INET", "AF_INET6")]


def test_a_campaign_on_an_openai_server_connects_only_to_it_in_any_process(tmp_path: Path) -> None:
    with serve(mutating_answer) as (base, server):
        endpoint = ("127.0.0.1", int(base.rsplit(":", 1)[1].split("/")[0]))
        trace = traced_campaign(tmp_path, ["--model", "openai/stub-model", "--api-base", base], iterations=4, endpoint=endpoint)
    assert len(server.log) >= 4  # litellm was imported and used
    connects = [d for d in trace.destinations if d.syscall == "connect" and d.inet == endpoint]
    assert len(connects) >= 1, "the trace saw the model calls"


def test_a_campaign_with_the_embedded_model_addresses_nothing_in_any_process(tmp_path: Path) -> None:
    config = tmp_path / "embedded.json"  # one short answer: the model is loaded and writes, which is what is audited
    config.write_text(json.dumps({"models": [{"name": "smollm2", "max_tokens": 48}], "llm_concurrency": 1}))
    trace = traced_campaign(tmp_path, ["--config", str(config)], iterations=1)
    with sqlite3.connect(tmp_path / "n.db") as conn:
        calls = conn.execute("SELECT model, completion_tokens FROM llm_calls").fetchall()
    assert [model for model, _ in calls] == ["smollm2"] and calls[0][1] > 0
    assert not [d for d in trace.destinations if d.family in ("AF_INET", "AF_INET6")]
    # llama.cpp runs in the controller's threads: nothing beyond KNOWN_PROGRAMS was executed


def test_models_lists_the_packaged_models_and_prepares_one_by_name(tmp_path: Path) -> None:
    listed = evolve("models", "--prepare", "smollm2", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert f"{DEFAULT_MODEL} (the default): {CATALOG[DEFAULT_MODEL].title}, Apache-2.0" in listed.stdout
    assert "smollm2: verified " in listed.stderr and all(name in listed.stdout for name in CATALOG)
    unknown = evolve("models", "--prepare", "gpt-5", cwd=tmp_path)
    assert unknown.returncode == 2 and unknown.stderr.strip().splitlines() == [
        f"error: unknown packaged model 'gpt-5': use one of {', '.join(CATALOG)}"]
