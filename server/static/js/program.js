// Program page: where it came from (lineage, each step clickable with its score), what changed (the diff against
// its parent, the model's own edit), the code, its metrics, features, artifacts and errors, and its children.

import {api} from "./api.js";
import {fmt, h, programLink, section, statusBadge, table, trustedHtml} from "./dom.js";

const LINEAGE_SHOWN = 60;

function facts(p) {
  const rows = [
    ["Campaign", h("a", {href: `#/campaigns/${p.campaign_id}`, class: "mono"}, p.campaign_id.slice(0, 8))],
    ["Outcome", statusBadge(p.status)],
    ["Score", fmt.score(p.score)],
    ["Iteration", fmt.int(p.iteration)],
    ["Island", p.island],
    ["Generation", p.generation],
    ["Origin", p.origin],
    ["Model", p.model || "–"],
    ["Template", p.template || "–"],
    ["Cell", p.cell ?? "–"],
    ["Stage reached", p.stage || "–"],
    ["Parent", p.parent_id ? programLink(p.parent_id) : "none (initial program)"],
    ["Evaluation", fmt.seconds(p.eval_seconds)],
    ["Model time", fmt.seconds(p.llm_seconds)],
    ["Created", fmt.when(p.created_at)],
  ];
  return h("dl", {class: "facts-list"}, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function lineage(items, currentId) {
  const step = (p) => h("li", {class: p.id === currentId ? "current" : ""},
    p.id === currentId ? h("span", {class: "mono"}, fmt.short(p.id)) : programLink(p.id),
    h("span", {class: "step-score"}, fmt.score(p.score)), h("span", {class: "muted"}, ` it. ${fmt.int(p.iteration)}`));
  const list = h("ol", {class: "lineage"});
  if (items.length <= LINEAGE_SHOWN) {
    list.append(...items.map(step));
  } else {
    const head = items.slice(0, 5);
    const tail = items.slice(-(LINEAGE_SHOWN - 5));
    const expand = h("button", {type: "button", class: "link"}, `show ${fmt.int(items.length - head.length - tail.length)} more ancestors`);
    expand.addEventListener("click", () => list.replaceChildren(...items.map(step)));
    list.append(...head.map(step), h("li", {class: "gap"}, expand), ...tail.map(step));
  }
  return [h("p", {class: "muted"}, `${fmt.int(items.length)} programs from the initial one to this one.`), list];
}

function keyValues(obj, {mono = false} = {}) {
  const entries = Object.entries(obj || {});
  return table([
    {label: "Name", cell: ([k]) => k},
    {label: "Value", num: !mono, cell: ([, v]) => (typeof v === "number" ? fmt.score(v) : h("pre", {class: "artifact"}, String(v)))},
  ], entries, {empty: "none"});
}

function codeBlock(html, id) {
  const box = h("div", {class: "code", id});
  box.append(trustedHtml(html));
  return box;
}

export async function programPage(app, programId) {
  const p = await api(`/programs/${programId}`);
  const [chain, kids, lit] = await Promise.all([
    api(`/campaigns/${p.campaign_id}/lineage/${programId}`),
    api(`/programs/${programId}/children`),
    api(`/programs/${programId}/highlighted`),
  ]);
  const failed = p.status !== "ok";
  app.replaceChildren(...[
    h("h1", {}, "Program ", h("span", {class: "mono"}, fmt.short(p.id)), " ", statusBadge(p.status),
      p.score !== null ? h("span", {class: "headline-score"}, fmt.score(p.score)) : null),
    h("div", {class: "two"},
      section("About", facts(p)),
      section("Lineage", ...lineage(chain.items, p.id))),
    failed && Object.keys(p.artifacts || {}).length ? section("Why it failed", keyValues(p.artifacts, {mono: true})) : null,
    section("Diff against its parent", lit.diff ? codeBlock(lit.diff, "diff") : h("p", {class: "muted", id: "diff"},
      p.parent_id ? "identical to its parent" : "the initial program has no parent")),
    h("div", {class: "two"},
      section("Metrics", keyValues(p.metrics)),
      section("Features", keyValues(p.features))),
    !failed ? section("Artifacts", keyValues(p.artifacts, {mono: true})) : null,
    section("Code", codeBlock(lit.code, "code")),
    lit.model_edit ? h("details", {class: "card"}, h("summary", {}, `The model's edit (${p.origin})`), codeBlock(lit.model_edit, "model-edit")) : null,
    section(`Children (${fmt.int(kids.total)})`, table([
      {label: "Iteration", num: true, cell: (c) => fmt.int(c.iteration)},
      {label: "Program", cell: (c) => programLink(c.id)},
      {label: "Outcome", cell: (c) => statusBadge(c.status)},
      {label: "Score", num: true, cell: (c) => fmt.score(c.score)},
      {label: "Model", cell: (c) => c.model || "–"},
    ], kids.items, {empty: "no children yet", cls: "children"}),
    kids.total > kids.items.length ? h("p", {class: "muted"}, `the first ${kids.items.length} shown`) : null),
  ].filter(Boolean));
  return null;
}
