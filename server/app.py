"""The FastAPI application: built by ``create_app(settings)``, served by ``evolve serve`` with uvicorn.

At start-up the store is opened (and migrated) and campaigns left running by
a server that is gone are marked interrupted; at shutdown the running
campaigns are stopped and marked interrupted, ready to resume.

Errors are JSON ``{"detail": ..., "field": ...}``: 422 for invalid input
(naming the field), 401/403 for missing rights, 404, 409 for a request that
does not fit a campaign's state, 413 for a body over the limit, 503 when the
store or the sandbox fails. No traceback or secret reaches a client; an
unexpected failure is logged and answered with a plain 500.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator, MutableMapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match

from evolve import __version__
from evolve.errors import ConfigError, EvolveError, ProblemError, SandboxError, StoreError
from evolve.secrets import redact
from evolve.server import campaigns, problems, programs, tokens
from evolve.server.dashboard import install_dashboard
from evolve.server.manager import CampaignManager, ConflictError, QuotaError
from evolve.server.problems import BuiltinProblems
from evolve.server.schemas import COMMON_ERRORS
from evolve.server.security import BodyLimit
from evolve.server.settings import ServerSettings
from evolve.store import Store

__all__ = ["create_app"]

log = logging.getLogger("evolve.server")


def _error(code: int, detail: str, field: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    # the field is quoted from the request too (an unknown key is named by itself): redacted like the message
    return JSONResponse({"detail": redact(detail), "field": redact(field) if field is not None else None}, status_code=code,
                        headers=headers)


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    parts, first = [], None
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
        name = ".".join(loc) or "body"
        first = first or name
        msg = "unknown field (remove it or check its spelling)" if err.get("type") == "extra_forbidden" else err.get("msg", "invalid")
        parts.append(f"{name}: {msg}")
    return "; ".join(parts) or "invalid request", first


def _flat(routes: Sequence[BaseRoute]) -> Iterator[BaseRoute]:
    """Every route, those of included routers too (FastAPI 0.16x wraps each included router; none has a prefix here)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _flat(inner.routes)
        else:
            yield route


def _allowed_methods(app: FastAPI, scope: MutableMapping[str, Any]) -> list[str]:
    """The methods of the routes for this path: of its literal routes where it has some (``/problems/upload`` is not
    ``GET /problems/{problem_id}``'s), else of every route whose template matches."""
    matching = [r for r in _flat(app.router.routes)
                if isinstance(r, APIRoute) and r.matches({**scope, "method": "GET"})[0] is not Match.NONE]
    literal = [r for r in matching if r.path == scope.get("path")]
    methods: set[str] = set()
    for route in literal or matching:
        methods |= (route.methods or set()) - {"HEAD"}
    return sorted(methods)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        detail, field = _validation_message(exc)
        return _error(status.HTTP_422_UNPROCESSABLE_CONTENT, detail, field)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == status.HTTP_405_METHOD_NOT_ALLOWED:  # Starlette lists only the first matching route's methods
            allowed = _allowed_methods(app, request.scope)
            headers["Allow"] = ", ".join(allowed)
            return _error(exc.status_code, f"{request.method} is not allowed here; use {' or '.join(allowed)}", headers=headers)
        detail = str(exc.detail)
        if exc.status_code == status.HTTP_400_BAD_REQUEST:
            detail = f"{detail}: send a JSON object with Content-Type: application/json (multipart/form-data for /problems/upload)"
        return _error(exc.status_code, detail, headers=headers or None)

    @app.exception_handler(ProblemError)
    async def _problem(_: Request, exc: ProblemError) -> JSONResponse:
        return _error(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc), exc.field)

    @app.exception_handler(ConflictError)
    async def _conflict(_: Request, exc: ConflictError) -> JSONResponse:
        return _error(status.HTTP_409_CONFLICT, str(exc))

    @app.exception_handler(QuotaError)
    async def _quota(_: Request, exc: QuotaError) -> JSONResponse:
        return _error(status.HTTP_429_TOO_MANY_REQUESTS, str(exc), str(exc).split(":", 1)[0].removeprefix("limit "))

    @app.exception_handler(EvolveError)
    async def _evolve(_: Request, exc: EvolveError) -> JSONResponse:
        if isinstance(exc, ConfigError):
            field = str(exc).split(":", 1)[0] if ":" in str(exc) else None
            return _error(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc), field)
        if isinstance(exc, (StoreError, SandboxError)):
            log.warning("request failed: %s", exc)
            return _error(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc))
        log.warning("request failed: %s", exc)
        return _error(status.HTTP_500_INTERNAL_SERVER_ERROR, str(exc))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        return _error(status.HTTP_500_INTERNAL_SERVER_ERROR, "internal error; the server's log has the details")


def _has_tokens(db: str) -> bool:
    """Whether the store holds an active token (so a server beyond loopback is not open): False when it cannot be
    read yet (the lifespan opens it, and says why it cannot)."""
    try:
        store = Store.open(db)
    except StoreError:
        return False
    try:
        return store.has_tokens()
    finally:
        store.close()


def create_app(settings: ServerSettings | None = None) -> FastAPI:
    """The application for ``settings`` (default: from the ``EVOLVE_`` environment).

    Raises:
        ConfigError: when the settings refuse to serve (a non-loopback bind without a token).
    """
    settings = settings or ServerSettings()
    # beyond loopback only: a token in the store may be what makes it safe (on loopback nothing is opened here)
    settings.check_bind(has_tokens=not settings.loopback and settings.api_token is None and _has_tokens(settings.db))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = Store.open(settings.db)
        manager = CampaignManager(store, max_evaluations=settings.max_evaluations, workdir=settings.workdir,
                                  sandbox=settings.sandbox)
        manager.reconcile()
        app.state.store, app.state.manager = store, manager
        try:
            yield
        finally:
            await manager.shutdown()
            store.close()

    app = FastAPI(
        title="evolve", version=__version__, lifespan=lifespan, responses=COMMON_ERRORS,
        description="LLM-driven evolutionary algorithm discovery: submit problems, run campaigns, read the MAP-Elites archive. "
                    "Writes need 'Authorization: Bearer <EVOLVE_API_TOKEN>' when a token is set.",
    )
    app.state.settings = settings
    app.state.builtins = BuiltinProblems()
    _install_error_handlers(app)
    for module in (problems, campaigns, programs, tokens):
        app.include_router(module.router)
    install_dashboard(app)

    @app.get("/health", tags=["server"])
    def health(request: Request) -> dict[str, Any]:
        """Liveness, and what needs a token (the dashboard asks for one when writes or reads do): answers without a token."""
        store: Store = request.app.state.store
        return {"status": "ok", "version": __version__,
                "writes_need_token": settings.api_token is not None or store.has_tokens(),
                "reads_need_token": settings.reads_need_token}

    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type", "Last-Event-ID"])
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    return app
