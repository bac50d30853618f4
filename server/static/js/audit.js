// Audit page (admins): every write and refused attempt, newest first, by token name.

import {api} from "./api.js";
import {fmt, h, section, table} from "./dom.js";

export async function auditPage(app) {
  const entries = await api("/audit?newest=true&limit=1000");
  app.replaceChildren(
    h("h1", {}, "Audit trail"),
    section("Writes and refused attempts", table([
      {label: "When", cell: (e) => fmt.when(e.ts)},
      {label: "Token", cell: (e) => h("span", {class: "mono"}, e.actor)},
      {label: "Action", cell: (e) => e.action},
      {label: "On", cell: (e) => (e.target ? h("span", {class: "mono"}, e.target) : "–")},
      {label: "Outcome", cell: (e) => h("span", {class: `outcome ${e.outcome}`}, e.outcome)},
      {label: "Detail", cell: (e) => e.detail || ""},
    ], [...entries].reverse(), {empty: "Nothing written yet.", cls: "audit"})),
  );
}
