"""/problems: built-ins are listed; a new problem is accepted (JSON or upload) only when it validates and evaluates."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from evolve.problem import builtin_problem_names
from tests.conftest import QUADRATIC_EVALUATOR, QUADRATIC_PROGRAM, QUADRATIC_YAML
from tests.server.conftest import quadratic_payload


def test_builtin_problems_are_listed_with_objective_and_known_best(client: TestClient) -> None:
    listed = {p["id"]: p for p in client.get("/problems").json()}
    assert set(builtin_problem_names()) <= set(listed)
    assert listed["circle_packing"]["builtin"] is True
    assert listed["circle_packing"]["objective"] == {"metric": "sum_radii", "direction": "maximize"}
    assert listed["circle_packing"]["known_best"]["value"] == pytest.approx(2.635983)
    assert listed["tsp_heuristic"]["stages"] == ["small", "full"] and listed["tsp_heuristic"]["held_out"] is True
    detail = client.get("/problems/matmul_rank").json()
    assert "EVOLVE-BLOCK-START" in detail["initial_program"] and "def evaluate" in detail["evaluator"]


def test_a_problem_submitted_as_json_is_stored_and_listed(client: TestClient) -> None:
    response = client.post("/problems", json=quadratic_payload())
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["name"] == "quadratic" and created["builtin"] is False
    assert created["id"] in {p["id"] for p in client.get("/problems").json()}
    detail = client.get(f"/problems/{created['id']}").json()
    assert detail["initial_program"] == QUADRATIC_PROGRAM and detail["evaluator"] == QUADRATIC_EVALUATOR
    assert detail["config"]["objective"] == {"metric": "value", "direction": "maximize"}


def test_a_problem_uploaded_as_files_gets_the_same_checks(client: TestClient) -> None:
    files: dict[str, tuple[str, str | bytes]] = {
        "problem_yaml": ("problem.yaml", QUADRATIC_YAML), "initial_program": ("initial_program.py", QUADRATIC_PROGRAM),
        "evaluator": ("evaluator.py", QUADRATIC_EVALUATOR),
    }
    response = client.post("/problems/upload", files=files)
    assert response.status_code == 201, response.text
    assert client.get(f"/problems/{response.json()['id']}").json()["name"] == "quadratic"
    broken = {**files, "initial_program": ("initial_program.py", "def solve(:\n")}
    response = client.post("/problems/upload", files=broken)
    assert response.status_code == 422 and response.json()["field"] == "initial_program"
    binary = {**files, "evaluator": ("evaluator.py", b"\xff\xfe\x00")}
    response = client.post("/problems/upload", files=binary)
    assert response.status_code == 422 and "not UTF-8" in response.json()["detail"]


def _config(**changes: Any) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(QUADRATIC_YAML)
    config.update(changes)
    return config


RAISING_EVALUATOR = QUADRATIC_EVALUATOR.replace('    x = candidate.call("solve")', '    x = candidate.call("solve")\n    1 / 0')
INVALID = [
    ("schema: unknown key", {"config": _config(objectiv={"metric": "value"})}, "config", "objectiv: unknown key"),
    ("schema: bad direction", {"config": _config(objective={"metric": "value", "direction": "up"})}, "config", "objective.direction"),
    ("schema: not a mapping", {"config": {"name": ["not", "a", "name"]}}, "config", "name"),
    ("missing markers", {"initial_program": "def solve():\n    return 0.5\n"}, "initial_program", "EVOLVE-BLOCK"),
    ("program syntax error", {"initial_program": QUADRATIC_PROGRAM.replace("return 0.5", "return (")}, "initial_program",
     "syntax error"),
    ("evaluator syntax error", {"evaluator": "def evaluate(candidate)\n    return {}\n"}, "evaluator", "syntax error"),
    ("no evaluate()", {"evaluator": "def score(candidate):\n    return {}\n"}, "evaluator", "must define a top-level function 'evaluate"),
    ("evaluator raises", {"evaluator": RAISING_EVALUATOR}, "evaluator", "ZeroDivisionError"),
    ("initial program fails", {"initial_program": QUADRATIC_PROGRAM.replace("return 0.5", "raise ValueError('broken start')")},
     "initial_program", "broken start"),
    ("initial program invalid", {"initial_program": QUADRATIC_PROGRAM.replace("return 0.5", "return 'text'")},
     "initial_program", "must return a number"),
    ("built-in name", {"config": _config(name="circle_packing")}, "config", "built-in problem"),
    ("oversized program", {"initial_program": QUADRATIC_PROGRAM + "#" * 300_000}, "initial_program", "at most"),
    ("unknown field", {"extra": 1}, "extra", "unknown field"),
]


@pytest.mark.parametrize(("changes", "field", "reason"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_problems_are_refused_with_the_field_and_the_reason(client: TestClient, changes: dict[str, Any], field: str,
                                                                     reason: str) -> None:
    response = client.post("/problems", json=quadratic_payload(**changes))
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["field"] == field and reason in body["detail"], body
    assert "Traceback" not in body["detail"]
    assert all(p["builtin"] for p in client.get("/problems").json())  # nothing was stored


def test_unknown_problem_is_404(client: TestClient) -> None:
    response = client.get("/problems/nope")
    assert response.status_code == 404 and "GET /problems" in response.json()["detail"]


def test_a_submitted_problem_may_not_ask_for_more_than_the_server_gives(client: TestClient) -> None:
    payload = quadratic_payload()
    payload["config"]["limits"] = {"timeout_s": 10, "memory_mb": 65536}
    response = client.post("/problems", json=payload)
    assert response.status_code == 422
    assert response.json()["field"] == "config"
    assert "limits.memory_mb" in response.json()["detail"] and "EVOLVE_MAX_PROBLEM_MEMORY_MB" in response.json()["detail"]
