"""Tokens, the audit trail and creators in the store, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import re
import string
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evolve.config import CampaignConfig
from evolve.errors import StoreError
from evolve.problem import Problem
from evolve.store import LLMCallRecord, Store
from evolve.store.access import TOKEN_NAME, TokenNameError, digest
from evolve.values import Origin
from tests.store.helpers import make_program


def test_a_token_is_stored_as_its_digest_and_found_by_its_value(store: Store) -> None:
    value, row = store.create_token("alice", "run", max_campaigns=2, max_cost_usd=5.0)
    assert re.fullmatch(r"evolve_[A-Za-z0-9_-]{43}", value)
    assert digest(value) == hashlib.sha256(value.encode()).hexdigest()
    found = store.token_for(value)
    assert found == row and found.max_campaigns == 2 and found.max_cost_usd == 5.0
    assert store.token_for(value + "x") is None
    assert store.token_for("") is None
    other, _ = store.create_token("bob", "read")
    assert other != value and store.token_for(other).name == "bob"  # type: ignore[union-attr]
    assert [t.name for t in store.list_tokens()] == ["alice", "bob"]
    assert store.has_tokens()


def test_a_revoked_token_is_found_no_more_and_its_name_stays_taken(store: Store) -> None:
    assert not store.has_tokens()
    value, _ = store.create_token("alice", "admin")
    revoked = store.revoke_token("alice")
    assert not revoked.active and revoked.revoked_at is not None
    assert store.token_for(value) is None
    assert store.revoke_token("alice").revoked_at == revoked.revoked_at  # idempotent: the first revocation's time
    assert store.has_tokens()  # a server that had tokens stays closed when they are all revoked
    with pytest.raises(TokenNameError, match="names of revoked tokens stay taken"):
        store.create_token("alice", "run")
    with pytest.raises(StoreError, match="no token named 'nobody'"):
        store.revoke_token("nobody")
    with pytest.raises(StoreError, match="unknown role"):
        store.create_token("carol", "root")


@given(st.text(string.printable, max_size=80))
def test_only_names_of_the_documented_shape_are_accepted(name: str) -> None:
    store = Store.open(":memory:")
    try:
        if re.fullmatch(TOKEN_NAME, name):
            assert store.create_token(name, "read")[1].name == name
        else:
            with pytest.raises(TokenNameError):
                store.create_token(name, "read")
    finally:
        store.close()


def test_the_audit_trail_keeps_every_event_in_order_and_filters_by_actor(store: Store) -> None:
    store.add_audit("alice", "start", target="c1")
    store.add_audit("bob", "stop", target="c1", outcome="refused", detail="x" * 5000)
    store.add_audit("alice", "stop", target="c1")
    trail = store.audit_trail()
    assert [(e.actor, e.action, e.outcome) for e in trail] == [("alice", "start", "ok"), ("bob", "stop", "refused"),
                                                                ("alice", "stop", "ok")]
    assert len(trail[1].detail or "") == 500  # clipped
    assert [e.id for e in store.audit_trail(after_id=trail[0].id)] == [trail[1].id, trail[2].id]
    assert [e.action for e in store.audit_trail(actor="alice")] == ["start", "stop"]
    assert store.audit_trail(limit=1)[0].id == trail[0].id


def test_no_token_value_is_in_the_database_file(tmp_path: Path) -> None:
    store = Store.open(str(tmp_path / "t.db"))
    try:
        values = [store.create_token(f"t{i}", "run")[0] for i in range(5)]
        store.revoke_token("t0")
    finally:
        store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("t.db*"))
    assert all(v.encode() not in raw for v in values)
    assert all(digest(v).encode() in raw for v in values)  # what is there instead


def test_the_newest_audit_events_come_last_like_the_rest(store: Store) -> None:
    for i in range(5):
        store.add_audit("alice", f"a{i}")
    assert [e.action for e in store.audit_trail(limit=2, newest=True)] == ["a3", "a4"]


@pytest.mark.parametrize("name", ["loopback", "EVOLVE_API_TOKEN", "Anonymous", "cli", "unknown"])
def test_names_the_server_acts_under_are_refused(store: Store, name: str) -> None:
    with pytest.raises(TokenNameError, match="uses itself"):
        store.create_token(name, "run")


def test_a_campaign_is_created_with_its_owner_and_counted_in_its_spend(store: Store, quadratic: Problem) -> None:
    problem_id = store.save_problem(quadratic, created_by="alice")
    assert store.save_problem(quadratic, created_by="bob") == problem_id  # the same files: one problem
    for cid, creator in [("c-alice", "alice"), ("c-cli", None)]:
        store.create_campaign(campaign_id=cid, problem_id=problem_id, config=CampaignConfig(islands=1, iterations=5),
                              initial=make_program(cid, 0, fitness=0.0, origin=Origin.INITIAL), islands=1,
                              created_by=creator)
    # owned from the transaction that made it: no moment in which a run token's campaign is nobody's
    assert [(c.id, c.created_by) for c in store.list_campaigns()] == [("c-alice", "alice"), ("c-cli", None)]
    store.record_calls("c-alice", 1, [LLMCallRecord(model="paid", template=None, prompt_tokens=1, completion_tokens=1,
                                                    cost_usd=0.5, latency_s=0.1, ok=True)])
    assert store.spent_by("alice") == 0.5 and store.spent_by("bob") == 0.0
