"""The store's side of dedup: finding an earlier scored copy of a program, on every backend and after the migration."""

from __future__ import annotations

import dataclasses
import hashlib

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import create_engine, select, update

from evolve.novelty import code_key
from evolve.problem import Problem
from evolve.store import Store
from evolve.store.schema import programs
from evolve.store.store import _MIGRATIONS
from evolve.values import EvalStatus
from tests.store.helpers import make_campaign, make_program

CODE = "def solve():\n    return 1.0\n"
SAME = "def solve():\n    # the same program\n    return (1.0)\n\n"


def test_an_earlier_scored_copy_is_found_whatever_its_formatting(store: Store, quadratic: Problem) -> None:
    campaign_id, _ = make_campaign(store, quadratic)
    assert store.same_program(campaign_id, CODE) is None
    first = dataclasses.replace(make_program(campaign_id, 1), code=CODE)
    store.record_program(first)
    store.record_program(dataclasses.replace(make_program(campaign_id, 2), code=SAME))
    assert store.same_program(campaign_id, SAME) == (first.id, 1)  # the first, however the copy is written
    assert store.same_program(campaign_id, CODE + "x = 1\n") is None


def test_only_a_verdict_counts_not_an_error_or_a_timeout(store: Store, quadratic: Problem) -> None:
    campaign_id, _ = make_campaign(store, quadratic)
    for n, status in enumerate((EvalStatus.ERROR, EvalStatus.TIMEOUT, EvalStatus.DIFF_FAILED), start=1):
        store.record_program(dataclasses.replace(make_program(campaign_id, n, status=status), code=CODE))
    assert store.same_program(campaign_id, CODE) is None  # a broken worker or a loaded machine may have caused those
    invalid = dataclasses.replace(make_program(campaign_id, 4, status=EvalStatus.INVALID), code=CODE)
    store.record_program(invalid)
    assert store.same_program(campaign_id, CODE) == (invalid.id, 4)


def test_exact_mode_needs_the_same_text(store: Store, quadratic: Problem) -> None:
    campaign_id, _ = make_campaign(store, quadratic)
    first = dataclasses.replace(make_program(campaign_id, 1), code=CODE)
    store.record_program(first)
    assert store.same_program(campaign_id, SAME, exact=True) is None
    assert store.same_program(campaign_id, CODE, exact=True) == (first.id, 1)


def test_programs_stored_before_the_migration_are_found_after_it(shared_store: Store, quadratic: Problem) -> None:
    campaign_id, _ = make_campaign(shared_store, quadratic)
    old = dataclasses.replace(make_program(campaign_id, 1), code=CODE)
    shared_store.record_program(old)
    url = shared_store.url
    shared_store.close()
    cfg = AlembicConfig()  # back to 0006, with the exact-text hash an older evolve wrote
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    engine = create_engine(url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0006")
        old_hash = hashlib.sha256(CODE.encode()).hexdigest()[:32]
        conn.execute(update(programs).where(programs.c.id == old.id).values(code_hash=old_hash))
    engine.dispose()
    again = Store.open(url)
    try:
        with again._engine.connect() as conn:
            assert conn.execute(select(programs.c.code_hash).where(programs.c.id == old.id)).scalar() == code_key(CODE)
        assert again.same_program(campaign_id, SAME) == (old.id, 1)
    finally:
        again.close()
