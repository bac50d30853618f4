"""MAP-Elites cells and parent sampling over a real store."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from evolve.archive import Archive, SampleMode, cell_key, exploit_weights
from evolve.config import SamplingConfig
from evolve.problem import FeatureAxis, Problem
from evolve.store import EliteRow, Store
from evolve.values import EvalStatus
from tests.store.helpers import make_campaign, make_program


def test_cell_key_bins_each_axis_and_clamps() -> None:
    axes = [FeatureAxis(name="a", min=0, max=1, bins=4), FeatureAxis(name="b", min=0, max=100, bins=10)]
    assert cell_key({"a": 0.3, "b": 55}, axes) == "1,5"
    assert cell_key({"a": -7, "b": 1e12}, axes) == "0,9"
    assert cell_key({}, []) == "0"


def test_exploit_weights_favour_good_and_unexpanded_parents() -> None:
    rows = [EliteRow(0, str(i), f"p{i}", f, c) for i, (f, c) in enumerate([(1.0, 0), (2.0, 0), (3.0, 0), (3.0, 9)])]
    w = exploit_weights(rows)
    assert pytest.approx(w.sum()) == 1.0
    assert w[2] > w[1] > w[0]  # higher fitness, more weight
    assert w[3] < w[2]  # same fitness, many children: less weight


def test_sampling_modes_follow_the_configured_ratios(store: Store, quadratic: Problem) -> None:
    cid, _ = make_campaign(store, quadratic, islands=1)
    for i in range(1, 11):
        store.record_program(make_program(cid, i, fitness=float(i), cell=str(i)))
    sampling = SamplingConfig(exploit=0.5, explore=0.3, random=0.2)
    archive = Archive(store, cid, axes=[], sampling=sampling)
    rng = np.random.default_rng(7)
    counts = Counter(archive.choose_mode(rng) for _ in range(4000))
    assert counts[SampleMode.EXPLOIT] / 4000 == pytest.approx(0.5, abs=0.03)
    assert counts[SampleMode.EXPLORE] / 4000 == pytest.approx(0.3, abs=0.03)
    assert counts[SampleMode.RANDOM] / 4000 == pytest.approx(0.2, abs=0.03)


def test_exploitation_picks_high_scores_more_often_than_exploration(store: Store, quadratic: Problem) -> None:
    cid, _ = make_campaign(store, quadratic, islands=1)
    for i in range(1, 11):
        store.record_program(make_program(cid, i, fitness=float(i), cell=str(i)))
    exploit = Archive(store, cid, axes=[], sampling=SamplingConfig(exploit=1.0, explore=0.0, random=0.0))
    explore = Archive(store, cid, axes=[], sampling=SamplingConfig(exploit=0.0, explore=1.0, random=0.0))
    rng = np.random.default_rng(3)
    mean_exploit = float(np.mean([exploit.sample(0, rng).parent.fitness or 0.0 for _ in range(300)]))
    mean_explore = float(np.mean([explore.sample(0, rng).parent.fitness or 0.0 for _ in range(300)]))
    assert mean_exploit > mean_explore + 1.0
    assert mean_explore == pytest.approx(np.mean([0, *range(1, 11)]), abs=0.8)  # uniform over the 11 cells


def test_sample_is_reproducible_from_the_seed(store: Store, quadratic: Problem) -> None:
    cid, _ = make_campaign(store, quadratic, islands=1)
    for i in range(1, 8):
        store.record_program(make_program(cid, i, fitness=float(i), cell=str(i)))
    archive = Archive(store, cid, axes=[], sampling=SamplingConfig())
    first = [archive.sample(0, np.random.default_rng(11)).parent.id for _ in range(5)]
    assert first == [archive.sample(0, np.random.default_rng(11)).parent.id for _ in range(5)]


def test_sample_carries_inspirations_and_recent_failures(store: Store, quadratic: Problem) -> None:
    cid, _ = make_campaign(store, quadratic, islands=1)
    for i in range(1, 6):
        store.record_program(make_program(cid, i, fitness=float(i), cell=str(i)))
    store.record_program(make_program(cid, 6, status=EvalStatus.DIFF_FAILED, fitness=None))
    archive = Archive(store, cid, axes=[], sampling=SamplingConfig(top_inspirations=2, diverse_inspirations=1))
    sample = archive.sample(0, np.random.default_rng(0))
    assert len(sample.inspirations) == 3 and sample.parent.id not in {p.id for p in sample.inspirations}
    assert [f.status for f in sample.failures] == [EvalStatus.DIFF_FAILED]
