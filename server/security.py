"""Who may call what: tokens with roles, ownership, the audit trail of writes, cross-site writes, body sizes.

A request's *principal* comes from its bearer token: ``EVOLVE_API_TOKEN``
is an admin token named after it; a token made with ``evolve token create``
has its own name, role and limits, looked up by digest on every request, so
a revoked token is refused from the next request on. Roles, weakest first
(``evolve.store.ROLES``): ``read`` (the dashboard and every GET), ``run``
(submit problems; start, stop and resume its own campaigns), ``admin``
(any campaign, tokens, settings, the audit trail).

Without any token configured (loopback only) every caller is the
``loopback`` admin, as a single user's server on their own machine; writes
whose ``Origin`` is neither this server nor a configured CORS origin are
refused then, since a page of another site could post a form. Once a token
exists, writes need one everywhere, and reads need one beyond loopback.

Every write, and every refused attempt at one, is an audit event naming the
principal (never the token's value): ``audited(role, action)`` is the
dependency of each write endpoint, and records ok, refused or failed once the
endpoint has answered.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from fastapi import HTTPException, Request, Response, status
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from evolve.errors import EvolveError
from evolve.server.manager import Quota, QuotaError
from evolve.server.settings import ServerSettings, is_loopback
from evolve.store import ROLES, Store, TokenRow

__all__ = ["BodyLimit", "GuardedRoute", "Principal", "audited", "quota_for", "record", "require_admin", "require_read"]

log = logging.getLogger("evolve.server")

#: The principal of ``EVOLVE_API_TOKEN``, of a caller on a server with no tokens at all, of an anonymous loopback reader.
ENV_TOKEN, LOOPBACK, ANONYMOUS, UNKNOWN_TOKEN = "EVOLVE_API_TOKEN", "loopback", "anonymous", "unknown token"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts as: a token's name and role, and its limits (None: no limits)."""

    name: str
    role: str
    token: TokenRow | None = None

    def may(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)

    def owns(self, creator: str | None) -> bool:
        """Whether it may stop or resume what ``creator`` started (admins: anything)."""
        return self.role == "admin" or (creator is not None and creator == self.name)


def _settings(request: Request) -> ServerSettings:
    settings: ServerSettings = request.app.state.settings
    return settings


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def _bearer(request: Request) -> str | None:
    """The bearer token sent (an empty one too: it is refused like any wrong one), or None without one."""
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return given.strip() if scheme.lower() == "bearer" else None


def _same_origin(request: Request, settings: ServerSettings) -> bool:
    origin = request.headers.get("origin")
    if origin is None:
        return True  # not a browser's cross-site request (browsers send Origin on every cross-site POST)
    host = request.headers.get("host", "")
    return origin in settings.cors_origins or origin in (f"http://{host}", f"https://{host}")


def _loopback_host(request: Request) -> bool:
    """Whether the request names this host by a loopback address or 'localhost' (a rebound DNS name does not)."""
    try:
        name = urlsplit("//" + request.headers.get("host", "")).hostname
    except ValueError:
        return False
    return name is not None and is_loopback(name)


_UNAUTHORIZED = "send the header 'Authorization: Bearer <token>' (EVOLVE_API_TOKEN, or one from 'evolve token create')"


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"})


async def _authenticate(request: Request) -> Principal:
    """Who the request acts as: its token's principal, the loopback admin of a server without any token, or the
    anonymous reader.

    Raises:
        HTTPException: 401 for an unknown or revoked token, 403 for a token-less server addressed by a DNS name.
    """
    settings, store = _settings(request), _store(request)
    given = _bearer(request)
    open_server = settings.loopback and settings.api_token is None and not await asyncio.to_thread(store.has_tokens)
    if open_server:  # no token exists (possible only on loopback: beyond it, the last token revoked admits nobody)
        if not _loopback_host(request):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "this server has no token, so it answers only requests "
                                                           "addressed to localhost or 127.0.0.1 (not a DNS name)")
        return Principal(LOOPBACK, "admin")  # a bearer header is ignored here, as it always was
    if given is None:
        return Principal(ANONYMOUS, "read")
    if settings.api_token is not None and hmac.compare_digest(given.encode(errors="surrogatepass"),
                                                              settings.api_token.get_secret_value().encode()):
        return Principal(ENV_TOKEN, "admin")
    row = await asyncio.to_thread(store.token_for, given)
    if row is None:
        raise _unauthorized(f"unknown or revoked token: {_UNAUTHORIZED}")
    return Principal(row.name, row.role, row)


def _authorize(request: Request, principal: Principal, role: str) -> None:
    """Raises: HTTPException 401 for an anonymous caller where a token is needed, 403 for a role too weak or a
    cross-site write to a token-less server."""
    settings = _settings(request)
    if principal.name == ANONYMOUS and (role != "read" or settings.reads_need_token):
        raise _unauthorized(f"missing token: {_UNAUTHORIZED}")
    if principal.name == LOOPBACK and principal.token is None:
        if role != "read" and not _same_origin(request, settings):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "cross-site writes are refused: add the page's origin to "
                                                           "EVOLVE_CORS_ORIGINS, or set EVOLVE_API_TOKEN")
        return
    if not principal.may(role):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"token '{principal.name}' has role {principal.role}; this needs "
                                                       f"{role} (an admin makes one: evolve token create NAME --role {role})")


#: A caller without a valid token gets at most one refused event per action this often; the next one counts the rest.
REFUSAL_EVERY_S = 1.0
_refusals: dict[tuple[str, str, str], tuple[float, int]] = {}


def _throttled(request: Request, actor: str, action: str) -> tuple[bool, int]:
    """Whether to skip this refusal of a caller without a valid token (so no one floods the store), and how many were
    skipped before it."""
    key = (actor, action, request.client.host if request.client else "")
    now = time.monotonic()
    last, skipped = _refusals.get(key, (0.0, 0))
    if now - last < REFUSAL_EVERY_S:
        _refusals[key] = (last, skipped + 1)
        return True, skipped
    if len(_refusals) > 10_000:
        _refusals.clear()
    _refusals[key] = (now, 0)
    return False, skipped


def quota_for(request: Request, principal: Principal, creator: str | None) -> Quota:
    """The limits that hold for a campaign of ``creator`` (its token's, whoever acts on it; none for the CLI's or a
    server token's)."""
    token = principal.token if principal.token is not None and principal.name == creator else None
    if token is None and creator is not None:
        token = _store(request).token_named(creator)
    if token is None:
        return Quota(creator=creator)
    return Quota(creator=creator, max_campaigns=token.max_campaigns, max_evaluations=token.max_evaluations,
                 max_cost_usd=token.max_cost_usd)


async def record(request: Request, actor: str, action: str, *, outcome: str, target: str | None = None,
                 detail: str | None = None) -> None:
    """One audit event (a store failure is logged, never hides the answer). Refusals of callers without a valid token
    are throttled per client and action (``REFUSAL_EVERY_S``)."""
    if outcome == "refused" and actor in (ANONYMOUS, UNKNOWN_TOKEN):
        skip, skipped = _throttled(request, actor, action)
        if skip:
            return
        if skipped:
            detail = f"{detail} ({skipped} more refused in the second before)"
    try:
        await asyncio.to_thread(_store(request).add_audit, actor, action, target=target, outcome=outcome, detail=detail)
    except EvolveError:
        log.warning("could not record the audit event %s %s by %s", action, outcome, actor)


def _target(request: Request) -> str | None:
    target = getattr(request.state, "audit_target", None)
    if target is None:
        params = request.path_params
        target = params.get("campaign_id") or params.get("name") or params.get("problem_id")
    return None if target is None else str(target)


async def _admit(request: Request, role: str, action: str | None) -> Principal:
    """The request's principal (found once per request) if it may act with ``role``; a refused write is an audit event."""
    principal: Principal | None = getattr(request.state, "principal", None)
    try:
        if principal is None:
            principal = await _authenticate(request)
            request.state.principal = principal
        _authorize(request, principal, role)
    except HTTPException as exc:
        if action is not None:
            unknown = ANONYMOUS if _bearer(request) is None else UNKNOWN_TOKEN
            actor = principal.name if principal is not None else unknown
            await record(request, actor, action, outcome="refused", target=_target(request), detail=str(exc.detail))
        raise
    return principal


def _guard(role: str, action: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def mark(dependency: Callable[..., Any]) -> Callable[..., Any]:
        dependency.evolve_guard = (role, action)  # type: ignore[attr-defined]
        return dependency

    return mark


def audited(role: str, action: str) -> Callable[[Request], AsyncIterator[Principal]]:
    """The dependency of a write endpoint: its principal (refusing as ``_principal`` does), then its audit event.

    The endpoint may name what it made in ``request.state.audit_target`` (a new campaign's id).
    """

    @_guard(role, action)
    async def dependency(request: Request) -> AsyncIterator[Principal]:
        principal = await _admit(request, role, action)
        try:
            yield principal
        except HTTPException as exc:
            outcome = "refused" if exc.status_code in (401, 403, 429) else "failed"
            await record(request, principal.name, action, outcome=outcome, target=_target(request), detail=str(exc.detail))
            raise
        except Exception as exc:
            outcome = "refused" if isinstance(exc, QuotaError) else "failed"
            await record(request, principal.name, action, outcome=outcome, target=_target(request), detail=str(exc))
            raise
        await record(request, principal.name, action, outcome="ok", target=_target(request))

    return dependency


async def still_admitted(request: Request, role: str) -> bool:
    """Whether the request's caller, looked up afresh, may still act with ``role``: a long-lived answer (an event
    stream) asks while it runs, so a token revoked meanwhile ends it rather than reading on for hours."""
    try:
        _authorize(request, await _authenticate(request), role)
    except HTTPException:
        return False
    return True


@_guard("read")
async def require_read(request: Request) -> Principal:
    return await _admit(request, "read", None)


@_guard("admin")
async def require_admin(request: Request) -> Principal:
    return await _admit(request, "admin", None)


def _guard_of(dependant: Dependant) -> tuple[str, str | None] | None:
    """The strongest guard among a route's dependencies (a write's audited one over its router's read guard)."""
    found: list[tuple[str, str | None]] = []
    for dependency in dependant.dependencies:
        guard: tuple[str, str | None] | None = getattr(dependency.call, "evolve_guard", None) or _guard_of(dependency)
        if guard is not None:
            found.append(guard)
    return max(found, key=lambda g: (ROLES.index(g[0]), g[1] is not None), default=None)


class GuardedRoute(APIRoute):
    """A route that admits its principal before FastAPI reads the body: a caller the operation refuses gets 401 or
    403, never what the body's validation would say (the endpoint's dependency then finds the principal admitted)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        guard = _guard_of(self.dependant)
        if guard is None:
            return handler
        role, action = guard

        async def guarded(request: Request) -> Response:
            await _admit(request, role, action)
            return await handler(request)

        return guarded


_Receive = Callable[[], Awaitable[dict[str, Any]]]
_Send = Callable[[dict[str, Any]], Awaitable[None]]


class BodyLimit:
    """ASGI middleware: a body larger than ``limit`` bytes gets 413 before the application reads it all."""

    def __init__(self, app: Callable[[dict[str, Any], _Receive, _Send], Awaitable[None]], *, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict[str, Any], receive: _Receive, send: _Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _too_large(send, self.limit)
            return
        seen = 0
        started = refused = False

        async def counting_receive() -> dict[str, Any]:
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit and not started:
                    refused = True  # answer now; the application sees a client that went away
                    await _too_large(send, self.limit)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: dict[str, Any]) -> None:
            nonlocal started
            if refused:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counting_receive, guarded_send)


async def _too_large(send: _Send, limit: int) -> None:
    body = f'{{"detail": "request body larger than {limit} bytes (EVOLVE_MAX_BODY_BYTES)", "field": null}}'.encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
