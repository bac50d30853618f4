"""Campaign and model configuration: every payload validates or fails with the field named."""

from __future__ import annotations

from typing import Any

import hypothesis
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from evolve.catalog import DEFAULT_MODEL
from evolve.config import CampaignConfig, ModelSpec, parse_campaign_config
from evolve.errors import ConfigError

_value = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=True), st.text(max_size=20))
_model_keys = st.sampled_from([*sorted(ModelSpec.model_fields), "colour", "api_key"])
_model = st.dictionaries(_model_keys, _value, max_size=6)


def _resolves(payload: dict[str, Any], loc: tuple[int | str, ...]) -> bool:
    """Whether ``loc`` (a validation error's location) names a place in ``payload``."""
    here: Any = payload
    for part in loc:
        try:
            here = here[part]
        except (KeyError, IndexError, TypeError):
            return False
    return True


def test_any_payload_validates_or_names_the_field_at_fault() -> None:
    checked = {"examples": 0, "refused": 0}

    @given(models=st.lists(_model, max_size=3), budget=_value, tokens=_value)
    def check(models: list[dict[str, Any]], budget: Any, tokens: Any) -> None:
        checked["examples"] += 1
        payload = {"models": models, "max_cost_usd": budget, "max_tokens": tokens}
        try:
            config = parse_campaign_config(payload)
        except ConfigError as exc:
            message = str(exc)
            assert isinstance(exc.__cause__, ValidationError), exc.__cause__
            faults = [tuple(e["loc"]) for e in exc.__cause__.errors()]
            assert faults and message.startswith("campaign config: ")
            for loc in faults:  # every field at fault is named, by its full path in the payload
                assert _resolves(payload, loc), (loc, payload)
                assert ".".join(str(p) for p in loc) + ":" in message, (loc, message)
            checked["refused"] += 1
            hypothesis.event("refused")
            return
        assert config.models and all(m.weight > 0 for m in config.models)
        assert config.max_cost_usd is None or config.max_cost_usd > 0

    check()
    assert checked["refused"] >= 0.8 * checked["examples"], checked


_BAD_MODEL_VALUES: dict[str, list[Any]] = {
    "weight": [0, -1.5, "heavy"], "temperature": [2.5, -0.1], "max_tokens": [3, 10**7, 1.5], "mode": ["patch"],
    "timeout_s": [0, 7200], "max_in_flight": [0], "max_retries": [-1, 101], "api_base": ["ftp://x", 12],
    "api_key_env": ["not a name"], "input_usd_per_mtok": [-1], "colour": ["red"], "api_key": ["sk-abc"],
}


@given(
    n_models=st.integers(1, 3), which=st.integers(0, 2), field=st.sampled_from(sorted(_BAD_MODEL_VALUES)),
    pick=st.integers(0, 2), top_bad=st.sampled_from([None, ("max_cost_usd", 0), ("max_tokens", -3), ("islands", 0)]),
)
def test_the_message_names_the_very_field_that_is_wrong(n_models: int, which: int, field: str, pick: int,
                                                         top_bad: tuple[str, Any] | None) -> None:
    """One model setting (and perhaps one campaign setting) made wrong on purpose: the message names exactly those."""
    models: list[dict[str, Any]] = [{"name": "mutator"} for _ in range(n_models)]
    at = which % n_models
    values = _BAD_MODEL_VALUES[field]
    models[at] = {"name": "openai/gpt-4o-mini", field: values[pick % len(values)]}
    payload: dict[str, Any] = {"models": models}
    if top_bad is not None:
        payload[top_bad[0]] = top_bad[1]
    with pytest.raises(ConfigError) as info:
        parse_campaign_config(payload)
    named = {part.split(": ", 1)[0] for part in str(info.value).removeprefix("campaign config: ").split("; ")}
    expected = {f"models.{at}.{field}"} | ({top_bad[0]} if top_bad else set())
    assert expected <= named and all(n in expected or n.startswith(f"models.{at}.{field}") for n in named), (expected, named)


def test_a_key_itself_is_not_a_setting_only_the_name_of_its_variable() -> None:
    with pytest.raises(ConfigError, match="api_key: unknown key"):
        parse_campaign_config({"models": [{"name": "openai/gpt-4o-mini", "api_key": "sk-abc"}]})
    with pytest.raises(ConfigError, match="api_key_env"):
        parse_campaign_config({"models": [{"name": "openai/m", "api_key_env": "not a variable name"}]})


def test_the_default_campaign_uses_the_embedded_model_and_no_budget() -> None:
    config = CampaignConfig()
    assert [(m.name, m.mode, m.prompt_style) for m in config.models] == [(DEFAULT_MODEL, "diff", "compact")]
    assert config.models[0].in_process
    assert (config.max_cost_usd, config.max_tokens) == (None, None)


@pytest.mark.parametrize("name", ["gpt-4o-mini", "smollm3", "Mutator"])
def test_a_bare_unknown_model_name_says_how_to_write_one(name: str) -> None:
    with pytest.raises(ConfigError, match=f"unknown model '{name}'.*openai/gpt-4o-mini"):
        parse_campaign_config({"models": [{"name": name}]})


_kinds = st.sampled_from(["diff", "rewrite", "crossover", "merge", ""])
_shares = st.one_of(st.floats(-1, 5, allow_nan=False), st.integers(-2, 5), st.text(max_size=3))


@given(st.dictionaries(st.sampled_from(["strategy", "dedup", "selection", "mix", "meta_every", "novelty", "archive", "bogus"]),
                       st.one_of(st.dictionaries(_kinds, _shares, max_size=4), st.sampled_from(["evolve", "hill-climb", "bandit"]),
                                 st.booleans(), st.integers(-3, 100), st.none()), max_size=5))
def test_any_search_settings_either_validate_or_name_the_field_at_fault(search: dict[str, Any]) -> None:
    try:
        config = parse_campaign_config({"models": [{"name": "mutator"}], "search": search})
    except ConfigError as exc:
        assert str(exc).startswith("campaign config: search."), exc  # the field at fault, named
        return
    for spec in config.models:
        kinds = config.search.kinds_of(spec)
        assert kinds and all(k in ("diff", "rewrite", "crossover") and w > 0 for k, w in kinds.items())
    assert parse_campaign_config(config.model_dump(mode="json")) == config  # what is stored reads back the same


@pytest.mark.parametrize("name", [["smollm2"], {"a": 1}, 7, None])
def test_a_model_name_of_the_wrong_type_is_a_validation_error_not_a_crash(name: object) -> None:
    with pytest.raises(ValidationError):  # the REST API answers 422 with it (schemathesis found a 500 here)
        ModelSpec.model_validate({"name": name})
