"""The API's campaign request is the CLI's campaign config, less what the server decides, plus the problem."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from evolve.config import CampaignConfig
from evolve.server.schemas import SERVER_CHOSEN, CampaignCreate


def test_campaign_request_offers_every_campaign_setting_but_where_candidates_and_evaluators_run() -> None:
    # the server's operator decides these (EVOLVE_SANDBOX, EVOLVE_RAY_ADDRESS, EVOLVE_SANDBOX_EVALUATORS)
    assert {"sandbox", "ray_address", "evaluator_sandbox"} == SERVER_CHOSEN
    assert set(CampaignCreate.model_fields) == set(CampaignConfig.model_fields) - SERVER_CHOSEN | {"problem"}
    fields = CampaignCreate.model_validate({"problem": "circle_packing"}).model_dump()
    fields.pop("problem")
    assert CampaignConfig.model_validate(fields) == CampaignConfig()  # the same defaults, the CPU count included
    with pytest.raises(ValidationError, match="sandbox"):
        CampaignCreate.model_validate({"problem": "circle_packing", "sandbox": "process"})
    with pytest.raises(ValidationError, match="evaluator_sandbox"):  # a client cannot ask for its evaluator to be trusted
        CampaignCreate.model_validate({"problem": "circle_packing", "evaluator_sandbox": False})


def test_the_request_and_the_config_declare_each_shared_setting_identically() -> None:
    """Fails as soon as a field of the campaign config changes and the request does not follow (or is re-declared)."""
    request_schema = CampaignCreate.model_json_schema()["properties"]
    config_schema = CampaignConfig.model_json_schema()["properties"]
    for name, mine in CampaignConfig.model_fields.items():
        if name in SERVER_CHOSEN:
            continue
        theirs = CampaignCreate.model_fields[name]
        assert (theirs.annotation, theirs.default, theirs.default_factory, theirs.metadata, theirs.description) == (
            mine.annotation, mine.default, mine.default_factory, mine.metadata, mine.description), name
        assert request_schema[name] == config_schema[name], name
