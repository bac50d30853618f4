// The dashboard's shell: hash routes (#/, #/campaigns/ID, #/programs/ID, #/audit), the token dialog and who it is,
// page life cycle.
// Each page renders into <main> and returns a function that stops what it started (event streams, timers).
// <main data-state> is "loading", "ready" or "error", data-page names the page and data-route the hash it shows:
// tests and benchmarks wait on them.

import {api, onTokenNeeded, setToken, token} from "./api.js";
import {auditPage} from "./audit.js";
import {campaignsPage} from "./campaigns.js";
import {campaignPage} from "./campaign.js";
import {programPage} from "./program.js";
import {errorBox, h} from "./dom.js";
import {refreshSession, session} from "./session.js";

const routes = [
  [/^#?\/?$/, "campaigns", campaignsPage],
  [/^#\/campaigns\/([A-Za-z0-9_-]+)$/, "campaign", campaignPage],
  [/^#\/programs\/([A-Za-z0-9_-]+)$/, "program", programPage],
  [/^#\/audit$/, "audit", auditPage],
];

const app = document.getElementById("app");
let stopPage = null;
let generation = 0;

function askToken(reason) {
  const dialog = document.getElementById("token-dialog");
  const input = document.getElementById("token-input");
  document.getElementById("token-reason").textContent = reason;
  input.value = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      const given = dialog.returnValue === "ok" && input.value ? input.value : null;
      if (given) setToken(given);
      resolve(given);
      if (given) changedToken();
    }, {once: true});
  });
}

let health = {writes_need_token: false, reads_need_token: false};

function showTokenButton() {
  const button = document.getElementById("token-button");
  button.hidden = !health.writes_need_token;
  button.textContent = token() ? "Forget token" : "Set token";
  const me = session.me;
  const who = document.getElementById("whoami");
  who.hidden = !health.writes_need_token;
  who.textContent = `${me.name} (${me.role})`;
  document.getElementById("audit-link").hidden = !me.may_admin;
}

/** A token was set or forgotten: ask who it is, then show the page again with what it may do. */
async function changedToken() {
  await refreshSession();
  showTokenButton();
  await render();
}

async function render() {
  const mine = ++generation;
  if (stopPage) { stopPage(); stopPage = null; }
  const hash = location.hash || "#/";
  const route = routes.find(([pattern]) => pattern.test(hash));
  app.dataset.state = "loading";
  app.dataset.route = hash;
  delete app.dataset.paintedMs;
  window.scrollTo(0, 0);
  if (!route) {
    app.dataset.page = "missing";
    app.replaceChildren(h("p", {}, "No such page. ", h("a", {href: "#/"}, "All campaigns")));
    app.dataset.state = "error";
    return;
  }
  const [pattern, name, page] = route;
  app.dataset.page = name;
  const args = hash.match(pattern).slice(1);
  try {
    const stop = await page(app, ...args);
    if (mine !== generation) { if (stop) stop(); return; }  // the person navigated away meanwhile
    stopPage = stop || null;
    app.dataset.state = "ready";
    // once the frame with the content has been painted: milliseconds since the document's navigation began
    requestAnimationFrame(() => setTimeout(() => { app.dataset.paintedMs = String(Math.round(performance.now())); }, 0));
  } catch (err) {
    if (mine !== generation) return;
    app.replaceChildren(errorBox(err), h("p", {}, h("a", {href: "#/"}, "All campaigns")));
    app.dataset.state = "error";
  }
}

async function start() {
  onTokenNeeded(askToken);
  document.getElementById("token-button").addEventListener("click", async () => {
    if (token()) { setToken(null); showTokenButton(); await changedToken(); return; }
    await askToken("Writes (start, stop, resume) need a token with the run role (or admin).");
  });
  try { health = await api("/health"); } catch { /* the pages will say what fails */ }
  await refreshSession();
  showTokenButton();
  window.addEventListener("hashchange", render);
  await render();
}

start();
