"""Campaign configuration: validated at the edge, stored with the campaign, reused on resume."""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from evolve.errors import ConfigError

__all__ = ["CampaignConfig", "ModelSpec", "SamplingConfig", "parse_campaign_config"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSpec(_Strict):
    """One model of the ensemble."""

    name: str = Field(default="mutator", min_length=1, max_length=200, description="'mutator' or a litellm model string")
    api_base: str | None = Field(default=None, max_length=500)
    weight: float = Field(default=1.0, gt=0)
    temperature: float = Field(default=0.8, ge=0, le=2)
    max_tokens: int = Field(default=4096, ge=16, le=200_000)
    mode: Literal["diff", "rewrite"] = "diff"
    timeout_s: float = Field(default=120.0, gt=0, le=3600)


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


class CampaignConfig(_Strict):
    """Everything that defines how a campaign runs."""

    models: list[ModelSpec] = Field(default_factory=lambda: [ModelSpec()], min_length=1, max_length=16)
    iterations: int = Field(default=100, ge=1, le=10_000_000)
    max_wall_s: float | None = Field(default=None, gt=0)
    seed: int = Field(default=0, ge=0, le=2**63 - 1)
    islands: int = Field(default=4, ge=1, le=64)
    migration_interval: int = Field(default=10, ge=1, description="generations between ring migrations")
    migration_size: int = Field(default=1, ge=1, le=16, description="best programs copied to the next island")
    eval_concurrency: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=256)
    llm_concurrency: int = Field(default=4, ge=1, le=1024, description="model calls in flight")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    sandbox: Literal["auto", "bwrap", "docker", "process"] = Field(
        default="auto", description="auto: bwrap where it works, else docker; process only when asked for"
    )


def parse_campaign_config(data: dict[str, Any], *, source: str = "campaign config") -> CampaignConfig:
    """Validate a campaign config mapping.

    Raises:
        ConfigError: naming each field at fault.
    """
    try:
        return CampaignConfig.model_validate(data)
    except ValidationError as exc:
        parts = [f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}" for e in exc.errors()]
        raise ConfigError(f"{source}: " + "; ".join(parts)) from exc
