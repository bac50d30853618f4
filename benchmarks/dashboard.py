"""Dashboard and API response times on a 100,000-program campaign, in a real browser and over HTTP.

    .venv/bin/python benchmarks/dashboard.py [--programs 100000] [--runs 20] [--db PATH] [--out benchmarks/results]

It writes a finished campaign of ``--programs`` programs into a fresh store
(``benchmarks/synthetic.py``: about 15 s for 100,000; ``--db`` keeps and
reuses the file), serves it with ``evolve serve`` on loopback and measures:

- the campaign page in headless Chromium: from the start of navigation to
  the first frame painted with every section filled in (``data-painted-ms``,
  read from the page's own clock), in a fresh browser context each run
  (nothing cached) and again on reload (scripts cached, data fetched again);
  the same for the page of the campaign's best program;
- the API reads behind those pages, and the archive endpoint, each timed on
  its own over HTTP.

Pages and endpoints are measured round-robin (one run of each per repetition,
after one discarded warm-up repetition that also starts the browser's own
processes; ``benchmarks/report.py``); medians and nearest-rank 90th
percentiles of ``--runs`` runs (minimum and maximum below 10 runs).

Results go to ``dashboard.json`` and ``dashboard.md`` under ``--out``. A
benchmark, not a test: it reports and never fails on a slow machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from the checkout

from benchmarks.report import cell, interleave, spread_note, summarize, write_results
from benchmarks.synthetic import fill_campaign
from evolve.store import Store
from tests.server.browser import chromium
from tests.server.live import ServeProcess

TARGET_MS = 1000.0


def _campaign(db: Path, programs: int) -> str:
    if db.exists():
        store = Store.open(str(db))
        found = [c for c in store.list_campaigns() if c.iterations_done == programs - 1]
        store.close()
        if found:
            return found[0].id
    store = Store.open(str(db))
    t0 = time.perf_counter()
    cid = fill_campaign(store, programs_n=programs)
    store.close()
    print(f"wrote a {programs:,}-program campaign in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return cid


def _api(base: str, paths: dict[str, str], runs: int) -> list[dict[str, Any]]:
    sizes: dict[str, int] = {}
    with httpx.Client(base_url=base, timeout=60) as http:

        def timed(name: str) -> float:
            t0 = time.perf_counter()
            response = http.get(paths[name])
            took = 1000 * (time.perf_counter() - t0)
            response.raise_for_status()
            sizes[name] = len(response.content)
            return took

        names = list(paths)
        samples = interleave(names, timed, runs=runs)
    rows = [{"what": f"GET {name}", **summarize(s), "bytes": sizes[name]} for name, s in zip(names, samples, strict=True)]
    for r in rows:
        print(f"{r['what']:36} median {r['median']:7.1f} ms", file=sys.stderr)
    return rows


def _painted_ms(page: Any, route: str) -> float:
    page.wait_for_selector(f'main[data-route="{route}"][data-state=ready][data-painted-ms]', timeout=60_000)
    return float(page.get_attribute("main", "data-painted-ms"))


def _browser(base: str, routes: dict[str, str], runs: int) -> list[dict[str, Any]]:
    with chromium() as browser:

        def load(name: str) -> tuple[float, float]:  # a fresh context (nothing cached), then a reload (scripts cached)
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            try:
                page = context.new_page()
                page.goto(f"{base}/{routes[name]}")
                fresh = _painted_ms(page, routes[name])
                page.reload()
                return fresh, _painted_ms(page, routes[name])
            finally:
                context.close()

        names = list(routes)
        samples = interleave(names, load, runs=runs)
    rows = []
    for name, loads in zip(names, samples, strict=True):
        rows.append({"what": f"{name} page, fresh browser context", **summarize([f for f, _ in loads], 0)})
        rows.append({"what": f"{name} page, reload", **summarize([r for _, r in loads], 0)})
        print(f"{name} page: fresh {rows[-2]['median']:.0f} ms, reload {rows[-1]['median']:.0f} ms", file=sys.stderr)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--programs", type=int, default=100_000, help="programs in the campaign (the initial one included)")
    parser.add_argument("--runs", type=int, default=20, help="measured runs of each page and endpoint (after one warm-up)")
    parser.add_argument("--db", type=Path, help="store file to create once and reuse (default: a temporary one)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="evolve-bench-") as tmp:
        db = args.db or Path(tmp) / "dashboard.db"
        cid = _campaign(db, args.programs)
        serve = ServeProcess(db, Path(tmp) / "server.log", EVOLVE_WORKDIR=tmp).start()
        try:
            with httpx.Client(base_url=serve.base) as http:
                best = http.get(f"/campaigns/{cid}").json()["best_program_id"]
            api = _api(serve.base, {
                "/campaigns/{id}/overview": f"/campaigns/{cid}/overview?points=640",
                "/campaigns/{id}/archive": f"/campaigns/{cid}/archive",
                "/campaigns/{id}/programs (newest)": f"/campaigns/{cid}/programs?limit=25",
                "/campaigns/{id}/programs (best)": f"/campaigns/{cid}/programs?limit=25&sort=score",
                "/campaigns/{id}": f"/campaigns/{cid}",
                "/campaigns": "/campaigns",
                "/programs/{id}": f"/programs/{best}",
                "/programs/{id}/highlighted": f"/programs/{best}/highlighted",
                "/campaigns/{id}/lineage/{id}": f"/campaigns/{cid}/lineage/{best}",
            }, args.runs)
            pages = _browser(serve.base, {"campaign": f"#/campaigns/{cid}", "program": f"#/programs/{best}"}, args.runs)
        finally:
            serve.stop()
    lines = [f"Campaign of {args.programs:,} programs; milliseconds, {spread_note(args.runs)}, round-robin after one warm-up.", "",
             "| what | ms | target |", "|---|---|---|"]
    for r in pages:
        target = ""
        if r["what"].startswith("campaign page, fresh"):
            worst = r.get("p90", r.get("max", 0.0))
            target = f"< {TARGET_MS:.0f} ms ({'p90' if 'p90' in r else 'max'}): {'met' if worst < TARGET_MS else 'missed'}"
        lines.append(f"| {r['what']} | {cell(r, 0)} | {target} |")
    for r in api:
        lines.append(f"| {r['what']} ({r['bytes'] / 1024:.0f} KiB) | {cell(r)} | |")
    meta = {"programs": args.programs, "runs": args.runs, "warmups": 1, "target_campaign_page_ms": TARGET_MS}
    write_results(args.out, "dashboard", {"meta": meta, "pages": pages, "api": api}, {"dashboard": lines})

if __name__ == "__main__":
    main()
