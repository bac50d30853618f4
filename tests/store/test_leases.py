"""Campaign leases on every store: who may claim a campaign, when a lapsed lease frees it, and the fence that
refuses every write of a controller whose campaign was taken over."""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

import pytest

from evolve.errors import ConfigError, StoreError
from evolve.problem import Problem
from evolve.store import Store
from evolve.store.leases import LeaseLostError, new_owner
from evolve.values import CampaignStatus
from tests.store.helpers import make_campaign, make_program

ELSEWHERE = "another-host:4242:feedbeef"  # a controller on another host: only its lease tells whether it runs


def _alive(owner: str) -> bool:
    return True  # as for any process on another host


def test_a_claim_holds_while_its_lease_runs_and_frees_the_campaign_once_it_lapses(store: Store, quadratic: Problem) -> None:
    cid, _ = make_campaign(store, quadratic)
    store.claim_campaign(cid, ELSEWHERE, owner_alive=_alive, target=None, lease_s=1.0)
    assert store.holder(cid, _alive) == ELSEWHERE
    me = new_owner()
    with pytest.raises(StoreError, match=r"being run by another-host:4242:feedbeef \(its lease runs \d s more"):
        store.claim_campaign(cid, me, owner_alive=_alive, target=None)
    time.sleep(1.1)
    assert store.holder(cid, _alive) is None
    row = store.claim_campaign(cid, me, owner_alive=_alive, target=None, lease_s=30)
    assert row.owner == me and row.status is CampaignStatus.RUNNING and row.lease_expires is not None
    [resumed] = [e for e in store.events(cid) if e["kind"] == "resumed"]
    assert resumed["data"]["previous_owner"] == ELSEWHERE


def test_every_write_of_a_controller_whose_campaign_was_taken_over_is_refused(store: Store, quadratic: Problem) -> None:
    cid, initial = make_campaign(store, quadratic)
    store.claim_campaign(cid, ELSEWHERE, owner_alive=_alive, target=None, lease_s=0.3)
    time.sleep(0.4)  # the old controller froze past its lease
    me = new_owner()
    store.claim_campaign(cid, me, owner_alive=_alive, target=None)
    late = make_program(cid, 1, fitness=5.0, parent_id=initial.id)
    with pytest.raises(LeaseLostError, match=r"no longer this controller's .* the campaign is run by"):
        store.record_program(late, owner=ELSEWHERE)
    with pytest.raises(LeaseLostError):
        store.migrate_islands(cid, upto_iteration=10, islands=2, size=1, owner=ELSEWHERE)
    with pytest.raises(LeaseLostError):
        store.set_status(cid, CampaignStatus.FINISHED, owner=ELSEWHERE)
    assert store.renew_lease(cid, ELSEWHERE) is False
    row = store.get_campaign(cid)
    assert (row.iterations_done, row.owner, row.status) == (0, me, CampaignStatus.RUNNING)
    assert [p.iteration for p in store.list_programs(cid)] == [0] and store.get_campaign(cid).last_migration == 0
    mine = make_program(cid, 1, fitness=5.0, parent_id=initial.id)
    assert store.record_program(mine, owner=me).iterations_done == 1


def test_renewing_keeps_the_campaign_and_a_finished_one_has_no_lease(store: Store, quadratic: Problem) -> None:
    cid, _ = make_campaign(store, quadratic)
    store.claim_campaign(cid, ELSEWHERE, owner_alive=_alive, target=None, lease_s=0.5)
    for _ in range(4):
        time.sleep(0.25)
        assert store.renew_lease(cid, ELSEWHERE, 0.5)
    assert store.holder(cid, _alive) == ELSEWHERE  # a second after a half-second claim: renewed, still held
    store.set_status(cid, CampaignStatus.FINISHED, owner=ELSEWHERE)
    row = store.get_campaign(cid)
    assert row.lease_expires is None and store.holder(cid, _alive) is None
    assert store.renew_lease(cid, ELSEWHERE) is False  # nothing to renew once it is no longer running


def test_a_lapsed_lease_or_a_gone_process_marks_the_campaign_interrupted_and_a_live_lease_does_not(
        store: Store, quadratic: Problem) -> None:
    lapsed, _ = make_campaign(store, quadratic)
    live, _ = make_campaign(store, quadratic)
    gone, _ = make_campaign(store, quadratic)
    store.claim_campaign(lapsed, ELSEWHERE, owner_alive=_alive, target=None, lease_s=0.2)
    store.claim_campaign(live, ELSEWHERE, owner_alive=_alive, target=None, lease_s=60)
    store.claim_campaign(gone, "this-host:1:0", owner_alive=_alive, target=None, lease_s=60)
    time.sleep(0.3)
    changed = store.mark_interrupted(lambda owner: not owner.startswith("this-host:"))
    assert sorted(changed) == sorted([lapsed, gone])
    assert store.get_campaign(live).status is CampaignStatus.RUNNING
    # the lapsed controller wakes up: nothing it writes lands, and the campaign stays interrupted, resumable
    with pytest.raises(LeaseLostError, match="interrupted, marked so when the lease lapsed"):
        store.record_program(make_program(lapsed, 1), owner=ELSEWHERE)
    with pytest.raises(LeaseLostError):
        store.set_status(lapsed, CampaignStatus.FAILED, error="lost", owner=ELSEWHERE)
    row = store.get_campaign(lapsed)
    assert (row.status, row.owner, row.iterations_done) == (CampaignStatus.INTERRUPTED, None, 0)


def test_a_sibling_container_with_the_same_hostname_is_judged_by_the_lease_not_by_pids(
        store: Store, quadratic: Problem) -> None:
    cid, _ = make_campaign(store, quadratic)
    mine = new_owner()
    host, _, token, namespace = mine.split(":")
    sibling = f"{host}:999999:{token}:{int(namespace) + 1}"  # a pid this namespace lacks, in another pid namespace
    gone_here = f"{host}:999999:{token}:{namespace}"  # the same pid in this namespace: gone for sure
    store.claim_campaign(cid, sibling, target=None, lease_s=60)
    with pytest.raises(StoreError, match="being run by"):
        store.claim_campaign(cid, mine, target=None)
    assert store.mark_interrupted() == []
    store.set_status(cid, CampaignStatus.STOPPED, owner=sibling)
    store.claim_campaign(cid, gone_here, target=None, lease_s=60)
    assert store.claim_campaign(cid, mine, target=None).owner == mine  # its owner is gone from here: at once


def _claim(start: Any, done: Any, url: str, campaign_id: str, results: Any) -> None:
    store = Store.open(url)
    owner = new_owner()
    start.wait()
    try:
        store.claim_campaign(campaign_id, owner, target=None, lease_s=60)
        results.put(owner)
    except StoreError as exc:
        results.put(f"refused: {exc}")
    done.wait()  # every racer lives until all have tried: a winner gone from this host would free the campaign
    store.close()


def test_controllers_racing_to_resume_one_campaign_never_both_win(shared_store: Store, quadratic: Problem) -> None:
    cid, _ = make_campaign(shared_store, quadratic)
    shared_store.set_status(cid, CampaignStatus.INTERRUPTED)
    ctx = multiprocessing.get_context("spawn")
    start, done, results = ctx.Barrier(6), ctx.Barrier(6), ctx.Queue()
    racers = [ctx.Process(target=_claim, args=(start, done, shared_store.url, cid, results)) for _ in range(6)]
    for p in racers:
        p.start()
    answers = [results.get(timeout=120) for _ in racers]
    for p in racers:
        p.join(timeout=60)
    winners = [a for a in answers if not a.startswith("refused")]
    assert len(winners) == 1, answers
    assert all("being run by" in a for a in answers if a.startswith("refused"))
    assert shared_store.get_campaign(cid).owner == winners[0]


def test_a_claim_keeps_the_target_and_the_config_one_value_and_refuses_an_invalid_target(store: Store, quadratic: Problem) -> None:
    campaign_id, _ = make_campaign(store, quadratic)
    owner = new_owner()
    row = store.claim_campaign(campaign_id, owner, target=250)
    assert row.iterations_target == 250 and row.config.iterations == 250
    store.set_status(campaign_id, CampaignStatus.STOPPED, owner=owner)
    budget = row.config.updated(max_tokens=5000)
    again = store.claim_campaign(campaign_id, new_owner(), owner_alive=lambda o: False, target=None, config=budget)
    assert again.iterations_target == 250 and again.config.iterations == 250 and again.config.max_tokens == 5000
    store.set_status(campaign_id, CampaignStatus.STOPPED, owner=again.owner)
    for bad in (0, 20_000_000):
        with pytest.raises(ConfigError, match="iterations"):
            store.claim_campaign(campaign_id, new_owner(), owner_alive=lambda o: False, target=bad)
    row = store.get_campaign(campaign_id)  # nothing was written: the store still reads
    assert row.status is CampaignStatus.STOPPED and row.iterations_target == 250 and len(store.list_campaigns()) == 1
