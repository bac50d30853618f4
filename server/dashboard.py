"""The web dashboard: its page and assets, and the two API reads made for it (a campaign overview, highlighted code).

The page at ``/`` is a small script application (``static/``) that reads the
same JSON API as any client, with the token when one is set: the page itself
holds no data, so it is served to anyone. Every script, style and font comes
from this server (no CDN): the dashboard works on a machine with no internet.
Syntax highlighting is Pygments on the server, plots and maps are SVG drawn
by the page. A strict Content-Security-Policy allows only this server's own
scripts and styles: a program's code, errors and artifacts are untrusted text
and are only ever inserted as text.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from functools import cache
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import DiffLexer, PythonLexer

from evolve.bandit import model_report
from evolve.server.campaigns import campaign_out, campaign_row
from evolve.server.programs import parent_diff, program_or_404
from evolve.server.schemas import CampaignOverview, HighlightedProgram, errors
from evolve.server.security import GuardedRoute, require_read
from evolve.store import Store

__all__ = ["install_dashboard"]

STATIC = Path(__file__).with_name("static")
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
_PAGE_HEADERS = {"Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                 "Cache-Control": "no-cache"}
MAX_POINTS = 2000

router = APIRouter(tags=["dashboard"], route_class=GuardedRoute, dependencies=[Depends(require_read)])


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


@cache
def _formatter(line_numbers: bool) -> HtmlFormatter[str]:
    return HtmlFormatter(cssclass="hl", linenos="table" if line_numbers else False, wrapcode=True)


def _html(code: str, *, diff: bool = False) -> str:
    lexer = DiffLexer() if diff else PythonLexer()
    return highlight(code, lexer, _formatter(not diff))


@router.get("/campaigns/{campaign_id}/overview", response_model=CampaignOverview, responses=errors(404))
async def overview(
    request: Request, campaign_id: str,
    points: Annotated[int, Query(ge=10, le=MAX_POINTS, description="at most this many buckets of iterations in the score series")] = 600,
) -> dict[str, Any]:
    """Everything the campaign page shows at once, aggregated in the database: the campaign, its score series
    (downsampled to ``points`` buckets of consecutive iterations), the best-so-far steps, islands, models and failures."""
    row = campaign_row(request, campaign_id)
    store = _store(request)
    islands = row.config.island_count
    # independent reads of one index: in parallel threads (SQLite reads do not block each other in WAL mode)
    problem = asyncio.ensure_future(asyncio.to_thread(store.load_problem, row.problem_id))
    notes = asyncio.ensure_future(asyncio.to_thread(store.latest_notes, campaign_id))
    series, steps, summary, models, last_event, campaign = await asyncio.gather(
        asyncio.to_thread(store.score_series, campaign_id, buckets=points),
        asyncio.to_thread(store.best_steps, campaign_id, limit=MAX_POINTS),
        asyncio.to_thread(store.island_summary, campaign_id, islands=islands),
        asyncio.to_thread(store.model_stats, campaign_id),
        asyncio.to_thread(store.last_event_id, campaign_id),
        asyncio.to_thread(campaign_out, request, row, detail=True),
    )
    config = (await problem).config
    return {
        "campaign": campaign,
        "objective": config.objective.model_dump(mode="json", exclude_none=True),
        "known_best": config.known_best.value if config.known_best else None,
        "series": [asdict(b) for b in series],
        "best_steps": [asdict(s) for s in steps],
        "islands": [asdict(i) for i in summary],
        "models": model_report(row.config, models),
        "notes": await notes,
        "last_event_id": last_event,
    }


@router.get("/programs/{program_id}/highlighted", response_model=HighlightedProgram, responses=errors(404))
async def highlighted(request: Request, program_id: str) -> dict[str, Any]:
    """The program's code, its diff against the parent and the model's edit as syntax-highlighted HTML (Pygments)."""
    store = _store(request)
    program = program_or_404(store, program_id)

    def render() -> dict[str, Any]:
        diff = parent_diff(store, program)
        return {"code": _html(program.code), "diff": _html(diff, diff=True) if diff else None,
                "model_edit": _html(program.diff) if program.diff else None}

    return await asyncio.to_thread(render)  # Pygments on a long program takes a few milliseconds: off the event loop


def install_dashboard(app: FastAPI) -> None:
    """Serve the dashboard at ``/`` (assets under ``/static``) and its API reads."""
    app.include_router(router)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=_PAGE_HEADERS)

    @app.get("/highlight.css", include_in_schema=False)
    def highlight_css() -> Response:
        return Response(_highlight_css(), media_type="text/css", headers={"Cache-Control": "max-age=3600"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")


@cache
def _highlight_css() -> str:
    return str(_formatter(True).get_style_defs(".hl"))  # type: ignore[no-untyped-call]  # untyped in types-Pygments
