"""The dashboard's server side: the page and its assets (no CDN, strict CSP), the overview, highlighting and children."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from evolve.server.dashboard import STATIC
from tests.server.conftest import TOKEN, finished_campaign, start_campaign, wait_for


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str]]:
    with finished_campaign(tmp_path_factory.mktemp("dashboard")) as found:
        yield found


def test_the_page_is_served_at_the_root_with_a_strict_content_security_policy(finished: tuple[TestClient, str]) -> None:
    client, _ = finished
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp and page.headers["x-content-type-options"] == "nosniff"
    assert '<script type="module" src="/static/js/main.js">' in page.text


def test_every_asset_comes_from_this_server(finished: tuple[TestClient, str]) -> None:
    client, _ = finished
    files = [p for p in STATIC.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"index.html", "style.css", "main.js", "campaign.js", "program.js", "plots.js", "heatmap.js"}
    for path in files:
        text = path.read_text()
        assert not re.search(r"(src|href)=\"(https?:)?//", text), f"{path.name} loads something from another host"
        assert not re.search(r"""(from|import\(|fetch\()\s*["'`](https?:)?//""", text), f"{path.name} reaches another host"
        if path.name != "index.html":
            served = client.get(f"/static/{path.relative_to(STATIC).as_posix()}")
            assert served.status_code == 200 and served.content == path.read_bytes()
    css = client.get("/highlight.css")
    assert css.status_code == 200 and ".hl .k" in css.text  # Pygments' keyword class
    assert client.get("/static/../settings.py").status_code == 404


def test_the_overview_sums_up_the_campaign(finished: tuple[TestClient, str]) -> None:
    client, cid = finished
    body = client.get(f"/campaigns/{cid}/overview", params={"points": 10}).json()
    campaign = body["campaign"]
    assert campaign["id"] == cid and campaign["status_counts"] and body["objective"]["metric"] == "sum_radii"
    assert body["known_best"] == pytest.approx(2.635983)
    series = body["series"]
    assert len(series) <= 10 and sum(b["programs"] for b in series) == 31
    assert sum(b["valid"] for b in series) == campaign["status_counts"]["ok"]
    steps = body["best_steps"]
    assert steps[0]["iteration"] == 0 and steps[-1]["program_id"] == campaign["best_program_id"]
    assert [s["score"] for s in steps] == sorted(s["score"] for s in steps)  # maximize: each step is higher
    assert sum(i["programs"] for i in body["islands"]) == 31 and len(body["islands"]) == 2
    [model] = body["models"]
    assert model["model"] == "mutator" and model["proposals"] == 30 and 0 <= model["improved"] <= model["valid"]
    events = client.get(f"/campaigns/{cid}/events", params={"follow": "false"}).text
    assert f"id: {body['last_event_id']}\n" in events


def test_the_overview_refuses_bad_input(finished: tuple[TestClient, str]) -> None:
    client, cid = finished
    assert client.get("/campaigns/nope/overview").status_code == 404
    bad = client.get(f"/campaigns/{cid}/overview", params={"points": 100_000})
    assert bad.status_code == 422 and bad.json()["field"] == "points"


def test_programs_come_highlighted_with_their_diff(finished: tuple[TestClient, str]) -> None:
    client, cid = finished
    child = next(p for p in client.get(f"/campaigns/{cid}/programs", params={"limit": 50}).json()["items"]
                 if p["parent_id"] and p["origin"] == "diff")
    detail = client.get(f"/programs/{child['id']}").json()
    lit = client.get(f"/programs/{child['id']}/highlighted").json()
    assert '<span class="k">def</span>' in lit["code"] and "linenos" in lit["code"]
    assert lit["diff"] is not None and '<span class="gi">' in lit["diff"]  # an inserted line
    inserted = next(line[1:] for line in detail["diff"].splitlines() if line.startswith("+") and not line.startswith("+++"))
    assert re.sub(r"<[^>]+>", "", lit["diff"]).count("+") >= 1 and inserted.strip().split()[0] in lit["diff"]
    initial = client.get(f"/programs/{detail['parent_id']}/highlighted").json()
    assert client.get("/programs/nope/highlighted").status_code == 404
    assert initial["code"]


def test_code_is_escaped_in_highlighted_html(make_client: Callable[..., TestClient], tmp_path: Path) -> None:
    client = make_client()
    from tests.server.conftest import quadratic_payload
    hostile = "# EVOLVE-BLOCK-START\ndef solve():\n    return 3.0  # </pre><script>alert(1)</script>\n# EVOLVE-BLOCK-END\n"
    problem = client.post("/problems", json=quadratic_payload(initial_program=hostile)).json()
    cid = start_campaign(client, problem["id"], iterations=1)["id"]
    body = wait_for(client, cid, until=lambda b: b["status"] != "running")
    lit = client.get(f"/programs/{body['best_program_id']}/highlighted").json()
    assert "<script>" not in lit["code"] and "&lt;script&gt;" in lit["code"]


def test_children_are_listed_with_their_outcomes(finished: tuple[TestClient, str]) -> None:
    client, cid = finished
    programs = client.get(f"/campaigns/{cid}/programs", params={"limit": 50}).json()["items"]
    initial = next(p for p in programs if p["parent_id"] is None)
    expected = sorted((p for p in programs if p["parent_id"] == initial["id"]), key=lambda p: p["iteration"])
    body = client.get(f"/programs/{initial['id']}/children").json()
    assert body["total"] == len(expected) and [c["id"] for c in body["items"]] == [p["id"] for p in expected]
    one = client.get(f"/programs/{initial['id']}/children", params={"limit": 1}).json()
    assert one["total"] == len(expected) and len(one["items"]) == min(1, len(expected))


def test_health_says_what_needs_the_token(make_client: Callable[..., TestClient]) -> None:
    open_server: dict[str, Any] = make_client().get("/health").json()
    assert (open_server["writes_need_token"], open_server["reads_need_token"]) == (False, False)
    guarded: dict[str, Any] = make_client(api_token=TOKEN).get("/health").json()
    assert (guarded["writes_need_token"], guarded["reads_need_token"]) == (True, False)  # loopback: reads stay open
