"""The API's campaign request is the CLI's campaign config, less the sandbox (the server's choice), plus the problem."""

from __future__ import annotations

from evolve.config import CampaignConfig
from evolve.server.schemas import CampaignCreate


def test_campaign_request_offers_every_campaign_setting_but_the_sandbox_and_the_ray_cluster() -> None:
    # the server's operator decides both (EVOLVE_SANDBOX, EVOLVE_RAY_ADDRESS)
    assert set(CampaignCreate.model_fields) == set(CampaignConfig.model_fields) - {"sandbox", "ray_address"} | {"problem"}
    body = CampaignCreate(problem="circle_packing")
    config = CampaignConfig.model_validate(body.model_dump(exclude={"problem"}))
    assert config.sandbox == "auto" and config.models == body.models
