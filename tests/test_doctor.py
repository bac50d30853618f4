"""``evolve doctor`` as a user runs it: real backends, a real model endpoint on loopback, real database files."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from evolve.sandbox.bwrap import bwrap_problem
from evolve.store import Store
from tests.cli.helpers import evolve
from tests.llm.openai_server import serve


def keyless() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not any(w in k.upper() for w in ("KEY", "TOKEN", "SECRET"))}


def checks(result: Any) -> dict[tuple[str, str], dict[str, Any]]:
    return {(c["what"], c["name"]): c for c in json.loads(result.stdout)["checks"]}


def test_doctor_reports_the_sandboxes_models_and_a_new_store(tmp_path: Path) -> None:
    result = evolve("doctor", "--json", "--db", "new.db", cwd=tmp_path, env=keyless())
    found = checks(result)
    assert found[("sandbox", "process")]["ok"] and "NO file-system or network isolation" in found[("sandbox", "process")]["detail"]
    assert found[("sandbox", "bwrap")]["ok"] is (bwrap_problem() is None)
    assert {"smollm2", "qwen2.5-coder-1.5b"} <= {name for what, name in found if what == "model"}
    assert found[("store", "new.db")]["ok"] and "creates it" in found[("store", "new.db")]["detail"]
    assert not (tmp_path / "new.db").exists()  # a doctor creates nothing
    assert result.returncode == (0 if json.loads(result.stdout)["ok"] else 1)


def test_doctor_calls_a_configured_endpoint_with_one_token(tmp_path: Path) -> None:
    with serve(lambda body: "OK") as (base, server):
        result = evolve("doctor", "--model", "openai/stub", "--api-base", base, "--db", "none.db", cwd=tmp_path, env=keyless())
    assert "openai/stub" in result.stdout and f"answered a one-token call at {base}" in result.stdout, result.stdout
    assert len(server.log) == 1 and server.log[0].body["max_tokens"] == 1


def test_doctor_names_a_model_it_cannot_reach_and_exits_1(tmp_path: Path) -> None:
    unreachable = evolve("doctor", "--json", "--model", "openai/stub", "--api-base", "http://127.0.0.1:9/v1", cwd=tmp_path,
                         env=keyless())
    assert unreachable.returncode == 1
    failed = checks(unreachable)[("model", "openai/stub")]
    assert not failed["ok"] and "a one-token call failed" in failed["detail"]
    no_key = checks(evolve("doctor", "--json", "--model", "openai/gpt-4o-mini", cwd=tmp_path, env=keyless()))
    assert no_key[("model", "openai/gpt-4o-mini")]["detail"] == "not called: no key or endpoint configured (set OPENAI_API_KEY)"


@pytest.mark.parametrize(("revision", "ok", "fragment"), [
    (None, True, "the latest"),
    ("0007", True, "behind the latest 0009: the next evolve command that opens it migrates it"),
    ("9999", False, "newer than this evolve"),
    ("junk", False, "cannot open database"),
])
def test_doctor_reads_the_store_schema_without_migrating(tmp_path: Path, revision: str | None, ok: bool, fragment: str) -> None:
    db = tmp_path / "e.db"
    Store.open(str(db)).close()
    if revision == "junk":
        db.write_bytes(b"not a database" * 100)
    elif revision is not None:
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE alembic_version SET version_num = ?", (revision,))
    result = evolve("doctor", "--json", "--db", str(db), cwd=tmp_path, env=keyless())
    store = checks(result)[("store", str(db))]
    assert store["ok"] is ok and fragment in store["detail"], store
    if revision in ("0007", "9999"):
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == (revision,)  # left as it was
    if not ok:
        assert result.returncode == 1


def test_doctor_never_prints_the_database_password(tmp_path: Path) -> None:
    result = evolve("doctor", "--json", "--db", "postgresql+psycopg://bob:hunter2@127.0.0.1:1/evolve", cwd=tmp_path,
                    env=keyless())
    assert "hunter2" not in result.stdout + result.stderr
    store = next(c for c in json.loads(result.stdout)["checks"] if c["what"] == "store")
    assert not store["ok"] and store["name"] == "postgresql+psycopg://bob:***@127.0.0.1:1/evolve"
    assert result.returncode == 1
