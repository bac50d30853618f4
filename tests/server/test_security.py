"""Tokens, cross-site writes, body limits, CORS, and errors that never leak tracebacks or secrets."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from evolve.errors import ConfigError
from evolve.server import create_app, load_settings
from evolve.store import Store
from tests.server.conftest import TOKEN, quadratic_payload, settings_for

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_with_a_token_writes_need_it_and_loopback_reads_do_not(make_client: Callable[..., TestClient]) -> None:
    client = make_client(api_token=TOKEN)
    missing = client.post("/problems", json=quadratic_payload())
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer" in missing.json()["detail"]
    wrong = client.post("/problems", json=quadratic_payload(), headers={"Authorization": f"Bearer {TOKEN[:-1]}x"})
    assert wrong.status_code == 401
    assert client.post("/problems", json=quadratic_payload(), headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
    assert client.post("/problems", json=quadratic_payload(), headers=AUTH).status_code == 201
    assert client.get("/problems").status_code == 200
    assert client.post("/campaigns/x/stop").status_code == 401  # auth before anything else


def test_the_token_is_compared_in_constant_time_and_every_wrong_one_is_refused_alike(
        make_client: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch) -> None:
    """README: the token is compared in constant time. Every candidate token goes through hmac.compare_digest (the
    standard library's constant-time comparison), as bytes, whatever its length, and every wrong one gets the same answer."""
    real = hmac.compare_digest
    seen: list[tuple[object, object]] = []

    def recording(a: Any, b: Any) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", recording)
    client = make_client(api_token=TOKEN)
    wrong = [TOKEN[:-1] + "x", "x" + TOKEN[1:], TOKEN[:-1], TOKEN + "0", TOKEN * 3, "", "t", "tést-token-ü"]
    answers = []
    for given in wrong:
        seen.clear()
        raw = given.encode()  # a header is bytes on the wire; the server reads it as latin-1
        response = client.post("/campaigns/x/stop", headers={b"Authorization": b"Bearer " + raw})
        answers.append((response.status_code, response.content, sorted(response.headers.items())))
        assert seen == [(raw.decode("latin-1").encode(), TOKEN.encode())], (given, seen)  # one comparison, of bytes
    assert answers[0][0] == 401 and all(a == answers[0] for a in answers), answers  # refused alike, whatever the length
    seen.clear()
    assert client.post("/campaigns/x/stop", headers=AUTH).status_code == 404  # past the token: there is no campaign x
    assert seen == [(TOKEN.encode(), TOKEN.encode())]


def test_beyond_loopback_reads_need_the_token_too(make_client: Callable[..., TestClient]) -> None:
    client = make_client(api_token=TOKEN, host="0.0.0.0")
    assert client.get("/problems").status_code == 401
    assert client.get("/campaigns").status_code == 401
    assert client.get("/problems", headers=AUTH).status_code == 200
    assert client.get("/health").status_code == 200


def test_a_public_bind_without_a_token_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="EVOLVE_API_TOKEN"):
        create_app(settings_for(tmp_path, host="0.0.0.0"))
    with pytest.raises(ConfigError, match="EVOLVE_API_TOKEN"):
        create_app(settings_for(tmp_path, host="192.168.1.20"))
    create_app(settings_for(tmp_path, host="::1"))  # loopback in any spelling is fine


def test_settings_come_from_the_environment_and_bad_ones_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVOLVE_PORT", "9123")
    monkeypatch.setenv("EVOLVE_CORS_ORIGINS", '["http://localhost:3000"]')
    settings = load_settings(db="x.db")
    assert (settings.port, settings.db, settings.cors_origins) == (9123, "x.db", ["http://localhost:3000"])
    monkeypatch.setenv("EVOLVE_PORT", "http")
    with pytest.raises(ConfigError, match="EVOLVE_PORT"):
        load_settings()
    monkeypatch.delenv("EVOLVE_PORT")
    monkeypatch.setenv("EVOLVE_API_TOKEN", "short")
    with pytest.raises(ConfigError, match=r"EVOLVE_API_TOKEN: .*at least 16 characters"):
        load_settings()


def test_without_a_token_cross_site_writes_are_refused(client: TestClient) -> None:
    evil = client.post("/problems", json=quadratic_payload(), headers={"Origin": "http://evil.example"})
    assert evil.status_code == 403 and "EVOLVE_CORS_ORIGINS" in evil.json()["detail"]
    same = client.post("/problems", json=quadratic_payload(), headers={"Origin": "http://127.0.0.1"})
    assert same.status_code == 201


def test_cors_is_off_by_default_and_on_for_listed_origins(make_client: Callable[..., TestClient]) -> None:
    plain = make_client()
    assert "access-control-allow-origin" not in plain.get("/problems", headers={"Origin": "http://localhost:3000"}).headers
    allowed = make_client(cors_origins=["http://localhost:3000"])
    response = allowed.get("/problems", headers={"Origin": "http://localhost:3000"})
    assert response.headers["access-control-allow-origin"] == "http://localhost:3000"


def test_bodies_over_the_limit_get_413(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_body_bytes=4096)
    response = client.post("/problems", json=quadratic_payload(initial_program="# " + "x" * 10_000))
    assert response.status_code == 413 and "EVOLVE_MAX_BODY_BYTES" in response.json()["detail"]

    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b"x" * 1024

    streamed = client.post("/problems", content=chunks(), headers={"content-type": "application/json"})  # no length declared
    assert streamed.status_code == 413


def test_unexpected_failures_answer_500_without_a_traceback(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Store) -> list[object]:
        raise RuntimeError("disk on fire at /secret/path")

    monkeypatch.setattr(Store, "list_campaigns", broken)
    response = client.get("/campaigns")
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error; the server's log has the details", "field": None}


SECRET = "sk-live-abcdefghijklmnop0123"
RAISES_SECRET = f"# EVOLVE-BLOCK-START\ndef solve():\n    raise ValueError('key {SECRET}')\n# EVOLVE-BLOCK-END\n"


@pytest.mark.parametrize("request_of", [
    pytest.param(lambda c: c.post("/problems", json={**quadratic_payload(), SECRET: 1}), id="unknown-field-named-by-it"),
    pytest.param(lambda c: c.get(f"/problems/{SECRET}"), id="unknown-problem-in-the-path"),
    pytest.param(lambda c: c.post("/campaigns", json={"problem": SECRET, "models": [{"name": "mutator"}]}), id="unknown-problem"),
    pytest.param(lambda c: c.post("/problems", json=quadratic_payload(initial_program=RAISES_SECRET)), id="candidate-error-text"),
])
def test_secrets_in_error_messages_are_redacted(client: TestClient, monkeypatch: pytest.MonkeyPatch,
                                                request_of: Callable[[TestClient], Any]) -> None:
    """Each request puts the key where the error answer quotes the request back: the quote comes back redacted."""
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    response = request_of(client)
    assert response.status_code in (404, 422), response.text
    assert SECRET not in response.text and "[redacted]" in response.text, response.text


def test_a_method_a_path_lacks_is_answered_405_naming_the_ones_it_has(client: TestClient) -> None:
    response = client.request("PUT", "/problems")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"
    assert response.json()["detail"] == "PUT is not allowed here; use GET or POST"


def test_a_server_without_tokens_answers_only_requests_addressed_to_loopback(client: TestClient) -> None:
    """A page whose DNS name was rebound to 127.0.0.1 sends its own name as Host: it gets nothing, writes least of all."""
    rebound = {"Host": "attacker.example:8000", "Origin": "http://attacker.example:8000"}
    assert client.get("/campaigns", headers={"Host": "attacker.example"}).status_code == 403
    refused = client.post("/tokens", json={"name": "mine", "role": "admin"}, headers=rebound)
    assert refused.status_code == 403 and "localhost or 127.0.0.1" in refused.json()["detail"]
    for host in ("127.0.0.1:8000", "localhost", "[::1]:8000"):
        assert client.get("/campaigns", headers={"Host": host}).status_code == 200, host


def test_revoking_the_last_token_of_a_server_beyond_loopback_leaves_it_closed(tmp_path: Path) -> None:
    """Beyond loopback a server with no token left admits nobody: not the loopback admin of a single user's machine."""
    store = Store.open(str(tmp_path / "api.db"))
    try:
        store.create_token("only", "admin")
    finally:
        store.close()
    (tmp_path / "work").mkdir()
    settings = load_settings(host="0.0.0.0", db=str(tmp_path / "api.db"), workdir=str(tmp_path / "work"))
    with TestClient(create_app(settings), raise_server_exceptions=False, base_url="http://127.0.0.1") as client:
        client.app.state.store.revoke_token("only")  # type: ignore[attr-defined]
        for method, path in (("GET", "/campaigns"), ("POST", "/tokens"), ("GET", "/whoami")):
            response = client.request(method, path, json={"name": "x", "role": "admin"} if method == "POST" else None)
            assert response.status_code == 401, (path, response.text)
