"""``/tokens``, ``/audit``, ``/whoami``, ``/settings``: who may use this server, and what was done on it.

Tokens and the audit trail are the admin's; ``/whoami`` answers any reader
(the dashboard shows only what its token may do). A new token's value is in
the creation's answer only: the store keeps its digest.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status

from evolve.server.manager import ConflictError
from evolve.server.schemas import AuditOut, TokenCreate, TokenCreated, TokenOut, WhoAmI, errors
from evolve.server.security import GuardedRoute, Principal, audited, require_admin, require_read
from evolve.server.settings import ServerSettings
from evolve.store import Store
from evolve.store.access import TokenNameError

__all__ = ["router"]

router = APIRouter(tags=["access"], route_class=GuardedRoute)


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


@router.get("/whoami", response_model=WhoAmI)
def whoami(principal: Annotated[Principal, Depends(require_read)]) -> dict[str, Any]:
    """The caller's token (by name), its role and limits."""
    token = principal.token
    return {"name": principal.name, "role": principal.role, "may_run": principal.may("run"),
            "may_admin": principal.may("admin"), "max_campaigns": token.max_campaigns if token else None,
            "max_evaluations": token.max_evaluations if token else None, "max_cost_usd": token.max_cost_usd if token else None}


@router.get("/tokens", response_model=list[TokenOut], dependencies=[Depends(require_admin)])
async def list_tokens(request: Request) -> list[dict[str, Any]]:
    """Every token made here, revoked ones included (never their values)."""
    return [t.to_json() for t in await asyncio.to_thread(_store(request).list_tokens)]


@router.post("/tokens", response_model=TokenCreated, status_code=status.HTTP_201_CREATED, responses=errors(409))
async def create_token(request: Request, body: TokenCreate,
                       principal: Annotated[Principal, Depends(audited("admin", "token_create"))]) -> dict[str, Any]:
    """Make a token; the answer holds its value, this once."""
    del principal
    request.state.audit_target = body.name
    try:
        value, row = await asyncio.to_thread(_store(request).create_token, body.name, body.role,
                                             max_campaigns=body.max_campaigns, max_evaluations=body.max_evaluations,
                                             max_cost_usd=body.max_cost_usd)
    except TokenNameError as exc:
        raise ConflictError(str(exc)) from exc
    return {**row.to_json(), "token": value}


@router.post("/tokens/{name}/revoke", response_model=TokenOut, responses=errors(404))
async def revoke_token(request: Request, name: str,
                       principal: Annotated[Principal, Depends(audited("admin", "token_revoke"))]) -> dict[str, Any]:
    """Revoke a token: refused from the next request on. Idempotent."""
    del principal
    store = _store(request)
    if await asyncio.to_thread(store.token_named, name) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no token named '{name}': GET /tokens lists them")
    return (await asyncio.to_thread(store.revoke_token, name)).to_json()


@router.get("/audit", response_model=list[AuditOut], dependencies=[Depends(require_admin)])
async def audit_trail(
    request: Request,
    after: Annotated[int, Query(ge=0, le=2**62, description="only events after this id")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    actor: Annotated[str | None, Query(max_length=64, description="only this token's (by name)")] = None,
    newest: Annotated[bool, Query(description="the last `limit` events instead of the first")] = False,
) -> list[dict[str, Any]]:
    """Every write and refused attempt, oldest first: who (a token's name), when, what, on what, how it ended."""
    entries = await asyncio.to_thread(_store(request).audit_trail, after_id=after, limit=limit, actor=actor, newest=newest)
    return [e.to_json() for e in entries]


@router.get("/settings", dependencies=[Depends(require_admin)])
def server_settings(request: Request) -> dict[str, Any]:
    """How this server runs (no secret: the API token and database password are not shown)."""
    from evolve.store.store import shown_spec

    settings: ServerSettings = request.app.state.settings
    shown = settings.model_dump(mode="json", exclude={"api_token"})
    shown["db"] = shown_spec(settings.db)
    shown["api_token_set"] = settings.api_token is not None
    return shown
