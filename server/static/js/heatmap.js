// The MAP-Elites map of each island as an SVG heatmap over two feature axes: colour is the elite's score (brighter is
// better, whatever the objective's direction), empty cells are drawn empty, a click on a cell opens its elite.
// One axis draws a single row; with more than two, the map shows two chosen axes and each of their cells holds the
// best elite over the other axes. No axis at all: one cell per island.

import {fmt, h, s} from "./dom.js";

// viridis, from dark (worse) to bright (better)
const STOPS = ["#440154", "#3b528b", "#21918c", "#5ec962", "#fde725"];

export function colour(t) {
  const v = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0)) * (STOPS.length - 1);
  const i = Math.min(STOPS.length - 2, Math.floor(v));
  const f = v - i;
  const a = STOPS[i].match(/\w\w/g).map((c) => parseInt(c, 16));
  const b = STOPS[i + 1].match(/\w\w/g).map((c) => parseInt(c, 16));
  return `rgb(${a.map((c, k) => Math.round(c + f * (b[k] - c))).join(",")})`;
}

function edges(axis) {
  return (bin) => axis.min + ((axis.max - axis.min) * bin) / axis.bins;
}

/** Cells keyed "x,y" for the chosen axes (best elite first: the API lists each island's cells best first). */
function project(cells, xi, yi) {
  const out = new Map();
  for (const c of cells) {
    const key = `${xi === null ? 0 : c.coordinates[xi] ?? 0},${yi === null ? 0 : c.coordinates[yi] ?? 0}`;
    const held = out.get(key);
    if (held) held.merged += 1;
    else out.set(key, {...c, merged: 1});
  }
  return out;
}

function islandMap({island, cells, axes, xi, yi, scale, onPick}) {
  const nx = xi === null ? 1 : axes[xi].bins;
  const ny = yi === null ? 1 : axes[yi].bins;
  const size = Math.max(8, Math.min(34, Math.floor(300 / Math.max(nx, ny))));
  const left = yi === null ? 8 : 46;
  const bottom = xi === null ? 8 : 34;
  const width = left + nx * size + (xi === null ? 8 : 22);  // room for the last tick label
  const height = 8 + ny * size + bottom;
  const svg = s("svg", {viewBox: `0 0 ${width} ${height}`, width, height, class: "heatmap", role: "img",
    "aria-label": `MAP-Elites map of island ${island}`, dataset: {island}});
  const filled = project(cells, xi, yi);
  for (let gx = 0; gx < nx; gx += 1) {
    for (let gy = 0; gy < ny; gy += 1) {
      const c = filled.get(`${gx},${gy}`);
      const rect = s("rect", {x: left + gx * size, y: 8 + (ny - 1 - gy) * size, width: size - 1, height: size - 1,
        class: c ? "cell filled" : "cell empty"});
      if (c) {
        rect.setAttribute("fill", colour(scale(c.score)));
        rect.dataset.cell = c.cell;
        rect.dataset.elite = c.elite_id;
        rect.addEventListener("click", () => onPick(c.elite_id));
        const merged = c.merged > 1 ? ` (best of ${c.merged} cells over the other axes)` : "";
        rect.append(s("title", {}, `cell ${c.cell}: ${fmt.score(c.score)}, elite ${fmt.short(c.elite_id)}${merged}`));
      } else {
        rect.append(s("title", {}, "empty cell"));
      }
      svg.append(rect);
    }
  }
  if (xi !== null) {
    const at = edges(axes[xi]);
    const every = Math.ceil(nx / 5);
    for (let gx = 0; gx <= nx; gx += every) {
      svg.append(s("text", {x: left + gx * size, y: 8 + ny * size + 12, "text-anchor": "middle", class: "tick-label"}, fmt.score(at(gx))));
    }
    svg.append(s("text", {x: left + (nx * size) / 2, y: height - 4, "text-anchor": "middle", class: "axis-label"}, axes[xi].name));
  }
  if (yi !== null) {
    const at = edges(axes[yi]);
    const every = Math.ceil(ny / 5);
    for (let gy = 0; gy <= ny; gy += every) {
      svg.append(s("text", {x: left - 4, y: 8 + (ny - gy) * size + 3, "text-anchor": "end", class: "tick-label"}, fmt.score(at(gy))));
    }
    svg.append(s("text", {x: 10, y: 8 + (ny * size) / 2, "text-anchor": "middle", class: "axis-label",
      transform: `rotate(-90 10 ${8 + (ny * size) / 2})`}, axes[yi].name));
  }
  return svg;
}

function legend(lo, hi, better) {
  const bar = s("svg", {viewBox: "0 0 220 30", width: 220, height: 30, class: "legend", "aria-hidden": "true"});
  for (let i = 0; i < 44; i += 1) bar.append(s("rect", {x: 5 * i, y: 0, width: 5, height: 12, fill: colour(i / 43)}));
  const worst = better === "minimize" ? hi : lo;
  const best = better === "minimize" ? lo : hi;
  bar.append(s("text", {x: 0, y: 26, class: "tick-label"}, fmt.score(worst)),
    s("text", {x: 220, y: 26, "text-anchor": "end", class: "tick-label"}, `${fmt.score(best)} (best)`));
  return bar;
}

/** The maps of every island, with axis pickers when there are more than two axes. Returns an element. */
export function archiveMaps({archive, direction, onPick}) {
  const {axes, islands} = archive;
  const scores = islands.flatMap((i) => i.cells.map((c) => c.score)).filter((v) => v !== null && Number.isFinite(v));
  const lo = scores.length ? Math.min(...scores) : 0;
  const hi = scores.length ? Math.max(...scores) : 1;
  const scale = (v) => {
    if (v === null || !(hi > lo)) return 1;
    const t = (v - lo) / (hi - lo);
    return direction === "minimize" ? 1 - t : t;
  };
  const root = h("div", {class: "maps"});
  const state = {xi: axes.length ? 0 : null, yi: axes.length > 1 ? 1 : null};
  const draw = () => {
    const grid = h("div", {class: "map-grid"}, islands.map((isl) => h("figure", {class: "map"},
      islandMap({island: isl.island, cells: isl.cells, axes, xi: state.xi, yi: state.yi, scale, onPick}),
      h("figcaption", {}, `island ${isl.island}: ${fmt.int(isl.cells.length)} cells filled`))));
    root.replaceChildren(...controls(), grid, h("div", {class: "legend-row"}, legend(lo, hi, direction)));
  };
  const controls = () => {
    if (axes.length <= 2) {
      const note = axes.length === 0 ? "This problem declares no feature axes: one cell per island."
        : axes.length === 1 ? `One feature axis (${axes[0].name}): each island is a single row.` : null;
      return note ? [h("p", {class: "muted"}, note)] : [];
    }
    const picker = (key, label) => h("label", {}, `${label} `, h("select", {
      onchange: (e) => { state[key] = Number(e.target.value); draw(); }, dataset: {axis: key},
    }, axes.map((a, i) => h("option", {value: i, selected: i === state[key]}, a.name))));
    return [h("p", {class: "muted"}, `${axes.length} feature axes: a cell shows the best elite over the axes not drawn. `,
      picker("xi", "x"), " ", picker("yi", "y"))];
  };
  draw();
  return root;
}
