"""The archive and its programs: pages, one program, best, lineage, the MAP-Elites map, the Pareto front."""

from __future__ import annotations

import asyncio
import base64
import binascii
import difflib
import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status

from evolve.errors import StoreError
from evolve.reports import held_out_score, recorded_held_out
from evolve.server.campaigns import campaign_row, confines
from evolve.server.schemas import ArchiveOut, BestOut, ChildrenOut, LineageOut, ParetoOut, ProgramDetail, ProgramPage, errors
from evolve.server.security import GuardedRoute, require_read
from evolve.store import PageKey, ProgramOrder, Store
from evolve.values import EvalStatus, Program

__all__ = ["parent_diff", "program_or_404", "router"]

router = APIRouter(tags=["archive"], route_class=GuardedRoute, dependencies=[Depends(require_read)])


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def _summary(p: Program) -> dict[str, Any]:
    return {
        "id": p.id, "parent_id": p.parent_id, "island": p.island, "generation": p.generation, "iteration": p.iteration,
        "origin": p.origin, "status": p.status, "score": p.score, "stage": p.stage, "cell": p.cell, "model": p.model,
        "created_at": p.created_at,
    }


def parent_diff(store: Store, p: Program) -> str | None:
    """The unified diff from the program's parent to it (None for the initial program)."""
    if p.parent_id is None:
        return None
    parent = store.get_program(p.parent_id)
    return "".join(difflib.unified_diff(parent.code.splitlines(keepends=True), p.code.splitlines(keepends=True),
                                        fromfile=f"program {parent.id}", tofile=f"program {p.id}"))


def _detail(store: Store, p: Program) -> dict[str, Any]:
    return {
        **_summary(p), "campaign_id": p.campaign_id, "code": p.code, "diff": parent_diff(store, p), "model_edit": p.diff,
        "metrics": p.metrics, "features": p.features, "artifacts": p.artifacts, "template": p.template,
        "eval_seconds": p.eval_seconds, "llm_seconds": p.llm_seconds, "node": p.node, "children": store.children_ids(p.id),
    }


def program_or_404(store: Store, program_id: str) -> Program:
    try:
        return store.get_program(program_id)
    except StoreError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no program '{program_id}'") from None


def _encode_cursor(key: PageKey, order: ProgramOrder, descending: bool) -> str:
    raw = json.dumps([order.value, descending, key.value, key.iteration]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, order: ProgramOrder, descending: bool) -> PageKey:
    bad = HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "cursor: not a cursor of this listing; pass back next_cursor as it came, "
                        "with the same sort and order")
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise bad from None
    if not (isinstance(data, list) and len(data) == 4 and data[0] == order.value and data[1] is descending
            and (data[2] is None or isinstance(data[2], (int, float))) and isinstance(data[3], int)):
        raise bad
    return PageKey(value=data[2], iteration=data[3])


@router.get("/campaigns/{campaign_id}/programs", response_model=ProgramPage, responses=errors(404))
def list_programs(
    request: Request, campaign_id: str,
    sort: Annotated[ProgramOrder, Query(description="time: by iteration; score: best first when descending")] = ProgramOrder.TIME,
    order: Annotated[Literal["asc", "desc"], Query()] = "desc",
    island: Annotated[int | None, Query(ge=0, le=1024)] = None,
    status_: Annotated[EvalStatus | None, Query(alias="status")] = None,
    generation: Annotated[int | None, Query(ge=0, le=2**31)] = None,
    cursor: Annotated[str | None, Query(max_length=400)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """A page of a campaign's programs; follow ``next_cursor`` for the next one."""
    campaign_row(request, campaign_id)
    descending = order == "desc"
    after = _decode_cursor(cursor, sort, descending) if cursor else None
    page, key = _store(request).page_programs(campaign_id, order=sort, descending=descending, after=after, limit=limit,
                                              island=island, status=status_, generation=generation)
    return {"items": [_summary(p) for p in page], "next_cursor": _encode_cursor(key, sort, descending) if key else None}


@router.get("/programs/{program_id}", response_model=ProgramDetail, responses=errors(404))
def get_program(request: Request, program_id: str) -> dict[str, Any]:
    """A program with its code, the diff against its parent, metrics, features, artifacts, origin, parent and children."""
    store = _store(request)
    return _detail(store, program_or_404(store, program_id))


@router.get("/programs/{program_id}/children", response_model=ChildrenOut, responses=errors(404))
def children(request: Request, program_id: str,
             limit: Annotated[int, Query(ge=1, le=500)] = 200) -> dict[str, Any]:
    """The programs proposed from this one, in iteration order (the first ``limit``), and how many there are."""
    store = _store(request)
    program_or_404(store, program_id)
    ids = store.children_ids(program_id)
    found = store.get_programs(ids[:limit])
    return {"items": [_summary(found[i]) for i in ids[:limit]], "total": len(ids)}


@router.get("/campaigns/{campaign_id}/best", response_model=BestOut, responses=errors(404))
async def best_program(
    request: Request, campaign_id: str,
    held_out: Annotated[bool, Query(description="score the best program on the held-out instances (cached once done)")] = False,
) -> dict[str, Any]:
    """The best program; with ``held_out=true`` also its score on the problem's held-out instances."""
    row = campaign_row(request, campaign_id)
    store = _store(request)
    if row.best_program_id is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"campaign {campaign_id} has no valid program yet")
    best = store.get_program(row.best_program_id)
    if held_out:  # an evaluation like any other of this server's: under its cap, a submitted evaluator sandboxed
        async with request.app.state.manager.slots:
            found = await asyncio.to_thread(held_out_score, store, row, store.load_problem(row.problem_id), best,
                                            confine=confines(request, row.problem_id))
    else:
        found = recorded_held_out(store, campaign_id, best.id)
    report = found.to_json() if found else None
    return {"program": _detail(store, best), "held_out": report}


@router.get("/campaigns/{campaign_id}/lineage/{program_id}", response_model=LineageOut, responses=errors(404))
def lineage(request: Request, campaign_id: str, program_id: str) -> dict[str, Any]:
    """The program's ancestors, from the initial program down to it."""
    campaign_row(request, campaign_id)
    chain = _store(request).lineage(program_id)
    if not chain or chain[-1].campaign_id != campaign_id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no program '{program_id}' in campaign {campaign_id}")
    return {"items": [_summary(p) for p in chain]}


@router.get("/campaigns/{campaign_id}/archive", response_model=ArchiveOut, responses=errors(404))
def archive(request: Request, campaign_id: str) -> dict[str, Any]:
    """Every filled MAP-Elites cell of every island: its coordinates (bins along the axes), elite and score."""
    row = campaign_row(request, campaign_id)
    store = _store(request)
    problem = store.load_problem(row.problem_id)
    islands: dict[int, list[dict[str, Any]]] = {i: [] for i in range(row.config.island_count)}
    cells = store.archive_cells(campaign_id)
    axes = problem.config.features
    # a CVT archive's cells (evolve.cvt) are centroids: the map places each elite by its features on the problem's axes
    learned = [c.program_id for c in cells if not c.cell.replace(",", "").isdigit()]
    features = {pid: p.features for pid, p in store.get_programs(learned).items()}
    for cell in cells:
        if cell.program_id in features:
            coordinates = [axis.bin(features[cell.program_id].get(axis.name, axis.min)) for axis in axes]
        else:
            coordinates = [int(x) for x in cell.cell.split(",")] if axes else []
        islands.setdefault(cell.island, []).append({
            "cell": cell.cell, "coordinates": coordinates, "elite_id": cell.program_id, "score": cell.score,
        })
    return {"axes": [a.model_dump(mode="json") for a in problem.config.features],
            "islands": [{"island": i, "cells": cells} for i, cells in sorted(islands.items())]}


@router.get("/campaigns/{campaign_id}/pareto", response_model=ParetoOut, responses=errors(404))
def pareto(request: Request, campaign_id: str) -> dict[str, Any]:
    """The campaign's Pareto front over the problem's objectives (the single objective when it declares none)."""
    row = campaign_row(request, campaign_id)
    store = _store(request)
    objectives = store.load_problem(row.problem_id).config.pareto_objectives()
    front = store.pareto_front(campaign_id, objectives)
    return {"objectives": [o.model_dump(mode="json", exclude_none=True) for o in objectives],
            "items": [_detail(store, p) for p in front]}
