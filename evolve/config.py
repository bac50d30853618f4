"""Campaign configuration: validated at the edge, stored with the campaign, reused on resume."""

from __future__ import annotations

import os
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from evolve.catalog import CATALOG, DEFAULT_MODEL
from evolve.errors import ConfigError, StoreError, format_errors
from evolve.evaluators.protocol import ExecutorName
from evolve.sandbox.base import Backend

__all__ = [
    "BUILTIN_MODELS",
    "EMBEDDED_MODEL",
    "KINDS",
    "MAX_ITERATIONS",
    "ArchiveConfig",
    "CampaignConfig",
    "Kind",
    "ModelSpec",
    "NoveltyConfig",
    "SamplingConfig",
    "SearchConfig",
    "auto_islands",
    "parse_campaign_config",
    "stored_config",
]


MAX_ITERATIONS = 10_000_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def updated(self, *, source: str = "options", **changes: Any) -> Self:
        """This config with ``changes`` (a None leaves a setting as it is), validated as a whole.

        Raises:
            ConfigError: naming each setting at fault.
        """
        given = {k: v for k, v in changes.items() if v is not None}
        unknown = sorted(set(given) - set(type(self).model_fields))
        if unknown:
            raise ConfigError(f"{source}: unknown setting(s) {', '.join(unknown)}")
        if not given:
            return self
        try:
            return type(self).model_validate({**self.model_dump(exclude_unset=True), **given})
        except ValidationError as exc:
            raise ConfigError(f"{source}: {format_errors(exc)}") from exc


#: The model used when none is named: the catalog's best measured packaged model, run in-process.
EMBEDDED_MODEL = DEFAULT_MODEL
BUILTIN_MODELS = {
    **{m.name: f"{m.title}, embedded: run in-process on the CPU, offline, no key ({m.license})" for m in CATALOG.values()},
    "mutator": "random numeric and operator mutations, no language model; the baseline",
}
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"

Kind = Literal["diff", "rewrite", "crossover"]
KINDS: tuple[Kind, ...] = ("diff", "rewrite", "crossover")
Mix = dict[Kind, float]


def _check_mix(mix: Mix | None) -> Mix | None:
    if mix is not None:
        if any(w < 0 for w in mix.values()) or sum(mix.values()) <= 0:
            raise ValueError("a proposal mix needs non-negative shares with a positive sum, e.g. {diff: 0.6, rewrite: 0.3, crossover: 0.1}")
        mix = {k: w for k, w in mix.items() if w > 0}
    return mix


class ModelSpec(_Strict):
    """One model of the ensemble, and how to call it."""

    name: str = Field(
        default=EMBEDDED_MODEL, min_length=1, max_length=200,
        description=f"an embedded model ({', '.join(CATALOG)}; default {EMBEDDED_MODEL}), 'gguf:/path/model.gguf', "
                    "'mutator', or a litellm model string such as openai/gpt-4o-mini",
    )
    api_base: str | None = Field(default=None, max_length=500, pattern=r"^https?://", description="an OpenAI-compatible endpoint")
    api_key_env: str | None = Field(
        default=None, max_length=100, pattern=_ENV_NAME,
        description="the environment variable holding the key (never the key itself); needed to send one to an api_base",
    )
    weight: float = Field(default=1.0, gt=0, description="relative share of proposals in an ensemble")
    temperature: float = Field(default=0.8, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1, description="nucleus sampling (embedded models; default: the catalog's)")
    top_k: int | None = Field(default=None, ge=0, le=1000, description="top-k sampling, 0 for off (embedded models)")
    repeat_penalty: float | None = Field(default=None, gt=0, le=3, description="repetition penalty (embedded models)")
    threads: int | None = Field(default=None, ge=1, le=256, description="CPU threads of an embedded model (default: every core; "
                                "fewer keep an evaluation running beside it from stalling llama.cpp's spinning threads)")
    prompt: Literal["full", "compact"] | None = Field(
        default=None, description="full: the problem, inspirations, failures and the program; compact: the problem, the "
                                  "program and the last failure, asking for one small change (default: compact for "
                                  "embedded models, whose CPU time goes mostly into reading the prompt; full otherwise)")
    max_tokens: int = Field(default=4096, ge=16, le=200_000)
    mode: Literal["diff", "rewrite"] = Field(
        default="diff", description="SEARCH/REPLACE edits or whole-block rewrites (each embedded model has its own default)"
    )
    mix: Mix | None = Field(
        default=None, description="shares of proposal kinds for this model, e.g. {diff: 0.6, rewrite: 0.3, crossover: 0.1} "
                                  "(default: the campaign's search.mix, else this model's mode alone)")
    timeout_s: float = Field(default=120.0, gt=0, le=3600, description="per request")
    max_in_flight: int | None = Field(default=None, ge=1, le=1024,
                                      description="requests to this model at once (default: the campaign's llm_concurrency)")
    max_retries: int = Field(default=8, ge=0, le=100, description="retries of a transient failure (429, 5xx, timeout, reset)")
    retry_base_s: float = Field(default=1.0, ge=0, le=600, description="first backoff; doubles per retry, with jitter")
    retry_max_s: float = Field(default=60.0, ge=0, le=3600, description="longest backoff (a Retry-After may ask for more)")
    input_usd_per_mtok: float | None = Field(default=None, ge=0, description="price override; default: litellm's price data")
    output_usd_per_mtok: float | None = Field(default=None, ge=0, description="price override; default: litellm's price data")

    _valid_mix = field_validator("mix")(_check_mix)

    @model_validator(mode="before")
    @classmethod
    def _embedded_defaults(cls, data: Any) -> Any:
        # Each packaged model's measured settings (evolve.catalog; benchmarks/models.py): SmolLM2-135M cannot copy
        # SEARCH lines, so it rewrites; small models rarely stop by themselves, so a shorter cap bounds a proposal.
        name = data.get("name", EMBEDDED_MODEL) if isinstance(data, dict) else None
        if isinstance(data, dict) and isinstance(name, str) and (packaged := CATALOG.get(name)) is not None:
            defaults = {"mode": packaged.mode, "max_tokens": packaged.max_tokens, "temperature": packaged.temperature,
                        "top_p": packaged.top_p, "top_k": packaged.top_k, "repeat_penalty": packaged.repeat_penalty}
            data = {**data, **{k: v for k, v in defaults.items() if data.get(k) is None}}
        return data

    @classmethod
    def named(cls, name: str, *, source: str = "--model", **options: Any) -> ModelSpec:
        """The spec of model ``name`` with ``options`` (None: the model's own default), validated.

        Not ``ModelSpec().updated(name=...)``: that would carry the default model's catalog settings over to another.

        Raises:
            ConfigError: naming each option at fault.
        """
        try:
            return cls.model_validate({"name": name, **{k: v for k, v in options.items() if v is not None}})
        except ValidationError as exc:
            raise ConfigError(f"{source}: {format_errors(exc)}") from exc

    @property
    def in_process(self) -> bool:
        """Whether the model runs inside this process (a packaged model or a GGUF file), not behind an endpoint."""
        return self.api_base is None and (self.name in CATALOG or self.name.startswith("gguf:"))

    @property
    def prompt_style(self) -> Literal["full", "compact"]:
        return self.prompt or ("compact" if self.in_process else "full")

    @model_validator(mode="after")
    def _known_builtin(self, info: ValidationInfo) -> ModelSpec:
        from evolve.llm.plugins import is_plugin, plugin_names  # here: evolve.llm imports this module

        if is_plugin(self.name) or (info.context or {}).get("stored"):
            return self  # a stored campaign stays readable when the plug-in or catalog model it named is gone
        if self.api_base is not None and "/" not in self.name:
            raise ValueError(
                f"with api_base, name the model with its provider: openai/NAME or hosted_vllm/NAME (got '{self.name}')"
            )
        if "/" not in self.name and self.name not in BUILTIN_MODELS:
            known = ", ".join(sorted({*BUILTIN_MODELS, *plugin_names()}))
            raise ValueError(
                f"unknown model '{self.name}': use {known}, or a litellm model string with its provider "
                "(openai/gpt-4o-mini, anthropic/claude-3-5-haiku-latest, ollama/llama3, hosted_vllm/NAME with api_base)"
            )
        return self


class SamplingConfig(_Strict):
    """How parents and inspirations are drawn from an island's archive."""

    exploit: float = Field(default=0.7, ge=0, le=1, description="elites weighted towards high scores")
    explore: float = Field(default=0.2, ge=0, le=1, description="uniform over filled cells")
    random: float = Field(default=0.1, ge=0, le=1, description="any valid program of the island")
    top_inspirations: int = Field(default=2, ge=0, le=10)
    diverse_inspirations: int = Field(default=1, ge=0, le=10)
    recent_failures: int = Field(default=3, ge=0, le=10)

    @model_validator(mode="after")
    def _sums_to_one(self) -> SamplingConfig:
        total = self.exploit + self.explore + self.random
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"exploit + explore + random must sum to 1 (got {total:g})")
        return self


class NoveltyConfig(_Strict):
    """The novelty filter: a child too like an elite of its island is not evaluated."""

    enabled: Literal["auto", "on", "off"] = Field(
        default="auto", description="auto: on for language models, off for the mutator (each of whose edits changes one "
                                    "token, which any similarity threshold would reject by construction)")
    threshold: float = Field(default=0.98, gt=0, le=1,
                             description="token-trigram Jaccard similarity to an elite of its island (never its own "
                                         "parents) at or above which a child is a near-duplicate; one changed token of "
                                         "a 300-token program leaves about 0.975")
    action: Literal["retry", "reject"] = Field(
        default="retry", description="retry: ask the model once more, telling it which program it came too close to; "
                                     "reject: record the child as a near-duplicate at once")


class ArchiveConfig(_Strict):
    """The archive's cells: the problem's fixed grid, or centroids learned once from the campaign's first programs."""

    kind: Literal["grid", "cvt"] = Field(
        default="grid", description="grid: the problem's feature axes and ranges; cvt: centroids from the first valid "
                                    "programs' features, fixed once chosen (for features whose ranges are unknown)")
    cells: int = Field(default=50, ge=2, le=10_000, description="cvt: at most this many centroids")
    warmup: int = Field(default=100, ge=2, le=1_000_000, description="cvt: valid programs before the centroids are chosen")


class SearchConfig(_Strict):
    """How proposals are chosen: the strategy, dedup and novelty, the proposal kinds, the model selection."""

    strategy: Literal["evolve", "repeated-sampling", "hill-climb"] = Field(
        default="evolve", description="evolve: MAP-Elites islands; repeated-sampling: every proposal from the initial "
                                      "program, no archive in the prompt; hill-climb: always from the best program")
    dedup: bool = Field(default=True, description="a child equal (up to formatting and comments) to a program already "
                                                  "in the campaign is recorded as its duplicate, not evaluated")
    novelty: NoveltyConfig = Field(default_factory=NoveltyConfig)
    archive: ArchiveConfig = Field(default_factory=ArchiveConfig)
    selection: Literal["weights", "bandit"] = Field(
        default="weights", description="weights: each model by its weight; bandit: Thompson sampling over (model, kind) "
                                       "on the share of children that beat their parent, per unit of cost, the weights "
                                       "as its prior")
    mix: Mix | None = Field(default=None, description="shares of proposal kinds for models without a mix of their own")
    meta_every: int | None = Field(
        default=None, ge=0, le=1_000_000,
        description="every this many proposals of an island, a model summarises what worked and what failed, and later "
                    "prompts of that island read it; 0 never; default 25 for language models, never for the mutator")

    _valid_mix = field_validator("mix")(_check_mix)

    def kinds_of(self, spec: ModelSpec) -> Mix:
        """The proposal kinds a model is asked for, with their shares."""
        return spec.mix or self.mix or {spec.mode: 1.0}


class CampaignConfig(_Strict):
    """Everything that defines how a campaign runs."""

    models: list[ModelSpec] = Field(default_factory=lambda: [ModelSpec()], min_length=1, max_length=16)
    iterations: int = Field(default=100, ge=1, le=MAX_ITERATIONS)
    max_wall_s: float | None = Field(default=None, gt=0)
    seed: int = Field(default=0, ge=0, le=2**63 - 1)
    islands: int | None = Field(
        default=None, ge=1, le=64,
        description="default: one island per 250 proposals of the budget, 1 to 4, decided when the campaign is created (an "
                    "island needs a few hundred proposals of its own to go deep; 4 islands sharing 200 proposals lost to "
                    "hill-climbing in benchmarks/search_quality.py)")
    migration_interval: int = Field(default=10, ge=1, description="generations between ring migrations")
    migration_size: int = Field(default=1, ge=1, le=16, description="best programs copied to the next island")
    eval_concurrency: int = Field(default_factory=lambda: min(256, os.cpu_count() or 1), ge=1, le=256)
    llm_concurrency: int = Field(default=4, ge=1, le=1024, description="model calls in flight")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    sandbox: Backend = Field(
        default="auto", description="auto: bwrap where it works, else docker; process only when asked for"
    )
    executor: ExecutorName = Field(
        default="warm", description="warm: long-lived evaluator workers and sandbox zygotes; cold: fresh processes per "
                                    "evaluation; ray: warm evaluators on the nodes of a Ray cluster"
    )
    evaluator_sandbox: bool = Field(
        default=False, description="run the problem's evaluator.py in a sandbox of its own (bubblewrap), its candidate "
                                   "calls served by evolve: for evaluators you did not write (the server sets it for "
                                   "every submitted problem)",
    )
    ray_address: str | None = Field(default=None, min_length=1, max_length=300,
                                    description="the Ray cluster's head (host:port); default RAY_ADDRESS, else this host's")
    max_cost_usd: float | None = Field(default=None, gt=0, description="stop once model calls have cost this much")
    max_tokens: int | None = Field(default=None, gt=0, description="stop once model calls have used this many tokens")

    @property
    def island_count(self) -> int:
        """The islands: as set, else as ``auto_islands`` decides (a stored campaign's config always has them set)."""
        return self.islands or auto_islands(self.iterations)


PROPOSALS_PER_ISLAND = 250
MAX_AUTO_ISLANDS = 4


def auto_islands(iterations: int) -> int:
    """The islands a campaign of ``iterations`` proposals gets when it does not say."""
    return max(1, min(MAX_AUTO_ISLANDS, iterations // PROPOSALS_PER_ISLAND))


def parse_campaign_config(data: dict[str, Any], *, source: str = "campaign config") -> CampaignConfig:
    """Validate a campaign config mapping.

    Raises:
        ConfigError: naming each field at fault.
    """
    try:
        return CampaignConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {format_errors(exc)}") from exc



#: a campaign stored before search settings existed resumes as it ran: no dedup, novelty or meta-summaries
_LEGACY_SEARCH = {"dedup": False, "novelty": {"enabled": "off"}, "meta_every": 0}


def stored_config(data: dict[str, Any], *, campaign: str) -> CampaignConfig:
    """A campaign's config as the store holds it (JSON), parsed once where it is read, older layouts included.

    Raises:
        StoreError: when the stored config is not one this evolve can read (written by a newer one, or edited by hand).
    """
    try:
        return CampaignConfig.model_validate(data if "search" in data else {**data, "search": _LEGACY_SEARCH},
                                             context={"stored": True})
    except ValidationError as exc:
        raise StoreError(f"campaign {campaign}'s stored config cannot be read: {format_errors(exc)} (written by a newer "
                         "evolve, or edited by hand?)") from exc
