"""The process backend: limits, timeouts that kill the whole group, capped output, the result channel."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

from evolve.sandbox import ProcessSandbox, RunOutcome, SandboxLimits, decode_result
from evolve.sandbox.base import RunSpec


def run(code: str, function: str = "main", *, limits: SandboxLimits | None = None, args: list[object] | None = None) -> RunOutcome:
    spec = RunSpec(code=code, request=json.dumps({"function": function, "args": args or []}).encode(),
                   limits=limits or SandboxLimits(wall_s=10, cpu_s=10))
    return asyncio.run(ProcessSandbox().run(spec))


def test_result_comes_back_through_its_own_channel_not_stdout() -> None:
    outcome = run("def main(a):\n    print('{\"ok\": true, \"value\": 999}')\n    return a * 2\n", args=[21])
    assert outcome.result is not None and decode_result(outcome.result) == {"ok": True, "value": 42}
    assert b"999" in outcome.stdout


def test_numpy_arrays_round_trip_without_pickle() -> None:
    outcome = run("import numpy as np\ndef main():\n    return np.arange(6, dtype=np.float32).reshape(2, 3)\n")
    assert outcome.result is not None
    value = decode_result(outcome.result)["value"]
    assert value.shape == (2, 3) and value.dtype.name == "float32" and value[1, 2] == 5.0


def test_the_environment_is_empty_of_secrets(monkeypatch: object) -> None:
    os.environ["EVOLVE_TEST_SECRET"] = "sk-planted-secret-123"
    try:
        outcome = run("import os\ndef main():\n    return dict(os.environ)\n")
    finally:
        del os.environ["EVOLVE_TEST_SECRET"]
    assert outcome.result is not None
    env = decode_result(outcome.result)["value"]
    assert "EVOLVE_TEST_SECRET" not in env and "sk-planted" not in json.dumps(env)


def test_wall_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    marker = tmp_path / "survivor"
    child = f"import time; time.sleep(3); open({str(marker)!r}, 'w').write('x')"
    code = f"import time, subprocess, sys\ndef main():\n    subprocess.Popen([sys.executable, '-c', {child!r}])\n    time.sleep(60)\n"
    started = time.monotonic()
    outcome = run(code, limits=SandboxLimits(wall_s=1.0, cpu_s=5))
    assert outcome.timed_out and time.monotonic() - started < 5
    time.sleep(3.5)
    assert not marker.exists(), "a child of the candidate outlived the run"


def test_output_flood_is_capped_and_stopped() -> None:
    outcome = run("import sys\ndef main():\n    while True:\n        sys.stdout.write('x' * 65536)\n",
                  limits=SandboxLimits(wall_s=10, cpu_s=10, output_bytes=100_000))
    assert outcome.output_exceeded and len(outcome.stdout) + len(outcome.stderr) <= 100_000


def test_memory_limit_stops_a_huge_allocation() -> None:
    outcome = run("def main():\n    return len(bytearray(4 << 30))\n", limits=SandboxLimits(wall_s=10, cpu_s=10, memory_bytes=512 << 20))
    assert outcome.result is not None
    envelope = decode_result(outcome.result)
    assert envelope["ok"] is False and "MemoryError" in envelope["error"]


def test_cpu_limit_kills_a_busy_loop() -> None:
    outcome = run("def main():\n    while True:\n        pass\n", limits=SandboxLimits(wall_s=20, cpu_s=1))
    assert not outcome.timed_out and outcome.result is None and outcome.exit_code is not None and outcome.exit_code < 0


def test_candidate_exceptions_are_reported_with_a_traceback() -> None:
    outcome = run("def main():\n    raise ValueError('boom')\n")
    assert outcome.result is not None
    envelope = decode_result(outcome.result)
    assert envelope["ok"] is False and envelope["error"] == "ValueError: boom" and "main" in envelope["traceback"]


def test_the_work_directory_is_fresh_and_removed() -> None:
    outcome = run("import os\ndef main():\n    open('scratch.txt', 'w').write('x')\n    return [os.getcwd(), sorted(os.listdir('.'))]\n")
    assert outcome.result is not None
    cwd, listing = decode_result(outcome.result)["value"]
    assert listing == ["scratch.txt"] and not Path(cwd).exists()


def test_a_daemon_holding_stdout_does_not_stall_the_run() -> None:
    code = (
        "import os, time\n"
        "def main():\n"
        "    if os.fork() == 0:\n"
        "        os.setsid()\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(4)\n"
        "        os._exit(0)\n"
        "    return 7\n"
    )
    started = time.monotonic()
    outcome = run(code)
    assert outcome.result is not None and decode_result(outcome.result)["value"] == 7
    assert time.monotonic() - started < 3
