"""Who may call what: bearer tokens, cross-site writes, request body sizes.

Writes (they can run an evaluator on this machine) need the token whenever
one is set; reads need it too when the server listens beyond loopback.
Without a token (loopback only) a browser page of another site could still
post a form to the server, so writes whose ``Origin`` is neither this server
nor a configured CORS origin are refused.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import HTTPException, Request, status

from evolve.server.settings import ServerSettings

__all__ = ["BodyLimit", "require_read", "require_write"]


def _settings(request: Request) -> ServerSettings:
    settings: ServerSettings = request.app.state.settings
    return settings


def _check_token(request: Request, settings: ServerSettings) -> None:
    assert settings.api_token is not None
    expected = settings.api_token.get_secret_value().encode()
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    # compare_digest takes time independent of where the strings differ
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "missing or wrong token: send the header 'Authorization: Bearer <EVOLVE_API_TOKEN>'",
            headers={"WWW-Authenticate": "Bearer"},
        )


def _same_origin(request: Request, settings: ServerSettings) -> bool:
    origin = request.headers.get("origin")
    if origin is None:
        return True  # not a browser's cross-site request (browsers send Origin on every cross-site POST)
    host = request.headers.get("host", "")
    return origin in settings.cors_origins or origin in (f"http://{host}", f"https://{host}")


async def require_read(request: Request) -> None:
    settings = _settings(request)
    if settings.reads_need_token:
        _check_token(request, settings)


async def require_write(request: Request) -> None:
    settings = _settings(request)
    if settings.api_token is not None:
        _check_token(request, settings)
    elif not _same_origin(request, settings):
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            "cross-site writes are refused: add the page's origin to EVOLVE_CORS_ORIGINS, or set EVOLVE_API_TOKEN")


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
