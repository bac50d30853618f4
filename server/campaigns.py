"""``/campaigns``: start campaigns in the background, list them, stop and resume them, follow their events."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, status
from fastapi.responses import StreamingResponse

from evolve.config import CampaignConfig
from evolve.errors import ConfigError, StoreError
from evolve.reports import campaign_summary
from evolve.server.manager import CampaignManager
from evolve.server.problems import BuiltinProblems, find_problem
from evolve.server.schemas import CampaignCreate, CampaignOut, CampaignResume, errors
from evolve.server.security import GuardedRoute, Principal, audited, quota_for, require_read, still_admitted
from evolve.server.settings import ServerSettings
from evolve.store import CampaignRow, Store
from evolve.values import CampaignStatus

__all__ = ["campaign_out", "campaign_row", "confines", "router"]

router = APIRouter(tags=["campaigns"], route_class=GuardedRoute)
_EVENT_POLL_S = 0.25
_KEEPALIVE_S = 15.0
_RECHECK_S = 2.0  # how often a following stream checks that its caller's token is still valid


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def _manager(request: Request) -> CampaignManager:
    manager: CampaignManager = request.app.state.manager
    return manager


def campaign_row(request: Request, campaign_id: str) -> CampaignRow:
    """Raises: HTTPException 404 when there is no such campaign."""
    try:
        return _store(request).get_campaign(campaign_id)
    except StoreError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no campaign '{campaign_id}': GET /campaigns lists them") from None


def campaign_out(request: Request, row: CampaignRow, *, detail: bool = False) -> dict[str, Any]:
    return {**campaign_summary(_store(request), row, detail=detail), "running_here": _manager(request).is_running(row.id)}


def _check_endpoints(settings: ServerSettings, config: CampaignConfig) -> None:
    for i, spec in enumerate(config.models):
        if spec.api_base is not None and not any(spec.api_base.startswith(a) for a in settings.allowed_api_bases):
            raise ConfigError(f"models.{i}.api_base: {spec.api_base} is not an endpoint this server may call; "
                              "its operator lists allowed ones in EVOLVE_ALLOWED_API_BASES")


@router.get("/campaigns", response_model=list[CampaignOut], dependencies=[Depends(require_read)])
def list_campaigns(request: Request) -> list[dict[str, Any]]:
    """Every campaign, oldest first."""
    return [campaign_out(request, row) for row in _store(request).list_campaigns()]


def confines(request: Request, problem_id: str) -> bool:
    """Whether this server runs the evaluator of the problem with this fingerprint sandboxed: a submitted problem's (or
    all, by its setting), whatever a campaign's stored config says (one stored before submitted evaluators were
    sandboxed)."""
    settings: ServerSettings = request.app.state.settings
    builtins: BuiltinProblems = request.app.state.builtins
    return settings.sandbox_evaluators == "all" or problem_id not in builtins.fingerprints


def _owned(principal: Principal, row: CampaignRow, doing: str) -> None:
    """Raises: HTTPException 403 when ``principal`` may not act on ``row`` (a run token, another's campaign)."""
    if not principal.owns(row.created_by):
        whose = f"token '{row.created_by}'" if row.created_by else "the command line"
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"campaign {row.id} was started by {whose}; a run token may "
                                                       f"{doing} only its own campaigns (an admin may {doing} any)")


@router.post("/campaigns", response_model=CampaignOut, status_code=status.HTTP_201_CREATED, responses=errors(404, 429))
async def create_campaign(request: Request, body: CampaignCreate,
                          principal: Annotated[Principal, Depends(audited("run", "start"))]) -> dict[str, Any]:
    """Evaluate the problem's initial program, then run the campaign in the background (it outlives this request).

    It belongs to the token that started it; the token's limits (campaigns at once, evaluations in flight, model
    spend) are checked first and answered 429 naming the limit."""
    fields = body.model_dump()
    problem = find_problem(request, fields.pop("problem"))
    settings: ServerSettings = request.app.state.settings
    config = CampaignConfig.model_validate({**fields, "evaluator_sandbox": confines(request, problem.fingerprint())})
    _check_endpoints(settings, config)
    if config.executor == "ray":  # the operator's cluster, never one a client names
        if settings.ray_address is None:
            raise ConfigError("executor: this server runs evaluations on no Ray cluster (its operator sets "
                              "EVOLVE_RAY_ADDRESS to allow it); use warm or cold")
        config = config.model_copy(update={"ray_address": settings.ray_address})
    campaign_id = await _manager(request).start(problem, config, quota=quota_for(request, principal, principal.name))
    request.state.audit_target = campaign_id
    return campaign_out(request, campaign_row(request, campaign_id), detail=True)


@router.get("/campaigns/{campaign_id}", response_model=CampaignOut, dependencies=[Depends(require_read)], responses=errors(404))
def get_campaign(request: Request, campaign_id: str) -> dict[str, Any]:
    return campaign_out(request, campaign_row(request, campaign_id), detail=True)


@router.post("/campaigns/{campaign_id}/stop", response_model=CampaignOut, responses=errors(404, 409))
async def stop_campaign(request: Request, campaign_id: str,
                        principal: Annotated[Principal, Depends(audited("run", "stop"))]) -> dict[str, Any]:
    """Stop a running campaign; answers once it has stopped (what was in flight is cancelled, the rest is kept)."""
    _owned(principal, campaign_row(request, campaign_id), "stop")
    await _manager(request).stop(campaign_id)
    return campaign_out(request, campaign_row(request, campaign_id), detail=True)


@router.post("/campaigns/{campaign_id}/resume", response_model=CampaignOut, responses=errors(404, 409, 429))
async def resume_campaign(request: Request, campaign_id: str,
                          principal: Annotated[Principal, Depends(audited("run", "resume"))],
                          body: CampaignResume | None = None) -> dict[str, Any]:
    """Continue a stopped, interrupted, finished or budget-spent campaign, optionally with a new target or budgets."""
    row = campaign_row(request, campaign_id)
    _owned(principal, row, "resume")
    body = body or CampaignResume()
    budgets = {k: v for k, v in body.model_dump(exclude={"iterations"}).items() if k in body.model_fields_set}
    await _manager(request).resume(campaign_id, iterations=body.iterations, budgets=budgets,
                                   quota=quota_for(request, principal, row.created_by),
                                   confine=confines(request, row.problem_id))
    return campaign_out(request, campaign_row(request, campaign_id), detail=True)


_TERMINAL = {CampaignStatus.STOPPED, CampaignStatus.INTERRUPTED, CampaignStatus.FINISHED, CampaignStatus.BUDGET_SPENT,
             CampaignStatus.FAILED}


async def _event_stream(request: Request, campaign_id: str, after: int, follow: bool) -> AsyncIterator[bytes]:
    store, manager = _store(request), _manager(request)
    idle, checked = 0.0, time.monotonic()
    while True:
        if time.monotonic() - checked >= _RECHECK_S:
            if not await still_admitted(request, "read"):
                yield b'event: end\ndata: {"reason": "its token is no longer accepted (revoked)"}\n\n'
                return
            checked = time.monotonic()
        batch = await asyncio.to_thread(store.events, campaign_id, after_id=after, limit=500)
        for ev in batch:
            after = ev["id"]
            payload = json.dumps({"ts": ev["ts"], **ev["data"]}, allow_nan=False, default=str)
            yield f"id: {ev['id']}\nevent: {ev['kind']}\ndata: {payload}\n\n".encode()
        if batch:
            idle = 0.0
            continue
        running = manager.is_running(campaign_id)
        row = await asyncio.to_thread(store.get_campaign, campaign_id)
        if not follow or (not running and row.status in _TERMINAL):
            yield b"event: end\ndata: {}\n\n"
            return
        if await request.is_disconnected():
            return
        await asyncio.sleep(_EVENT_POLL_S)
        idle += _EVENT_POLL_S
        if idle >= _KEEPALIVE_S:
            idle = 0.0
            yield b": keep-alive\n\n"


@router.get(
    "/campaigns/{campaign_id}/events", dependencies=[Depends(require_read)], response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}},
                     "description": "server-sent events: created, started, program, migration, status, ... then 'end'"},
               **errors(404)},
)
async def campaign_events(
    request: Request, campaign_id: str,
    after: Annotated[int, Query(ge=0, le=2**62, description="only events after this id")] = 0,
    follow: Annotated[bool, Query(description="keep the stream open while the campaign runs")] = True,
    last_event_id: Annotated[str | None, Header(pattern=r"^[0-9]{1,18}$", description="set by EventSource on reconnect")] = None,
) -> StreamingResponse:
    """Live progress as server-sent events; the stream ends with an 'end' event once the campaign is no longer running."""
    campaign_row(request, campaign_id)
    start = max(after, int(last_event_id or 0))
    return StreamingResponse(_event_stream(request, campaign_id, start, follow), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
