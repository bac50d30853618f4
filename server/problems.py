"""``/problems``: list the built-in and submitted problems, submit new ones (JSON or an upload of the three files).

A problem is accepted only once everything the CLI checks holds, including
that its initial program evaluates successfully in the sandbox; otherwise
the answer is 422 naming the field and the reason.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Depends, File, HTTPException, Request, UploadFile, status

from evolve.checking import check_problem
from evolve.errors import ProblemError, StoreError
from evolve.problem import Problem, builtin_problem_names, resolve_problem
from evolve.server.schemas import MAX_CODE_CHARS, MAX_CONFIG_CHARS, ProblemCreate, ProblemDetail, ProblemOut, errors
from evolve.server.security import GuardedRoute, Principal, audited, quota_for, require_read
from evolve.server.settings import ServerSettings
from evolve.store import Store

__all__ = ["BuiltinProblems", "find_problem", "router"]

router = APIRouter(tags=["problems"], route_class=GuardedRoute)


class BuiltinProblems:
    """The problems shipped with evolve, loaded once."""

    def __init__(self) -> None:
        self.by_name = {name: resolve_problem(name) for name in builtin_problem_names()}
        self.fingerprints = {p.fingerprint() for p in self.by_name.values()}


def find_problem(request: Request, problem_id: str) -> Problem:
    """A built-in problem by name or a stored one by id.

    Raises:
        HTTPException: 404 when there is neither.
    """
    builtins: BuiltinProblems = request.app.state.builtins
    if problem_id in builtins.by_name:
        return builtins.by_name[problem_id]
    store: Store = request.app.state.store
    try:
        return store.load_problem(problem_id)
    except StoreError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no problem '{problem_id}': GET /problems lists them") from None


def _summary(problem_id: str, problem: Problem, *, builtin: bool, created_at: float | None = None) -> dict[str, Any]:
    c = problem.config
    held_out = c.held_out_stage()
    return {
        "id": problem_id, "name": c.name, "builtin": builtin, "description": c.description,
        "objective": c.objective.model_dump(mode="json", exclude_none=True),
        "features": [a.model_dump(mode="json") for a in c.features],
        "known_best": c.known_best.model_dump(mode="json") if c.known_best else None,
        "stages": [s.name for s in c.pipeline()], "held_out": held_out is not None, "created_at": created_at,
    }


@router.get("/problems", response_model=list[ProblemOut], dependencies=[Depends(require_read)])
def list_problems(request: Request) -> list[dict[str, Any]]:
    """Built-in problems first, then submitted ones, oldest first."""
    builtins: BuiltinProblems = request.app.state.builtins
    store: Store = request.app.state.store
    out = [_summary(name, p, builtin=True) for name, p in builtins.by_name.items()]
    for row in store.list_problems():
        if row.id not in builtins.fingerprints:
            out.append(_summary(row.id, store.load_problem(row.id), builtin=False, created_at=row.created_at))
    return out


@router.get("/problems/{problem_id}", response_model=ProblemDetail, dependencies=[Depends(require_read)],
            responses=errors(404))
def get_problem(request: Request, problem_id: str) -> dict[str, Any]:
    problem = find_problem(request, problem_id)
    builtins: BuiltinProblems = request.app.state.builtins
    return {
        **_summary(problem_id, problem, builtin=problem_id in builtins.by_name),
        "config": problem.config.model_dump(mode="json", exclude_none=True),
        "initial_program": problem.initial_program, "evaluator": problem.evaluator_source,
    }


def _within_server_limits(problem: Problem, settings: ServerSettings) -> None:
    """Raises: ProblemError when a stage asks for more than this server gives a submitted problem."""
    stages = list(problem.config.pipeline())
    if (held_out := problem.config.held_out_stage()) is not None:
        stages.append(held_out)
    for stage in stages:
        limits = stage.limits
        assert limits is not None, "pipeline() and held_out_stage() fill every stage's limits"
        for name, asked, most, variable in (("memory_mb", limits.memory_mb, settings.max_problem_memory_mb, "MEMORY_MB"),
                                            ("timeout_s", limits.timeout_s, settings.max_problem_timeout_s, "TIMEOUT_S"),
                                            ("processes", limits.processes, settings.max_problem_processes, "PROCESSES")):
            if asked > most:
                raise ProblemError(f"limits.{name}: stage '{stage.name}' asks for {asked:g}, more than the {most:g} this "
                                   f"server gives a submitted problem (its operator sets EVOLVE_MAX_PROBLEM_{variable})",
                                   field="config")


async def _accept(request: Request, principal: Principal, *, config_text: str, initial_program: str,
                  evaluator: str) -> dict[str, Any]:
    """Validate like the CLI, evaluate the initial program (its evaluator sandboxed), store the problem."""
    problem = Problem.from_sources(config_text=config_text, initial_program=initial_program, evaluator_source=evaluator,
                                   source="submitted problem")
    builtins: BuiltinProblems = request.app.state.builtins
    if problem.name in builtins.by_name:
        raise ProblemError(f"name '{problem.name}' is a built-in problem's; choose another name", field="config")
    _within_server_limits(problem, request.app.state.settings)
    with tempfile.TemporaryDirectory(prefix="evolve-check-") as tmp:
        checked = await check_problem(problem, workdir=Path(tmp), sandbox=request.app.state.settings.sandbox,
                                      slots=request.app.state.manager.evaluation(quota_for(request, principal, principal.name)),
                                      confine_evaluator=True)
    if checked.findings:
        raise ProblemError(checked.findings[0].message, field=checked.findings[0].part)
    store: Store = request.app.state.store
    problem_id = await asyncio.to_thread(store.save_problem, problem, created_by=principal.name)
    request.state.audit_target = problem_id
    return _summary(problem_id, problem, builtin=False)


@router.post("/problems", response_model=ProblemOut, status_code=status.HTTP_201_CREATED)
async def create_problem(request: Request, body: ProblemCreate,
                         principal: Annotated[Principal, Depends(audited("run", "submit"))]) -> dict[str, Any]:
    """Submit a problem as JSON. Its initial program is evaluated before it is accepted, with its evaluator in a
    sandbox of its own (as in every campaign on it)."""
    config_text = yaml.safe_dump(body.config, sort_keys=False, allow_unicode=True)
    if len(config_text) > MAX_CONFIG_CHARS:
        raise ProblemError(f"the config is {len(config_text)} characters as YAML; the limit is {MAX_CONFIG_CHARS}", field="config")
    return await _accept(request, principal, config_text=config_text, initial_program=body.initial_program,
                         evaluator=body.evaluator)


async def _read_upload(upload: UploadFile, field: str, limit: int) -> str:
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise ProblemError(f"{upload.filename or field} is larger than {limit} bytes", field=field)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProblemError(f"{upload.filename or field} is not UTF-8 text ({exc.reason} at byte {exc.start})", field=field) from exc


@router.post("/problems/upload", response_model=ProblemOut, status_code=status.HTTP_201_CREATED)
async def upload_problem(
    request: Request,
    principal: Annotated[Principal, Depends(audited("run", "submit"))],
    problem_yaml: Annotated[UploadFile, File(description="problem.yaml")],
    initial_program: Annotated[UploadFile, File(description="initial_program.py")],
    evaluator: Annotated[UploadFile, File(description="evaluator.py")],
) -> dict[str, Any]:
    """Submit a problem as the three files of a problem folder (multipart/form-data)."""
    return await _accept(
        request, principal,
        config_text=await _read_upload(problem_yaml, "problem_yaml", MAX_CONFIG_CHARS),
        initial_program=await _read_upload(initial_program, "initial_program", MAX_CODE_CHARS),
        evaluator=await _read_upload(evaluator, "evaluator", MAX_CODE_CHARS),
    )
