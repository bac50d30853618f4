"""``evolve token create|list|revoke`` as a user runs them, and a server that honours what they did."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.cli.helpers import evolve
from tests.server.live import ServeProcess


def test_tokens_made_on_the_command_line_are_shown_once_listed_without_values_and_revoked(tmp_path: Path) -> None:
    db = str(tmp_path / "evolve.db")
    made = evolve("token", "create", "alice", "--role", "run", "--max-campaigns", "2", "--db", db, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    value = made.stdout.strip()
    assert value.startswith("evolve_") and "shown only now" in made.stderr
    listed = evolve("token", "list", "--db", db, cwd=tmp_path)
    assert listed.returncode == 0 and "alice" in listed.stdout and "run" in listed.stdout and "campaigns 2" in listed.stdout
    rows = json.loads(evolve("token", "list", "--json", "--db", db, cwd=tmp_path).stdout)
    assert rows[0]["name"] == "alice" and rows[0]["active"] is True
    assert value not in listed.stdout + json.dumps(rows)
    again = evolve("token", "create", "alice", "--role", "admin", "--db", db, cwd=tmp_path)
    assert again.returncode == 2 and "exists" in again.stderr and "Traceback" not in again.stderr
    bad = evolve("token", "create", "no spaces", "--role", "run", "--db", db, cwd=tmp_path)
    assert bad.returncode == 2 and "not a token name" in bad.stderr
    role = evolve("token", "create", "carol", "--role", "root", "--db", db, cwd=tmp_path)
    assert role.returncode == 2 and "'root' is not one of" in role.stderr

    server = ServeProcess(db, tmp_path / "serve.log").start()
    try:
        auth = {"Authorization": f"Bearer {value}"}
        assert httpx.get(f"{server.base}/whoami", headers=auth).json()["name"] == "alice"
        # with a token in the store, writes need one even on loopback
        anonymous = httpx.post(f"{server.base}/campaigns", json={"problem": "circle_packing"})
        assert anonymous.status_code == 401
        revoked = evolve("token", "revoke", "alice", "--db", db, cwd=tmp_path)
        assert revoked.returncode == 0 and "revoked" in revoked.stdout
        assert httpx.get(f"{server.base}/whoami", headers=auth).status_code == 401  # at once, on the running server
    finally:
        server.stop()
    missing = evolve("token", "revoke", "nobody", "--db", db, cwd=tmp_path)
    assert missing.returncode == 2 and "no token named 'nobody'" in missing.stderr
    log = (tmp_path / "serve.log").read_text()
    assert value not in log
