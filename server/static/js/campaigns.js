// Campaigns page: every campaign with its progress, and forms to start, stop and resume.

import {api} from "./api.js";
import {errorBox, fmt, h, programLink, section, statusBadge, table} from "./dom.js";
import {mayAct, session} from "./session.js";

const RESUMABLE = new Set(["stopped", "interrupted", "finished", "budget_spent"]);

export function progress(c) {
  const share = c.iterations_target ? Math.min(1, c.iterations_done / c.iterations_target) : 0;
  const bar = h("progress", {max: 1, value: share.toFixed(4)});
  return h("span", {class: "progress"}, bar, ` ${fmt.int(c.iterations_done)} / ${fmt.int(c.iterations_target)}`);
}

/** Stop and resume buttons for a campaign, where the token may use them; `after(updated)` runs with the campaign as the
 * server returns it. */
export function controls(c, after, report) {
  if (!mayAct(c)) return h("span", {class: "actions"});
  const act = async (button, path, body) => {
    button.disabled = true;
    try {
      after(await api(path, {method: "POST", body}));
    } catch (err) {
      report(err);
      button.disabled = false;
    }
  };
  const out = [];
  if (c.running_here) {
    const stop = h("button", {type: "button", class: "danger", dataset: {action: "stop"}}, "Stop");
    stop.addEventListener("click", () => act(stop, `/campaigns/${c.id}/stop`));
    out.push(stop);
  } else if (RESUMABLE.has(c.status)) {
    const more = h("input", {type: "number", min: 1, value: c.iterations_target, class: "narrow", "aria-label": "iteration target",
      title: "iteration target (total)"});
    const resume = h("button", {type: "button", dataset: {action: "resume"}}, "Resume");
    resume.addEventListener("click", () => {
      const target = Number(more.value);
      act(resume, `/campaigns/${c.id}/resume`, target && target !== c.iterations_target ? {iterations: target} : {});
    });
    out.push(resume, " to ", more);
  }
  return h("span", {class: "actions"}, out);
}

function startForm(problems, report) {
  const problem = h("select", {name: "problem", required: true},
    problems.map((p) => h("option", {value: p.id}, p.builtin ? p.name : `${p.name} (${p.id.slice(0, 8)})`)));
  const model = h("input", {name: "model", value: "mutator", list: "model-names", required: true, maxlength: 200});
  const iterations = h("input", {name: "iterations", type: "number", min: 1, value: 100, required: true, class: "narrow"});
  const islands = h("input", {name: "islands", type: "number", min: 1, max: 64, value: 4, required: true, class: "narrow"});
  const seed = h("input", {name: "seed", type: "number", min: 0, value: 0, required: true, class: "narrow"});
  const submit = h("button", {type: "submit", class: "primary"}, "Start campaign");
  const form = h("form", {class: "inline-form", id: "start-form"},
    h("label", {}, "Problem ", problem),
    h("label", {}, "Model ", model,
      h("datalist", {id: "model-names"}, ["mutator", "qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b", "smollm2"].map((m) => h("option", {value: m})))),
    h("label", {}, "Iterations ", iterations), h("label", {}, "Islands ", islands), h("label", {}, "Seed ", seed), submit);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    submit.disabled = true;
    submit.textContent = "Evaluating the initial program…";
    try {
      const body = {problem: problem.value, models: [{name: model.value.trim()}], iterations: Number(iterations.value),
        islands: Number(islands.value), seed: Number(seed.value)};
      const created = await api("/campaigns", {method: "POST", body});
      location.hash = `#/campaigns/${created.id}`;
    } catch (err) {
      report(err);
      submit.disabled = false;
      submit.textContent = "Start campaign";
    }
  });
  return form;
}

export async function campaignsPage(app) {
  const [campaigns, problems] = await Promise.all([api("/campaigns"), api("/problems")]);
  const messages = h("div", {class: "messages"});
  const report = (err) => messages.replaceChildren(errorBox(err));
  const body = h("div");
  const render = (list) => {
    const rows = [...list].reverse();  // newest first
    body.replaceChildren(table([
      {label: "Campaign", cell: (c) => h("a", {href: `#/campaigns/${c.id}`, class: "mono"}, c.id.slice(0, 8))},
      {label: "Problem", cell: (c) => c.problem},
      {label: "Started by", cell: (c) => c.created_by || "command line"},
      {label: "Status", cell: (c) => statusBadge(c.status)},
      {label: "Progress", cell: progress},
      {label: "Best score", num: true, cell: (c) => (c.best_program_id ? programLink(c.best_program_id, fmt.score(c.best_score)) : "–")},
      {label: "Valid", num: true, cell: (c) => fmt.pct(c.valid_rate)},
      {label: "Tokens", num: true, cell: (c) => fmt.tokens(c.tokens)},
      {label: "Cost", num: true, cell: (c) => fmt.usd(c.cost_usd)},
      {label: "Updated", cell: (c) => fmt.when(c.updated_at)},
      {label: "", cell: (c) => controls(c, () => reload(), report)},
    ], rows, {empty: "No campaign yet: start one below.", cls: "campaigns"}));
  };
  let latest = campaigns;
  const reload = async () => {
    try { latest = await api("/campaigns"); render(latest); messages.replaceChildren(); } catch (err) { report(err); }
  };
  render(campaigns);
  app.replaceChildren(
    h("h1", {}, "Campaigns"), messages,
    section("All campaigns", body),
    session.me.may_run
      ? section("Start a campaign", startForm(problems, report))
      : section("Start a campaign", h("p", {class: "muted", id: "read-only"},
        `Token '${session.me.name}' may read only (role ${session.me.role}); starting, stopping and resuming need a run token.`)),
  );
  // progress of running campaigns every 5 s (a campaign page follows its events; this list only polls)
  const timer = setInterval(() => {
    const busy = document.querySelector("#start-form button[disabled]") || document.activeElement?.closest("table.campaigns");
    if (document.visibilityState === "visible" && !busy && latest.some((c) => c.status === "running")) reload();
  }, 5000);
  return () => clearInterval(timer);
}
