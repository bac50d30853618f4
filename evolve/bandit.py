"""Which model, and which kind of proposal, to ask next: fixed weights, or a cost-aware Thompson-sampling bandit.

An arm is a (model, kind) pair: ``diff``, ``rewrite`` or ``crossover`` for
one model of the ensemble. The bandit's reward for a proposal is whether its
child beat its parent (a valid child with a higher fitness). That is the
improvement over the parent normalized in the one way that holds for every
problem (fitness scales differ by orders of magnitude between problems, and
one lucky jump must not make an arm look good for a hundred proposals), and it
is exactly what the store's ``model_stats`` counts, so the bandit's state *is*
the store: a resumed campaign, ``evolve status``, the API and the dashboard all
read the same counts, and nothing extra has to survive a crash.

Each arm's success rate has a Beta posterior whose prior is the arm's
weight: ``Beta(w, 1)`` with ``w`` its share of the prior weights over the
largest share (equal weights: every arm starts uniform, Beta(1, 1); an arm
weighted a quarter of another starts at a mean of 0.2 against 0.5). A weak
prior on purpose: an optimistic one (Beta(2, 1)) made a useless arm take
about 2/p proposals before it lost to one that improves a share p of the
time, a third of a 60-proposal campaign at p = 0.15. Each proposal samples every arm's rate and takes the arm with
the highest rate per unit of cost (its mean tokens, or dollars when any call
was priced, over the cheapest arm's), so a model that improves as often at a
tenth of the price wins. Thompson sampling rather than UCB: a useless arm is
left after about ln(N)/KL proposals instead of UCB's 2·ln(N)/Δ², which at a
20% success rate is tens of proposals rather than hundreds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from evolve.config import CampaignConfig, Kind, ModelSpec, SearchConfig
from evolve.store.rows import ModelStats

__all__ = ["Arm", "ArmEstimate", "Bandit", "Selector", "model_report", "selector"]


@dataclass(frozen=True, slots=True)
class Arm:
    model: int  # index into the ensemble's specs
    kind: Kind


@dataclass(frozen=True, slots=True)
class ArmEstimate:
    """One arm as status displays show it."""

    model: str
    kind: str
    proposals: int
    improved: int
    mean: float  # the posterior mean of its success rate
    cost_per_proposal: float
    cost_unit: str  # "tokens", or "usd" when every arm tried was priced
    share: float  # of the proposals so far


@dataclass(slots=True)
class _Counts:
    proposals: int = 0
    improved: int = 0
    tokens: int = 0
    usd: float = 0.0


class Selector:
    """Chooses (model, kind) for each proposal; ``Bandit`` learns from outcomes, this one keeps the weights fixed."""

    def __init__(self, specs: list[ModelSpec], search: SearchConfig) -> None:
        self.specs = specs
        self.arms: list[Arm] = []
        prior: list[float] = []
        self._kinds = [search.kinds_of(spec) for spec in specs]
        for i, spec in enumerate(specs):
            kinds = self._kinds[i]
            total = sum(kinds.values())
            for kind, share in kinds.items():
                self.arms.append(Arm(i, kind))
                prior.append(spec.weight * share / total)
        weights = np.array(prior, dtype=np.float64)
        self.prior = weights / weights.sum()

    def choose(self, rng: np.random.Generator) -> Arm:
        return self.arms[int(rng.choice(len(self.arms), p=self.prior))] if len(self.arms) > 1 else self.arms[0]

    def record(self, model: str, kind: str, *, improved: int, tokens: int, usd: float, proposals: int = 1) -> None:
        """Outcomes of ``proposals`` proposals, ``improved`` of which beat their parent (fixed weights learn nothing)."""

    def estimates(self) -> list[ArmEstimate]:
        return []

    def fallback(self, arm: Arm) -> Arm:
        """The arm to use when ``arm`` cannot be used for this proposal (a crossover without a second parent): the
        model's largest other kind in its mix, else its own mode."""
        others = [(share, kind) for kind, share in self._kinds[arm.model].items() if kind != arm.kind]
        return Arm(arm.model, max(others)[1] if others else self.specs[arm.model].mode)


class Bandit(Selector):
    """Cost-aware Thompson sampling over (model, kind); see the module docstring."""

    def __init__(self, specs: list[ModelSpec], search: SearchConfig) -> None:
        super().__init__(specs, search)
        top = float(self.prior.max())
        self._alpha0 = np.array([max(p / top, 0.05) for p in self.prior])
        self._beta0 = np.ones(len(self.arms))
        self._counts = [_Counts() for _ in self.arms]
        self._index: dict[tuple[str, str], list[int]] = {}
        for i, arm in enumerate(self.arms):
            self._index.setdefault((specs[arm.model].name, arm.kind), []).append(i)

    def record(self, model: str, kind: str, *, improved: int, tokens: int, usd: float, proposals: int = 1) -> None:
        """Add outcomes (one proposal's, or a resumed campaign's totals) to the arm(s) of ``model`` and ``kind``.

        Two specs of the same model name share their outcomes: the store records a proposal by model name.
        """
        for i in self._index.get((model, kind), ()):
            c = self._counts[i]
            c.proposals += proposals
            c.improved += improved
            c.tokens += tokens
            c.usd += usd

    def _cost(self, c: _Counts, priced: bool) -> float:
        return (c.usd if priced else c.tokens) / c.proposals if c.proposals else 0.0

    def _priced(self) -> bool:
        """Dollars when every arm tried so far was priced; else tokens (one unit for all arms)."""
        tried = [c for c in self._counts if c.proposals]
        return bool(tried) and all(c.usd > 0 for c in tried)

    def _costs(self) -> np.ndarray:
        priced = self._priced()
        mean = np.array([self._cost(c, priced) or np.nan for c in self._counts])
        if np.all(np.isnan(mean)):
            return np.ones(len(self.arms))
        mean = np.where(np.isnan(mean), np.nanmean(mean), mean)
        relative: np.ndarray = mean / mean.min()
        return relative

    def _posterior(self) -> tuple[np.ndarray, np.ndarray]:
        n = np.array([c.proposals for c in self._counts], dtype=np.float64)
        s = np.array([c.improved for c in self._counts], dtype=np.float64)
        return self._alpha0 + s, self._beta0 + (n - s)

    def choose(self, rng: np.random.Generator) -> Arm:
        alpha, beta = self._posterior()
        value = rng.beta(alpha, beta) / self._costs()
        return self.arms[int(np.argmax(value))]

    def estimates(self) -> list[ArmEstimate]:
        alpha, beta = self._posterior()
        total = sum(c.proposals for c in self._counts) or 1
        priced = self._priced()
        return [
            ArmEstimate(model=self.specs[arm.model].name, kind=arm.kind, proposals=c.proposals, improved=c.improved,
                        mean=float(a / (a + b)), cost_per_proposal=self._cost(c, priced), cost_unit="usd" if priced else "tokens",
                        share=c.proposals / total)
            for arm, c, a, b in zip(self.arms, self._counts, alpha, beta, strict=True)
        ]


def model_report(config: CampaignConfig, stats: list[ModelStats]) -> list[dict[str, Any]]:
    """``stats`` as status displays show them (the CLI, the API, the dashboard): each (model, kind) with its share of
    the proposals and, under ``selection: bandit``, the bandit's estimate of its success rate (None otherwise)."""
    total = sum(s.proposals for s in stats) or 1
    estimates: dict[tuple[str, str], float] = {}
    if config.search.selection == "bandit":
        estimates = {(e.model, e.kind): e.mean for e in selector(config.models, config.search, stats).estimates()}
    return [{**asdict(s), "success_rate": s.success_rate, "valid_rate": s.success_rate, "share": s.proposals / total,
             "bandit_estimate": estimates.get((s.model, s.template or ""))} for s in stats]


def selector(specs: list[ModelSpec], search: SearchConfig, stats: Iterable[ModelStats] = ()) -> Selector:
    """The selector a campaign's search settings ask for, having learned from ``stats`` (the store's ``model_stats``)."""
    chosen = Bandit(specs, search) if search.selection == "bandit" else Selector(specs, search)
    for st in stats:
        chosen.record(st.model, st.template or "", improved=st.improved, proposals=st.proposals,
                      tokens=st.prompt_tokens + st.completion_tokens, usd=st.cost_usd)
    return chosen
