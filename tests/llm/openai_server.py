"""An OpenAI-compatible chat-completions server on loopback that misbehaves on purpose.

Each request draws (deterministically, from the seed and the request number)
one of the faults below, or none, and every request is logged with the fault
it got, so a test can compare what the server did with what the store says.

Faults: ``rate_limit`` (429 with Retry-After), ``server_error`` (500),
``hang`` (no answer until the server stops), ``invalid_json`` (200 with a
garbled body), ``empty`` (200 with empty content), ``truncated`` (200, the
answer cut in half, finish_reason "length"), ``drop`` (the connection closed
with no response), ``auth`` (401), ``payment`` (402), ``forbidden`` (403),
``not_found`` (404).
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAULTS = ("rate_limit", "server_error", "hang", "invalid_json", "empty", "truncated", "drop", "auth", "payment", "forbidden",
          "not_found")
#: Faults answered with a plain HTTP error: the status and the provider's message.
REFUSALS = {"auth": (401, "invalid api key"), "payment": (402, "insufficient credit"),
            "forbidden": (403, "this key may not use this model"), "not_found": (404, "no such model")}
Answer = Callable[[dict[str, Any]], str]


@dataclass
class Logged:
    """One request as the server saw it."""

    n: int
    path: str
    body: dict[str, Any]
    auth: str | None
    fault: str | None
    started: float
    finished: float | None = None


@dataclass
class FaultyServer:
    """Serve ``/v1/chat/completions`` on 127.0.0.1 with a share of faulty answers."""

    answer: Answer
    faults: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    retry_after: str = "1"
    usage: tuple[int, int] = (120, 30)
    response_model: str | None = None  # the "model" field of responses (litellm prices by it)
    echo_auth: bool = False  # put the Authorization header into error bodies and answers, as a careless proxy might
    outage_s: float = 0.0  # every request in the first seconds after the first one gets a 503, as from a provider that is down
    log: list[Logged] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _active: int = 0
    max_active: int = 0
    _first: float | None = None

    def _draw(self, n: int) -> str | None:
        u = random.Random(self.seed * 1_000_003 + n).random()
        for name, share in self.faults.items():
            if u < share:
                return name
            u -= share
        return None

    def _begin(self, path: str, body: dict[str, Any], auth: str | None) -> Logged:
        with self._lock:
            now = time.monotonic()
            self._first = self._first or now
            fault = "outage" if now - self._first < self.outage_s else self._draw(len(self.log))
            entry = Logged(len(self.log), path, body, auth, fault, now)
            self.log.append(entry)
            self._active += 1
            self.max_active = max(self.max_active, self._active)
            return entry

    def _end(self, entry: Logged) -> None:
        with self._lock:
            self._active -= 1
            entry.finished = time.monotonic()

    def completion(self, body: dict[str, Any], text: str, finish: str = "stop") -> bytes:
        return json.dumps({
            "id": "chatcmpl-test", "object": "chat.completion", "created": 0,
            "model": self.response_model or body.get("model", "m"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
            "usage": {"prompt_tokens": self.usage[0], "completion_tokens": self.usage[1], "total_tokens": sum(self.usage)},
        }).encode()

    def handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(payload)

            def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
                auth = self.headers.get("Authorization") if server.echo_auth else None
                detail = f"{message} (request had Authorization: {auth})" if auth else message
                self._send(status, json.dumps({"error": {"message": detail, "type": "test_fault", "code": status}}).encode(), headers)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                entry = server._begin(self.path, body, self.headers.get("Authorization"))
                try:
                    self._answer(entry, body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up first (after its timeout)
                finally:
                    server._end(entry)

            def _answer(self, entry: Logged, body: dict[str, Any]) -> None:
                fault = entry.fault
                if fault == "rate_limit":
                    self._error(429, "rate limited, slow down", {"Retry-After": server.retry_after})
                elif fault == "server_error":
                    self._error(500, "internal error")
                elif fault == "outage":
                    self._error(503, "service unavailable")
                elif fault in REFUSALS:
                    self._error(*REFUSALS[fault])
                elif fault == "hang":
                    server._stopping.wait(120)
                elif fault == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                elif fault == "invalid_json":
                    self._send(200, b'{"id": "chatcmpl-broken", "choices": [{"index": 0, "message": ')
                elif fault == "empty":
                    self._send(200, server.completion(body, ""))
                elif fault == "truncated":
                    text = server.answer(body)
                    self._send(200, server.completion(body, text[: len(text) // 2], finish="length"))
                else:
                    text = server.answer(body)
                    if server.echo_auth:
                        text += f"\n(served for Authorization: {self.headers.get('Authorization')})"
                    self._send(200, server.completion(body, text))

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    @contextmanager
    def running(self) -> Iterator[str]:
        """Serve until the block ends; yields the base URL (``http://127.0.0.1:PORT/v1``)."""
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        httpd.daemon_threads = True
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
        finally:
            self._stopping.set()
            httpd.shutdown()
            httpd.server_close()

    def faults_seen(self) -> dict[str | None, int]:
        counts: dict[str | None, int] = {}
        for entry in self.log:
            counts[entry.fault] = counts.get(entry.fault, 0) + 1
        return counts


@contextmanager
def serve(answer: Answer, **options: Any) -> Iterator[tuple[str, FaultyServer]]:
    """Start a server; yields (base URL, server)."""
    server = FaultyServer(answer, **options)
    with server.running() as base:
        yield base, server
