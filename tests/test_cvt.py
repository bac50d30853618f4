"""The CVT archive: cells learned once from a campaign's first programs, fixed for good, read back on resume."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from evolve.campaign import Campaign
from evolve.config import CampaignConfig
from evolve.cvt import WARMUP_CELL, Centroids, kmeans
from evolve.problem import resolve_problem
from evolve.store import Store
from evolve.values import EvalStatus
from tests.server.conftest import TOKEN, start_campaign, wait_for


def test_kmeans_finds_separated_clusters_and_never_more_centroids_than_points() -> None:
    rng = np.random.default_rng(0)
    blobs = np.concatenate([rng.normal(c, 0.05, size=(30, 2)) for c in ((0, 0), (5, 5), (0, 5))])
    centroids = kmeans(blobs, 3, np.random.default_rng(1))
    for c in ((0, 0), (5, 5), (0, 5)):
        assert np.min(np.linalg.norm(centroids - np.array(c), axis=1)) < 0.2
    assert len(kmeans(np.array([[1.0, 2.0]] * 10), 8, rng)) == 1


def test_centroids_file_programs_by_their_standardized_features_and_survive_json() -> None:
    samples = [{"a": float(a), "b": 1000.0 * b} for a in range(10) for b in range(10)]
    centroids = Centroids.learn(["a", "b"], samples, cells=20, rng=np.random.default_rng(2))
    assert len(centroids.points) == 20
    assert Centroids.from_json(centroids.to_json()) == centroids
    cells = {centroids.cell(s) for s in samples}
    assert len(cells) == 20  # both features matter though their scales differ a thousandfold
    assert centroids.cell({"a": 0.0, "b": 0.0}) == centroids.cell({"a": 0.1, "b": 10.0})


def test_a_cvt_campaign_learns_its_cells_once_and_keeps_them_across_resume(file_store: Store, tmp_path: Path) -> None:
    problem = resolve_problem("circle_packing")
    config = CampaignConfig.model_validate({
        "models": [{"name": "mutator"}], "iterations": 40, "islands": 2, "eval_concurrency": 2, "seed": 3,
        "search": {"archive": {"kind": "cvt", "cells": 6, "warmup": 10}}})
    campaign = asyncio.run(Campaign.create(file_store, problem, config, workdir=tmp_path / "w1"))
    assert file_store.initial_program(campaign.id).cell == WARMUP_CELL
    asyncio.run(campaign.run())
    (chosen,) = file_store.events(campaign.id, kind="cvt_centroids")
    centroids = Centroids.from_json(chosen["data"]["centroids"])
    assert chosen["data"]["programs"] >= 10 and 1 < len(centroids.points) <= 6

    resumed = Campaign.resume(file_store, campaign.id, workdir=tmp_path / "w2", iterations=60)
    assert resumed.archive.centroids == centroids
    asyncio.run(resumed.run())
    assert len(file_store.events(campaign.id, kind="cvt_centroids")) == 1  # fixed once chosen

    valid = [p for p in file_store.list_programs(campaign.id) if p.status is EvalStatus.OK]
    assert all(p.cell == centroids.cell(p.features) for p in valid)  # every one filed by the same centroids
    best: dict[tuple[int, str], float] = {}
    for p in valid:
        assert p.fitness is not None and p.cell is not None
        best[(p.island, p.cell)] = max(best.get((p.island, p.cell), -np.inf), p.fitness)
    for elite in file_store.elites(campaign.id):
        assert elite.cell != WARMUP_CELL and elite.fitness >= best.get((elite.island, elite.cell), -np.inf) - 1e-12


def test_the_dashboard_maps_a_cvt_campaigns_elites_by_their_features(tmp_path: Path) -> None:
    from evolve.server import create_app
    from tests.server.conftest import BASE_URL, settings_for

    (tmp_path / "work").mkdir()
    with TestClient(create_app(settings_for(tmp_path)), raise_server_exceptions=False, base_url=BASE_URL) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        cid = start_campaign(client, "circle_packing", iterations=30,
                             search={"archive": {"kind": "cvt", "cells": 5, "warmup": 8}})["id"]
        assert wait_for(client, cid, until=lambda b: b["status"] != "running")["status"] == "finished"
        archive = client.get(f"/campaigns/{cid}/archive")
        assert archive.status_code == 200, archive.text
        cells = [c for island in archive.json()["islands"] for c in island["cells"]]
        assert cells and all(c["cell"].startswith("c") and len(c["coordinates"]) == 2 for c in cells)
        assert client.get(f"/campaigns/{cid}/overview").status_code == 200
