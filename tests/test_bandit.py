"""Choosing the model and the kind of proposal: fixed weights and the cost-aware Thompson bandit."""

from __future__ import annotations

from collections import Counter

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from evolve.bandit import Bandit, Selector, selector
from evolve.config import ModelSpec, SearchConfig
from evolve.store.rows import ModelStats

USEFUL, USELESS = ModelSpec(name="mutator"), ModelSpec(name="openai/useless", api_base="http://127.0.0.1:9/v1")


def _simulate(bandit: Selector, rates: dict[str, float], n: int, seed: int, tokens: dict[str, int] | None = None) -> Counter[str]:
    rng = np.random.default_rng(seed)
    chosen: Counter[str] = Counter()
    for _ in range(n):
        arm = bandit.choose(rng)
        name = bandit.specs[arm.model].name
        chosen[name] += 1
        bandit.record(name, arm.kind, improved=int(rng.random() < rates[name]), tokens=(tokens or {}).get(name, 1000), usd=0.0)
    return chosen


def test_the_bandit_sends_most_proposals_to_the_model_that_improves() -> None:
    for seed in range(5):
        bandit = selector([USEFUL, USELESS], SearchConfig(selection="bandit"))
        chosen = _simulate(bandit, {"mutator": 0.2, "openai/useless": 0.0}, 200, seed)
        assert chosen["mutator"] >= 160, chosen  # >= 80% after 200 proposals


def test_fixed_weights_keep_their_shares_whatever_happens() -> None:
    fixed = selector([USEFUL, USELESS.model_copy(update={"weight": 3.0})], SearchConfig())
    chosen = _simulate(fixed, {"mutator": 0.5, "openai/useless": 0.0}, 2000, 0)
    assert 0.70 < chosen["openai/useless"] / 2000 < 0.80


def test_at_equal_success_the_cheaper_model_gets_more() -> None:
    bandit = selector([USEFUL, USELESS], SearchConfig(selection="bandit"))
    chosen = _simulate(bandit, {"mutator": 0.3, "openai/useless": 0.3}, 400, 1, tokens={"mutator": 500, "openai/useless": 5000})
    assert chosen["mutator"] > 3 * chosen["openai/useless"], chosen


def test_the_weights_are_the_prior() -> None:
    bandit = Bandit([USEFUL, USELESS.model_copy(update={"weight": 0.25})], SearchConfig(selection="bandit"))
    means = {e.model: e.mean for e in bandit.estimates()}
    assert means["mutator"] > means["openai/useless"]  # before any outcome
    rng = np.random.default_rng(0)
    first = Counter(bandit.specs[bandit.choose(rng).model].name for _ in range(500))
    assert first["mutator"] > first["openai/useless"]


def test_arms_are_model_and_kind_pairs_from_the_mix() -> None:
    search = SearchConfig(selection="bandit", mix={"diff": 0.6, "rewrite": 0.3, "crossover": 0.1})
    bandit = Bandit([USEFUL.model_copy(update={"mix": {"diff": 1.0}}), USELESS], search)
    assert [(a.model, a.kind) for a in bandit.arms] == [(0, "diff"), (1, "diff"), (1, "rewrite"), (1, "crossover")]
    assert np.isclose(bandit.prior.sum(), 1.0)


def test_a_bandit_resumes_from_the_stores_counts() -> None:
    def stats(model: str, proposals: int, improved: int) -> ModelStats:
        return ModelStats(model=model, template="diff", proposals=proposals, valid=proposals, improved=improved,
                          mean_improvement=None, best_fitness=None, requests=proposals, failed_requests=0,
                          prompt_tokens=900 * proposals, completion_tokens=100 * proposals, cost_usd=0.0, mean_latency_s=None)

    resumed = selector([USEFUL, USELESS], SearchConfig(selection="bandit"), [stats("mutator", 100, 30), stats("openai/useless", 40, 0)])
    est = {e.model: e for e in resumed.estimates()}
    assert est["mutator"].proposals == 100 and est["mutator"].improved == 30 and est["openai/useless"].proposals == 40
    assert est["mutator"].cost_per_proposal == 1000 and est["mutator"].cost_unit == "tokens"
    assert round(est["mutator"].share, 3) == round(100 / 140, 3)
    rng = np.random.default_rng(0)
    assert Counter(resumed.specs[resumed.choose(rng).model].name for _ in range(200))["mutator"] > 190


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 10_000), st.floats(0, 1)), max_size=50), st.integers(0, 2**32 - 1))
def test_any_history_leaves_a_valid_choice_and_estimates(history: list[tuple[bool, int, float]], seed: int) -> None:
    bandit = Bandit([USEFUL, USELESS], SearchConfig(selection="bandit"))
    for i, (improved, tokens, usd) in enumerate(history):
        bandit.record(bandit.specs[i % 2].name, "diff", improved=int(improved), tokens=tokens, usd=usd)
    arm = bandit.choose(np.random.default_rng(seed))
    assert arm in bandit.arms
    assert all(0 < e.mean < 1 for e in bandit.estimates())
