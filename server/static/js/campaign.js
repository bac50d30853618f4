// Campaign page: progress, score plots, the MAP-Elites maps, islands, models, failures and a browsable list of
// programs. It follows the campaign's events while it runs and redraws from the server's aggregates, at most every
// two seconds, without reloading the page.

import {api, followEvents} from "./api.js";
import {controls, progress} from "./campaigns.js";
import {errorBox, fmt, h, programLink, section, statusBadge, table} from "./dom.js";
import {archiveMaps} from "./heatmap.js";
import {bestPlot, candidatesPlot} from "./plots.js";

const FAILURES = ["diff_failed", "llm_failed", "unchanged", "duplicate", "near_duplicate", "invalid", "below_threshold", "error", "timeout"];
const REFRESH_MS = 2000;
const PAGE = 25;

const open = (id) => { location.hash = `#/programs/${id}`; };

function summary(c, live, refresh, report) {
  return h("div", {class: "summary"},
    h("div", {class: "facts"},
      fact("Status", h("span", {}, statusBadge(c.status), c.running_here ? h("span", {class: `live ${live}`, id: "live"}, live) : null)),
      fact("Progress", progress(c)),
      fact("Best score", c.best_program_id ? programLink(c.best_program_id, fmt.score(c.best_score)) : "–", "best-score"),
      fact("Valid", `${fmt.pct(c.valid_rate)} (${fmt.int(c.valid_done)})`),
      fact("Tokens", fmt.tokens(c.tokens)),
      fact("Cost", fmt.usd(c.cost_usd)),
      fact("Started", fmt.when(c.created_at)),
    ),
    c.error ? h("p", {class: "error"}, c.error) : null,
    ...(c.grid_warnings || []).map((w) => h("p", {class: "grid-warning"}, w)),
    controls(c, refresh, report));
}

function fact(label, value, id) {
  return h("div", {class: "fact", id}, h("div", {class: "label"}, label), h("div", {class: "value"}, value));
}

function failures(c) {
  const counts = c.status_counts || {};
  const total = Object.values(counts).reduce((a, b) => a + b, 0) || 1;
  const rows = ["ok", ...FAILURES].filter((k) => counts[k]).map((k) => ({status: k, n: counts[k]}));
  const bar = h("div", {class: "stacked", role: "img", "aria-label": "outcomes of every candidate"},
    rows.map((r) => { const seg = h("span", {class: `s-${r.status}`, title: `${r.status}: ${r.n}`}); seg.style.width = `${(100 * r.n) / total}%`; return seg; }));
  const stages = Object.entries(c.stage_counts || {});
  return [bar, table([
    {label: "Outcome", cell: (r) => statusBadge(r.status)},
    {label: "Programs", num: true, cell: (r) => fmt.int(r.n)},
    {label: "Share", num: true, cell: (r) => fmt.pct(r.n / total)},
    {label: "", cell: (r) => h("a", {href: "#", class: "filter-link", dataset: {status: r.status}}, "list")},
  ], rows, {cls: "failures"}),
  stages.length ? h("p", {class: "muted"}, "Last cascade stage reached: ", stages.map(([k, n]) => `${k} ${fmt.int(n)}`).join(", ")) : null];
}

function islandsTable(islands) {
  return table([
    {label: "Island", num: true, cell: (i) => i.island},
    {label: "Programs", num: true, cell: (i) => fmt.int(i.programs)},
    {label: "Valid", num: true, cell: (i) => fmt.int(i.valid)},
    {label: "Cells", num: true, cell: (i) => fmt.int(i.cells)},
    {label: "Best elite", num: true, cell: (i) => (i.best_id ? programLink(i.best_id, fmt.score(i.best_score)) : "–")},
  ], islands, {cls: "islands"});
}

function modelsTable(models) {
  return table([
    {label: "Model", cell: (m) => m.model || "(initial)"},
    {label: "Mode", cell: (m) => m.template || "–"},
    {label: "Proposals", num: true, cell: (m) => fmt.int(m.proposals)},
    {label: "Share", num: true, cell: (m) => fmt.pct(m.share)},
    {label: "Valid", num: true, cell: (m) => fmt.pct(m.valid_rate)},
    {label: "Improved", num: true, cell: (m) => fmt.int(m.improved)},
    ...(models.some((m) => m.bandit_estimate != null)
      ? [{label: "Bandit estimate", num: true, cell: (m) => fmt.pct(m.bandit_estimate)}] : []),
    {label: "Requests", num: true, cell: (m) => `${fmt.int(m.requests)}${m.failed_requests ? ` (${fmt.int(m.failed_requests)} failed)` : ""}`},
    {label: "Tokens", num: true, cell: (m) => fmt.tokens(m.prompt_tokens + m.completion_tokens)},
    {label: "Cost", num: true, cell: (m) => fmt.usd(m.cost_usd)},
    {label: "Latency", num: true, cell: (m) => fmt.seconds(m.mean_latency_s)},
  ], models, {cls: "models"});
}

function notesList(notes) {
  if (!notes.length) return [h("p", {class: "muted"}, "No meta-summary yet (search.meta_every; never for the mutator).")];
  return notes.map((n) => h("div", {class: "note"},
    h("p", {class: "muted"}, `Island ${n.island}, after iteration ${fmt.int(n.iteration)} (${n.model})`),
    h("pre", {class: "note-text"}, n.text)));
}

function programsPage(campaignId, {sort = "time", status = "", island = ""}, cursor = null) {
  const q = new URLSearchParams({sort, order: "desc", limit: PAGE});
  if (status) q.set("status", status);
  if (island !== "") q.set("island", island);
  if (cursor) q.set("cursor", cursor);
  return api(`/campaigns/${campaignId}/programs?${q}`);
}

function programsBrowser(campaignId, islands) {
  const state = {sort: "time", status: "", island: ""};
  const body = h("tbody");
  const more = h("button", {type: "button", hidden: true}, "More");
  let cursor = null;
  const row = (p) => h("tr", {},
    h("td", {class: "num"}, fmt.int(p.iteration)), h("td", {}, programLink(p.id)), h("td", {}, statusBadge(p.status)),
    h("td", {class: "num"}, fmt.score(p.score)), h("td", {class: "num"}, p.island), h("td", {class: "num"}, p.generation),
    h("td", {}, p.model || "–"), h("td", {}, p.origin));
  const show = (page, append = false) => {
    cursor = page.next_cursor;
    more.hidden = !cursor;
    if (append) body.append(...page.items.map(row));
    else body.replaceChildren(...page.items.map(row));
  };
  const load = async (append) => show(await programsPage(campaignId, state, append ? cursor : null), append);
  more.addEventListener("click", () => load(true));
  const select = (key, options) => h("select", {dataset: {filter: key}, onchange: (e) => { state[key] = e.target.value; load(false); }},
    options.map(([value, label]) => h("option", {value}, label)));
  const statusSelect = select("status", [["", "any outcome"], ["ok", "ok"], ...FAILURES.map((f) => [f, f.replace("_", " ")])]);
  const view = h("div", {},
    h("div", {class: "inline-form"},
      h("label", {}, "Sort ", select("sort", [["time", "newest first"], ["score", "best first"]])),
      h("label", {}, "Outcome ", statusSelect),
      h("label", {}, "Island ", select("island", [["", "all"], ...islands.map((i) => [String(i.island), String(i.island)])]))),
    h("table", {class: "grid programs"},
      h("thead", {}, h("tr", {}, ["Iteration", "Program", "Outcome", "Score", "Island", "Gen.", "Model", "Origin"].map((l) => h("th", {}, l)))),
      body),
    more);
  const filterStatus = (status) => { state.status = status; statusSelect.value = status; load(false); view.scrollIntoView(); };
  return {view, load, show, filterStatus, isLive: () => state.sort === "time" && !state.status && state.island === ""};
}

export async function campaignPage(app, campaignId) {
  // about one bucket per pixel of the plot (half the page's width): more would not show
  const points = Math.max(100, Math.min(800, Math.floor((app.clientWidth || 1200) / 2)));
  const [overview, archive, firstPage] = await Promise.all([
    api(`/campaigns/${campaignId}/overview?points=${points}`), api(`/campaigns/${campaignId}/archive`), programsPage(campaignId, {})]);
  const messages = h("div", {class: "messages"});
  const report = (err) => messages.replaceChildren(errorBox(err));
  const parts = {
    summary: h("div"), best: h("div", {class: "plot-box", id: "best-plot"}), candidates: h("div", {class: "plot-box", id: "candidates-plot"}),
    maps: h("div", {id: "maps"}), islands: h("div", {id: "islands"}), models: h("div", {id: "models"}), failures: h("div", {id: "failures"}),
    notes: h("div", {id: "notes"}),
  };
  const browser = programsBrowser(campaignId, overview.islands);
  let live = "connecting";
  let current = overview;

  const draw = (ov, arc) => {
    current = ov;
    const c = ov.campaign;
    const metric = ov.objective.metric;
    parts.summary.replaceChildren(summary(c, live, () => refresh(true), report));
    parts.best.replaceChildren(bestPlot({steps: ov.best_steps, lastIteration: c.iterations_done, knownBest: ov.known_best, metric, onPick: open}));
    parts.candidates.replaceChildren(candidatesPlot({series: ov.series, metric, onPick: open}));
    parts.maps.replaceChildren(archiveMaps({archive: arc, direction: ov.objective.direction, onPick: open}));
    parts.islands.replaceChildren(islandsTable(ov.islands));
    parts.models.replaceChildren(modelsTable(ov.models));
    parts.notes.replaceChildren(...notesList(ov.notes || []));
    parts.failures.replaceChildren(...failures(c).filter(Boolean));
    for (const a of parts.failures.querySelectorAll("a.filter-link")) {
      a.addEventListener("click", (e) => { e.preventDefault(); browser.filterStatus(a.dataset.status); });
    }
    app.dataset.iterations = String(c.iterations_done);
  };

  let timer = null;
  let busy = false;
  let following = false;
  let stopFollowing = () => {};
  const refresh = async (now = false) => {
    if (timer && !now) return;
    clearTimeout(timer);
    timer = setTimeout(async () => {
      timer = null;
      if (busy) { refresh(); return; }
      busy = true;
      try {
        const [ov, arc] = await Promise.all([api(`/campaigns/${campaignId}/overview?points=${points}`), api(`/campaigns/${campaignId}/archive`)]);
        draw(ov, arc);
        if (browser.isLive()) await browser.load(false);
        if (ov.campaign.running_here && !following) follow(ov.last_event_id);
      } catch (err) { report(err); } finally { busy = false; }
    }, now ? 0 : REFRESH_MS);
  };
  const follow = (after) => {
    following = true;
    stopFollowing = followEvents(campaignId, after, {
      onEvent: (kind) => { if (kind === "program" || kind === "status" || kind === "migration") refresh(kind === "status"); },
      onState: (state) => {
        live = state;
        const badge = document.getElementById("live");
        if (badge) { badge.textContent = state; badge.className = `live ${state}`; }
        if (state === "ended") { following = false; refresh(true); }
      },
    });
  };

  draw(overview, archive);
  app.replaceChildren(
    h("h1", {}, `Campaign ${campaignId.slice(0, 8)} · `, h("span", {}, current.campaign.problem)),
    messages, parts.summary,
    h("div", {class: "two"}, section("Best score over iterations", parts.best), section("Every candidate", parts.candidates,
      h("p", {class: "muted"}, "Dots: the best candidate of each run of iterations (click to open); bars: their score range; red strip: the share that failed."))),
    section("MAP-Elites map", parts.maps),
    h("div", {class: "two"}, section("Islands", parts.islands), section("Outcomes", parts.failures)),
    section("Models", parts.models),
    section("What the search learned (meta-summaries)", parts.notes),
    section("Programs", browser.view),
  );
  browser.show(firstPage);
  if (overview.campaign.running_here) follow(overview.last_event_id);
  return () => { stopFollowing(); clearTimeout(timer); };
}
