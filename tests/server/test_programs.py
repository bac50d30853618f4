"""Archive endpoints on a real finished campaign: pages, program detail, best, lineage, the map, the Pareto front."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.server.conftest import finished_campaign, start_campaign, wait_for


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str]]:
    with finished_campaign(tmp_path_factory.mktemp("archive")) as found:
        yield found


def _all_pages(client: TestClient, cid: str, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        body = client.get(f"/campaigns/{cid}/programs", params={**params, **({"cursor": cursor} if cursor else {})}).json()
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items


def test_pages_follow_the_cursor_through_every_program(finished: Any) -> None:
    client, cid = finished
    newest_first = _all_pages(client, cid, limit=7)
    assert [p["iteration"] for p in newest_first] == list(range(30, -1, -1))
    by_score = _all_pages(client, cid, sort="score", limit=4)
    scores = [p["score"] for p in by_score if p["score"] is not None]
    assert scores == sorted(scores, reverse=True) and len(by_score) == 31
    unscored = by_score[len(scores):]
    assert unscored and all(p["score"] is None for p in unscored)  # failures last (a mutator campaign has some)
    island = _all_pages(client, cid, island=1, order="asc")
    assert [p["id"] for p in island] == [p["id"] for p in reversed(newest_first) if p["island"] == 1] != []
    statuses = {p["status"] for p in newest_first} - {"ok"}
    assert statuses, "a 30-iteration mutator campaign on circle_packing has failures"
    for status in statuses:  # each filter returns exactly the programs of that outcome, none missing
        assert [p["id"] for p in _all_pages(client, cid, status=status)] == [p["id"] for p in newest_first if p["status"] == status]


def test_a_cursor_from_another_listing_is_refused(finished: Any) -> None:
    client, cid = finished
    cursor = client.get(f"/campaigns/{cid}/programs", params={"limit": 2}).json()["next_cursor"]
    other = client.get(f"/campaigns/{cid}/programs", params={"cursor": cursor, "sort": "score"})
    assert other.status_code == 422 and "cursor" in other.json()["detail"]
    junk = client.get(f"/campaigns/{cid}/programs", params={"cursor": "%%%"})
    assert junk.status_code == 422


def test_program_detail_has_code_diff_origin_and_family(finished: Any) -> None:
    client, cid = finished
    best = client.get(f"/campaigns/{cid}/best").json()["program"]
    assert best["status"] == "ok" and best["model"] == "mutator" and best["template"] == "diff"
    assert best["diff"].startswith("--- program ") and "\n+" in best["diff"]
    assert "<<<<<<< SEARCH" in best["model_edit"]
    assert {"sum_radii"} <= set(best["metrics"]) and set(best["features"]) == {"code_length", "radius_cv"}
    parent = client.get(f"/programs/{best['parent_id']}").json()
    assert best["id"] in parent["children"]
    assert client.get(f"/campaigns/{cid}/best").json()["held_out"] is None  # circle packing has no held-out set
    assert client.get("/programs/nope").status_code == 404


def test_lineage_leads_from_the_initial_program_to_the_best(finished: Any) -> None:
    client, cid = finished
    best = client.get(f"/campaigns/{cid}/best").json()["program"]
    chain = client.get(f"/campaigns/{cid}/lineage/{best['id']}").json()["items"]
    assert chain[0]["origin"] == "initial" and chain[-1]["id"] == best["id"]
    assert all(b["parent_id"] == a["id"] for a, b in itertools.pairwise(chain))
    assert client.get(f"/campaigns/{cid}/lineage/nope").status_code == 404


def test_archive_lists_every_filled_cell_per_island(finished: Any) -> None:
    client, cid = finished
    body = client.get(f"/campaigns/{cid}/archive").json()
    assert [a["name"] for a in body["axes"]] == ["code_length", "radius_cv"]
    assert [i["island"] for i in body["islands"]] == [0, 1]
    assert all(island["cells"] for island in body["islands"])  # both islands have elites: the loop below checks something
    for island in body["islands"]:
        for cell in island["cells"]:
            assert cell["cell"] == ",".join(map(str, cell["coordinates"])) and len(cell["coordinates"]) == 2
            elite = client.get(f"/programs/{cell['elite_id']}").json()
            assert elite["score"] == cell["score"] and elite["cell"] == cell["cell"]


def test_pareto_front_of_a_single_objective_is_the_best(finished: Any) -> None:
    client, cid = finished
    body = client.get(f"/campaigns/{cid}/pareto").json()
    assert body["objectives"] == [{"metric": "sum_radii", "direction": "maximize"}]
    best = client.get(f"/campaigns/{cid}/best").json()["program"]
    assert [p["score"] for p in body["items"]] == [best["score"]]


def test_best_reports_held_out_instances_once_asked(client: TestClient) -> None:
    cid = start_campaign(client, "function_minimization", iterations=2)["id"]
    assert wait_for(client, cid, until=lambda b: b["status"] != "running")["status"] == "finished"
    assert client.get(f"/campaigns/{cid}/best").json()["held_out"] is None  # not computed yet
    computed = client.get(f"/campaigns/{cid}/best", params={"held_out": True}).json()
    assert computed["held_out"]["status"] == "ok" and computed["held_out"]["program_id"] == computed["program"]["id"]
    assert isinstance(computed["held_out"]["score"], float)
    assert client.get(f"/campaigns/{cid}/best").json()["held_out"] == computed["held_out"]  # recorded once, then read back
