"""The dashboard in a real browser (headless Chromium) against ``evolve serve`` holding real campaigns.

Each test leaves screenshots of what the page showed under test-output/dashboard/ (or $EVOLVE_TEST_OUTPUT).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from playwright.sync_api import Browser, Page

from tests.conftest import QUADRATIC_PROGRAM, QUADRATIC_YAML
from tests.server.browser import chromium, screenshot_dir, wait_ready
from tests.server.conftest import TOKEN, quadratic_payload
from tests.server.live import ServeProcess

pytestmark = [pytest.mark.browser, pytest.mark.slow]

THREE_AXES_EVALUATOR = """\
from evolve.evaluators import Invalid


def evaluate(candidate):
    x = candidate.call("solve")
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise Invalid(f"solve() must return a number, got {type(x).__name__}")
    return {"metrics": {"value": -(x - 3.0) ** 2}, "features": {"x": x, "gap": abs(x - 3.0), "square": x * x}}
"""


def _three_axes_problem() -> dict[str, Any]:
    config = yaml.safe_load(QUADRATIC_YAML)
    config["name"] = "quadratic_3d"
    config["features"] = [{"name": "x", "min": -10, "max": 10, "bins": 8}, {"name": "gap", "min": 0, "max": 13, "bins": 6},
                          {"name": "square", "min": 0, "max": 100, "bins": 5}]
    return {"config": config, "initial_program": QUADRATIC_PROGRAM, "evaluator": THREE_AXES_EVALUATOR}


def _js_score(x: float) -> str:
    """A score as the dashboard writes it (7 significant digits, no trailing zeros)."""
    text = repr(float(f"{x:.7g}"))
    return text[:-2] if text.endswith(".0") else text


def _wait_status(http: httpx.Client, cid: str, *, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = http.get(f"/campaigns/{cid}").json()
        if body["status"] != "running" or time.monotonic() > deadline:
            return body
        time.sleep(0.2)


def _run(http: httpx.Client, problem: str, iterations: int) -> str:
    response = http.post("/campaigns", json={"problem": problem, "models": [{"name": "mutator"}], "islands": 2, "seed": 1,
                                            "iterations": iterations})
    assert response.status_code == 201, response.text
    cid: str = response.json()["id"]
    assert _wait_status(http, cid)["status"] == "finished"
    return cid


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    tmp = tmp_path_factory.mktemp("dashboard-browser")
    serve = ServeProcess(tmp / "evolve.db", tmp / "server.log", EVOLVE_WORKDIR=str(tmp)).start()
    yield serve
    serve.stop()


@pytest.fixture(scope="module")
def http(server: ServeProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base, timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def finished(http: httpx.Client) -> str:
    """A real 30-iteration campaign on circle_packing with the built-in mutator."""
    return _run(http, "circle_packing", 30)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    yield page
    context.close()
    assert not errors, f"the page reported errors: {errors}"


def _shot(page: Page, name: str) -> Path:
    path = screenshot_dir() / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def test_the_campaigns_page_lists_each_campaign_with_its_progress(page: Page, server: ServeProcess, http: httpx.Client,
                                                                  finished: str) -> None:
    page.goto(f"{server.base}/")
    wait_ready(page, "campaigns")
    campaign = http.get(f"/campaigns/{finished}").json()
    row = page.locator("table.campaigns tr", has=page.locator(f"a[href='#/campaigns/{finished}']"))
    assert row.locator(".badge").inner_text() == "finished"
    assert "30 / 30" in row.inner_text()
    assert row.locator(f"a[href='#/programs/{campaign['best_program_id']}']").inner_text() == _js_score(campaign["best_score"])
    assert row.locator("[data-action=resume]").is_visible()  # a finished campaign can be resumed with a larger target
    _shot(page, "campaigns")


def test_the_campaign_page_plots_scores_and_maps_the_archive(page: Page, server: ServeProcess, http: httpx.Client,
                                                             finished: str) -> None:
    page.goto(f"{server.base}/#/campaigns/{finished}")
    wait_ready(page, "campaign")
    archive = http.get(f"/campaigns/{finished}/archive").json()
    overview = http.get(f"/campaigns/{finished}/overview").json()
    assert page.locator("svg.heatmap").count() == len(archive["islands"]) == 2
    filled = sum(len(i["cells"]) for i in archive["islands"])
    assert filled > 2 and page.locator("rect.cell.filled").count() == filled  # two axes: one rectangle per elite
    assert page.locator("rect.cell.empty").count() == 2 * 10 * 10 - filled
    assert page.locator("#best-plot path.best-line").count() == 1
    assert page.locator("#best-plot circle.best-point").count() == len(overview["best_steps"])
    assert page.locator("#candidates-plot circle.candidate").count() == sum(1 for b in overview["series"] if b["valid"])
    assert page.locator("#best-score a").inner_text() == _js_score(overview["campaign"]["best_score"])
    assert page.locator("table.models td").first.inner_text() == "mutator"
    failed = {k: v for k, v in overview["campaign"]["status_counts"].items() if k != "ok"}
    for status, n in failed.items():
        assert page.locator("table.failures tr", has_text=status.replace("_", " ")).locator("td.num").first.inner_text() == str(n)
    _shot(page, "campaign")


def test_a_click_on_a_map_cell_opens_its_elite(page: Page, server: ServeProcess, http: httpx.Client, finished: str) -> None:
    page.goto(f"{server.base}/#/campaigns/{finished}")
    wait_ready(page, "campaign")
    cell = page.locator("svg.heatmap[data-island='1'] rect.cell.filled").last
    elite, key = cell.get_attribute("data-elite"), cell.get_attribute("data-cell")
    assert elite and key
    expected = next(c for c in http.get(f"/campaigns/{finished}/archive").json()["islands"][1]["cells"] if c["cell"] == key)
    assert expected["elite_id"] == elite
    cell.click()
    wait_ready(page, "program", route=f"#/programs/{elite}")
    assert page.url.endswith(f"#/programs/{elite}")
    assert elite[:8] in page.locator("h1").inner_text()
    assert page.locator("dl.facts-list").inner_text().count(key) >= 1  # the program's cell is the one clicked


def test_the_program_page_shows_the_change_its_lineage_and_children(page: Page, server: ServeProcess, http: httpx.Client,
                                                                    finished: str) -> None:
    items = http.get(f"/campaigns/{finished}/programs", params={"limit": 100, "status": "ok"}).json()["items"]
    child = max((p for p in items if p["parent_id"] and p["origin"] == "diff"), key=lambda p: p["generation"])
    detail = http.get(f"/programs/{child['id']}").json()
    lineage = http.get(f"/campaigns/{finished}/lineage/{child['id']}").json()["items"]
    page.goto(f"{server.base}/#/programs/{child['id']}")
    wait_ready(page, "program")
    inserted = [line[1:].strip() for line in detail["diff"].splitlines() if line.startswith("+") and not line.startswith("+++")]
    shown = page.locator("#diff .gi").all_inner_texts()
    assert inserted and any(inserted[0] in text for text in shown)  # the added line, highlighted as an insertion
    assert page.locator("#diff .gd").count() >= 1  # and the line it replaced
    assert page.locator("#code .k", has_text="def").count() >= 1  # highlighted code
    steps = page.locator("ol.lineage li")
    assert steps.count() == len(lineage) >= 2
    assert steps.first.locator(".step-score").inner_text() == _js_score(lineage[0]["score"])
    _shot(page, "program")
    steps.first.locator("a").click()  # back to the initial program, whose children include an ancestor of this one
    wait_ready(page, "program", route=f"#/programs/{lineage[0]['id']}")
    assert page.url.endswith(f"#/programs/{lineage[0]['id']}")
    assert page.locator(f"table.children a[href='#/programs/{lineage[1]['id']}']").count() == 1


def test_a_failed_program_says_why(page: Page, server: ServeProcess, http: httpx.Client, finished: str) -> None:
    failures = [p for p in http.get(f"/campaigns/{finished}/programs", params={"limit": 100}).json()["items"] if p["status"] != "ok"]
    assert failures, "a 30-iteration mutator campaign on circle_packing has failures"
    detail = http.get(f"/programs/{failures[0]['id']}").json()
    page.goto(f"{server.base}/#/programs/{detail['id']}")
    wait_ready(page, "program")
    why = page.locator("section", has=page.locator("h2", has_text="Why it failed")).inner_text()
    first_artifact = next(iter(detail["artifacts"].values()))
    assert first_artifact.splitlines()[0][:40] in why
    _shot(page, "program-failed")


def test_live_updates_arrive_while_a_campaign_runs_and_stop_works(page: Page, server: ServeProcess, http: httpx.Client) -> None:
    page.goto(f"{server.base}/")
    wait_ready(page, "campaigns")
    page.select_option("#start-form select[name=problem]", "circle_packing")
    page.fill("#start-form input[name=iterations]", "400")
    page.click("#start-form button[type=submit]")
    page.wait_for_url("**/#/campaigns/*", timeout=60_000)
    wait_ready(page, "campaign", route=page.url[page.url.index("#"):])
    cid = page.url.rsplit("/", 1)[-1]
    page.evaluate("window.__sameDocument = true")
    start = int(page.get_attribute("main", "data-iterations") or 0)
    page.wait_for_function("n => Number(document.querySelector('main').dataset.iterations) >= n", arg=start + 6, timeout=90_000)
    assert page.evaluate("window.__sameDocument") is True  # updated in place, not reloaded
    assert page.locator("#live").inner_text() == "live"
    assert page.locator("rect.cell.filled").count() >= 1
    _shot(page, "campaign-live")
    page.click("[data-action=stop]")
    page.wait_for_selector(".summary .badge.s-stopped", timeout=60_000)
    body = http.get(f"/campaigns/{cid}").json()
    assert body["status"] == "stopped" and not body["running_here"] and 0 < body["iterations_done"] < 400
    assert page.locator("[data-action=resume]").is_visible()


def test_maps_of_problems_with_one_axis_and_with_three_axes(page: Page, server: ServeProcess, http: httpx.Client) -> None:
    one = http.post("/problems", json=quadratic_payload())  # one feature axis: x
    three = http.post("/problems", json=_three_axes_problem())
    assert one.status_code == 201 and three.status_code == 201, (one.text, three.text)
    one_cid, three_cid = _run(http, one.json()["id"], 20), _run(http, three.json()["id"], 20)

    page.goto(f"{server.base}/#/campaigns/{one_cid}")
    wait_ready(page, "campaign")
    cells = page.locator("svg.heatmap[data-island='0'] rect.cell")
    assert cells.count() == 20 and len(set(cells.evaluate_all("els => els.map(e => e.getAttribute('y'))"))) == 1  # one row
    archive = http.get(f"/campaigns/{one_cid}/archive").json()
    assert page.locator("rect.cell.filled").count() == sum(len(i["cells"]) for i in archive["islands"])
    assert "One feature axis (x)" in page.locator("#maps").inner_text()
    _shot(page, "map-one-axis")

    page.goto(f"{server.base}/#/campaigns/{three_cid}")
    wait_ready(page, "campaign")
    archive = http.get(f"/campaigns/{three_cid}/archive").json()

    def projected(xi: int, yi: int) -> int:
        return sum(len({(c["coordinates"][xi], c["coordinates"][yi]) for c in i["cells"]}) for i in archive["islands"])

    assert page.locator("select[data-axis=xi]").input_value() == "0" and page.locator("select[data-axis=yi]").input_value() == "1"
    assert page.locator("rect.cell.filled").count() == projected(0, 1)
    assert page.locator("svg.heatmap[data-island='0'] rect.cell").count() == 8 * 6
    page.select_option("select[data-axis=yi]", "2")
    assert page.locator("svg.heatmap[data-island='0'] rect.cell").count() == 8 * 5
    assert page.locator("rect.cell.filled").count() == projected(0, 2)
    _shot(page, "map-three-axes")


def test_a_server_with_a_token_asks_for_it_before_a_write(browser: Browser, tmp_path: Path) -> None:
    serve = ServeProcess(tmp_path / "evolve.db", tmp_path / "server.log", EVOLVE_API_TOKEN=TOKEN, EVOLVE_WORKDIR=str(tmp_path)).start()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.goto(f"{serve.base}/")
        wait_ready(page, "campaigns")
        assert page.locator("#token-button").inner_text() == "Set token"
        # without a token a loopback page may read: it offers no start form, and says why
        assert page.locator("#start-form").count() == 0
        assert "may read only" in page.locator("#read-only").inner_text()
        assert page.locator("#whoami").inner_text() == "anonymous (read)"
        page.click("#token-button")
        page.wait_for_selector("#token-dialog[open]")
        _shot(page, "token-dialog")
        page.fill("#token-input", TOKEN)
        page.click("#token-dialog button[value=ok]")
        page.wait_for_selector("#start-form")
        assert page.locator("#whoami").inner_text() == "EVOLVE_API_TOKEN (admin)"
        page.select_option("#start-form select[name=problem]", "circle_packing")
        page.fill("#start-form input[name=iterations]", "3")
        page.click("#start-form button[type=submit]")
        page.wait_for_url("**/#/campaigns/*", timeout=60_000)
        wait_ready(page, "campaign", route=page.url[page.url.index("#"):])
        cid = page.url.rsplit("/", 1)[-1]
        with httpx.Client(base_url=serve.base) as http:
            assert http.get(f"/campaigns/{cid}").json()["problem"] == "circle_packing"
        assert page.locator("#token-button").inner_text() == "Forget token"
        # README: the page keeps the token in the tab's session storage only
        kept = page.evaluate("""() => ({
            session: Object.fromEntries(Object.entries(sessionStorage)), local: Object.fromEntries(Object.entries(localStorage)),
            cookie: document.cookie, url: location.href, history: JSON.stringify(history.state)})""")
        assert list(kept["session"].values()) == [TOKEN], kept
        assert kept["local"] == {} and kept["cookie"] == "" and TOKEN not in kept["url"] + kept["history"], kept
        assert context.cookies() == []  # nor did the server set one
        other_tab = context.new_page()  # session storage belongs to one tab: another tab of the same browser has none
        other_tab.goto(f"{serve.base}/")
        wait_ready(other_tab, "campaigns")
        assert other_tab.evaluate("sessionStorage.length") == 0 and other_tab.locator("#token-button").inner_text() == "Set token"
        page.click("#token-button")  # "Forget token" takes it out of the tab
        assert page.evaluate("sessionStorage.length") == 0 and page.locator("#token-button").inner_text() == "Set token"
    finally:
        context.close()
        serve.stop()


def _as(browser: Browser, base: str, token: str) -> tuple[Any, Page]:
    """A fresh tab that has been given ``token`` (as the token dialog keeps it: in the tab's session storage)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{base}/")
    page.evaluate("(t) => sessionStorage.setItem('evolve.token', t)", token)
    page.goto(f"{base}/#/")
    page.reload()
    wait_ready(page, "campaigns")
    return context, page


def test_the_page_shows_each_token_only_what_its_role_may_do(browser: Browser, tmp_path: Path) -> None:
    serve = ServeProcess(tmp_path / "evolve.db", tmp_path / "server.log", EVOLVE_API_TOKEN=TOKEN, EVOLVE_WORKDIR=str(tmp_path)).start()
    admin = {"Authorization": f"Bearer {TOKEN}"}
    contexts = []
    try:
        with httpx.Client(base_url=serve.base, headers=admin, timeout=120) as http:
            tokens = {name: http.post("/tokens", json={"name": name, "role": role}).json()["token"]
                      for name, role in (("reader", "read"), ("alice", "run"), ("bob", "run"))}
            body = {"problem": "circle_packing", "models": [{"name": "mutator"}], "islands": 1, "iterations": 100_000}
            mine = http.post("/campaigns", json=body, headers={"Authorization": f"Bearer {tokens['alice']}"}).json()["id"]
        for name, stops, starts, audits in (("reader", 0, False, False), ("bob", 0, True, False), ("alice", 1, True, False)):
            context, page = _as(browser, serve.base, tokens[name])
            contexts.append(context)
            assert page.locator("#whoami").inner_text().startswith(f"{name} (")
            assert page.locator("button[data-action=stop]").count() == stops, name  # alice's campaign: hers to stop
            assert (page.locator("#start-form").count() == 1) is starts, name
            assert page.locator("#audit-link").is_visible() is audits
            page.goto(f"{serve.base}/#/campaigns/{mine}")
            wait_ready(page, "campaign", route=f"#/campaigns/{mine}")
            assert page.locator("button[data-action=stop]").count() == stops, name
            _shot(page, f"role-{name}")
        context, page = _as(browser, serve.base, TOKEN)
        contexts.append(context)
        assert page.locator("button[data-action=stop]").count() == 1  # an admin may stop anyone's
        page.click("#audit-link")
        wait_ready(page, "audit", route="#/audit")
        text = page.locator("table.audit").inner_text()
        assert "token_create" in text and "alice" in text and "start" in text
        assert all(t not in page.content() for t in tokens.values())
        _shot(page, "audit")
    finally:
        for context in contexts:
            context.close()
        serve.stop()


HOSTILE = '<img src=x onerror="window.__pwned=1"></script><script>window.__pwned=2</script><b id="pwned">b</b>'
HOSTILE_KEY = "<img src=x onerror=window.__pwned=3>"
HOSTILE_PROGRAM = f"""\
# EVOLVE-BLOCK-START
def solve():
    # {HOSTILE}
    print('{HOSTILE}')
    return 0.5
# EVOLVE-BLOCK-END
"""
HOSTILE_EVALUATOR = f"""\
from evolve.evaluators import Invalid

HOSTILE = {HOSTILE!r}


def evaluate(candidate):
    x = candidate.call("solve")
    if x != 0.5:
        raise Invalid("rejected " + HOSTILE)
    return {{"metrics": {{"value": -(x - 3.0) ** 2}}, "features": {{"x": x}}, "artifacts": {{"note": HOSTILE, {HOSTILE_KEY!r}: HOSTILE}}}}
"""
WATCH_THE_PAGE = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => window.__violations.push(`${e.violatedDirective}: ${e.sample}`));
"""


def _nothing_injected(page: Page) -> None:
    """No hostile script ran, no hostile element exists, and the page's CSP had nothing to refuse."""
    found = page.evaluate("""() => ({
        pwned: window.__pwned ?? null, violations: window.__violations,
        elements: document.querySelectorAll("img[src='x'], #pwned, b#pwned, [onerror]").length,
        scripts: [...document.scripts].map((s) => s.src || "inline")})""")
    assert found["pwned"] is None and found["violations"] == [] and found["elements"] == 0, found
    assert all(src.startswith("http") and "/static/" in src for src in found["scripts"]), found["scripts"]


def test_hostile_code_and_artifacts_are_shown_as_text(page: Page, server: ServeProcess, http: httpx.Client) -> None:
    """README: under the CSP, a program's code, errors and artifacts are only ever inserted as text."""
    config = yaml.safe_load(QUADRATIC_YAML)
    config["name"] = "hostile_text"
    created = http.post("/problems", json={"config": config, "initial_program": HOSTILE_PROGRAM, "evaluator": HOSTILE_EVALUATOR})
    assert created.status_code == 201, created.text
    cid = _run(http, created.json()["id"], 4)
    items = http.get(f"/campaigns/{cid}/programs", params={"limit": 100}).json()["items"]
    initial = next(p for p in items if p["origin"] == "initial")
    rejected = next(p for p in items if p["status"] == "invalid")  # the mutator changes the 0.5: the evaluator says why
    assert http.get(f"/programs/{initial['id']}").json()["artifacts"]["note"] == HOSTILE
    page.add_init_script(WATCH_THE_PAGE)

    page.goto(f"{server.base}/#/programs/{initial['id']}")
    wait_ready(page, "program")
    _nothing_injected(page)
    assert f"# {HOSTILE}" in page.locator("#code").inner_text()  # the code, literally
    artifacts = page.locator("section", has=page.locator("h2", has_text="Artifacts")).inner_text()
    assert HOSTILE_KEY in artifacts and artifacts.count(HOSTILE) >= 2, artifacts  # the evaluator's, and what solve() printed
    _shot(page, "program-hostile")

    page.goto(f"{server.base}/#/programs/{rejected['id']}")
    wait_ready(page, "program", route=f"#/programs/{rejected['id']}")
    _nothing_injected(page)
    assert f"rejected {HOSTILE}" in page.locator("section", has=page.locator("h2", has_text="Why it failed")).inner_text()
    assert HOSTILE in page.locator("#diff").inner_text()  # the diff against the parent carries the comment as context

    page.goto(f"{server.base}/#/campaigns/{cid}")
    wait_ready(page, "campaign")
    _nothing_injected(page)
