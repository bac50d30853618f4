"""Campaign and model configuration: every payload validates or fails with the field named."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evolve.config import CampaignConfig, ModelSpec, parse_campaign_config
from evolve.errors import ConfigError

_value = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=True), st.text(max_size=20))
_model_keys = st.sampled_from([*sorted(ModelSpec.model_fields), "colour", "api_key"])
_model = st.dictionaries(_model_keys, _value, max_size=6)


@given(models=st.lists(_model, max_size=3), budget=_value, tokens=_value)
def test_any_payload_validates_or_names_the_field_at_fault(models: list[dict[str, Any]], budget: Any, tokens: Any) -> None:
    payload = {"models": models, "max_cost_usd": budget, "max_tokens": tokens}
    try:
        config = parse_campaign_config(payload)
    except ConfigError as exc:
        assert str(exc).startswith("campaign config: ") and ":" in str(exc)[len("campaign config: "):]
        return
    assert config.models and all(m.weight > 0 for m in config.models)
    assert config.max_cost_usd is None or config.max_cost_usd > 0


def test_a_key_itself_is_not_a_setting_only_the_name_of_its_variable() -> None:
    with pytest.raises(ConfigError, match="api_key: Extra inputs are not permitted"):
        parse_campaign_config({"models": [{"name": "openai/gpt-4o-mini", "api_key": "sk-abc"}]})
    with pytest.raises(ConfigError, match="api_key_env"):
        parse_campaign_config({"models": [{"name": "openai/m", "api_key_env": "not a variable name"}]})


def test_the_default_campaign_uses_the_embedded_model_and_no_budget() -> None:
    config = CampaignConfig()
    assert [(m.name, m.mode) for m in config.models] == [("smollm2", "rewrite")]
    assert (config.max_cost_usd, config.max_tokens) == (None, None)


@pytest.mark.parametrize("name", ["gpt-4o-mini", "smollm3", "Mutator"])
def test_a_bare_unknown_model_name_says_how_to_write_one(name: str) -> None:
    with pytest.raises(ConfigError, match=f"unknown model '{name}'.*openai/gpt-4o-mini"):
        parse_campaign_config({"models": [{"name": name}]})
