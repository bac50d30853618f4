// Building the page safely: every piece of data goes in as text (textContent), never as HTML.

const SVG_NS = "http://www.w3.org/2000/svg";

function build(el, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "text") el.textContent = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** An HTML element: h("a", {href: "#/"}, "text", otherNode). */
export function h(tag, attrs = {}, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element. */
export function s(tag, attrs = {}, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

/** Trusted HTML made on the server (Pygments highlighting: every piece of code in it is escaped there). */
export function trustedHtml(html) {
  const t = document.createElement("template");
  t.innerHTML = html;
  for (const el of t.content.querySelectorAll("script, iframe, object, embed, [href], [src]")) el.remove();
  return t.content;
}

export function table(columns, rows, {empty = "none yet", cls = ""} = {}) {
  if (!rows.length) return h("p", {class: "muted"}, empty);
  return h("table", {class: `grid ${cls}`},
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", {class: c.num ? "num" : ""}, c.label)))),
    h("tbody", {}, rows.map((row) => h("tr", {}, columns.map((c) => h("td", {class: c.num ? "num" : ""}, c.cell(row)))))));
}

export const fmt = {
  score(x) {
    if (x === null || x === undefined) return "–";
    const a = Math.abs(x);
    if (a !== 0 && (a < 1e-3 || a >= 1e6)) return x.toExponential(4);
    return Number(x.toPrecision(7)).toString();
  },
  int(n) { return n === null || n === undefined ? "–" : Math.round(n).toLocaleString("en-US"); },
  pct(x) { return x === null || x === undefined ? "–" : `${(100 * x).toFixed(1)}%`; },
  usd(x) { return x ? `$${x < 0.01 ? x.toFixed(4) : x.toFixed(2)}` : "$0"; },
  tokens(n) {
    if (!n) return "0";
    if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
    if (n >= 1e4) return `${(n / 1e3).toFixed(1)}k`;
    return fmt.int(n);
  },
  seconds(x) { return x === null || x === undefined ? "–" : x < 1 ? `${(1000 * x).toFixed(0)} ms` : `${x.toFixed(2)} s`; },
  when(ts) {
    const d = new Date(ts * 1000);
    const pad = (v) => String(v).padStart(2, "0");
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
  },
  short(id) { return id ? id.slice(0, 8) : "–"; },
};

export function statusBadge(status) {
  return h("span", {class: `badge s-${status}`}, status.replace("_", " "));
}

export function programLink(id, label) {
  return h("a", {href: `#/programs/${id}`, class: "mono"}, label ?? fmt.short(id));
}

export function section(title, ...children) {
  return h("section", {class: "card"}, h("h2", {}, title), ...children);
}

export function errorBox(err) {
  const field = err && err.field ? ` (${err.field})` : "";
  return h("div", {class: "error", role: "alert"}, `${err && err.message ? err.message : String(err)}${field}`);
}
