"""The contract per role: schemathesis sends generated requests with a read and a run token to a live server.

No answer may be a 500 or stray from the schema, and no operation may answer a role below the one it needs
(``NEEDS``, which must name every operation the schema publishes) with anything but 403.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance

from evolve.server import ServerSettings, create_app
from evolve.store import ROLES, Store
from tests.server.conftest import TOKEN, settings_for
from tests.server.live import threaded_server

OPENAPI = create_app(ServerSettings(host="127.0.0.1", api_token=None)).openapi()
schema = schemathesis.openapi.from_dict(OPENAPI)

#: The weakest role each operation answers; anything weaker is refused.
NEEDS: dict[tuple[str, str], str | None] = {
    ("GET", "/health"): None,
    ("POST", "/problems"): "run", ("POST", "/problems/upload"): "run", ("POST", "/campaigns"): "run",
    ("POST", "/campaigns/{campaign_id}/stop"): "run", ("POST", "/campaigns/{campaign_id}/resume"): "run",
    ("GET", "/tokens"): "admin", ("POST", "/tokens"): "admin", ("POST", "/tokens/{name}/revoke"): "admin",
    ("GET", "/audit"): "admin", ("GET", "/settings"): "admin",
}


def needs(method: str, path: str) -> str | None:
    return NEEDS.get((method, path), "read" if method == "GET" else "admin")


def test_every_operation_is_classified() -> None:
    """A new write endpoint must be added to NEEDS (an unlisted GET is a read, an unlisted write needs admin)."""
    for path, operations in OPENAPI["paths"].items():
        for method in operations:
            if method.upper() != "GET":
                assert (method.upper(), path) in NEEDS, (method, path)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    tmp: Path = tmp_path_factory.mktemp("roles")
    (tmp / "work").mkdir()
    store = Store.open(str(tmp / "api.db"))
    try:
        tokens = {role: store.create_token(f"{role}-token", role)[0] for role in ("read", "run")}
    finally:
        store.close()
    with threaded_server(settings_for(tmp, api_token=TOKEN)) as base:
        yield base, tokens


@pytest.mark.parametrize("role", ["anonymous", "read", "run"])
@schema.parametrize()
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_operation_answers_a_role_it_refuses_and_none_fails(case: Any, role: str,
                                                              served: tuple[str, dict[str, str]]) -> None:
    """anonymous: no token, on loopback (where reads need none); read and run: a token of that role."""
    base, tokens = served
    headers = {} if role == "anonymous" else {"Authorization": f"Bearer {tokens[role]}"}
    response = case.call(base_url=base, headers=headers)
    needed = needs(case.method.upper(), case.path)
    published = case.method.lower() in OPENAPI["paths"][case.path]  # else a method the path lacks: 405 for anyone
    has = "read" if role == "anonymous" else role
    if published and needed is not None and ROLES.index(has) < ROLES.index(needed):
        expected = 401 if role == "anonymous" else 403
        assert response.status_code == expected, (case.method, case.path, response.status_code, response.text)
        if role != "anonymous":
            assert f"has role {role}" in response.json()["detail"]
    case.validate_response(response, excluded_checks=[positive_data_acceptance])
