// Score plots as SVG: the best score over iterations, and every candidate (downsampled on the server into buckets of
// consecutive iterations: each drawn as its score range and its best program, which a click opens).

import {fmt, s} from "./dom.js";

const W = 640;
const H = 250;
const M = {left: 64, right: 14, top: 12, bottom: 40};

export function niceTicks(lo, hi, count = 5) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((f) => f * mag).find((v) => v >= raw) || 10 * mag;
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

function domain(values, pad = 0.06) {
  const finite = values.filter((v) => v !== null && v !== undefined && Number.isFinite(v));
  if (!finite.length) return [0, 1];
  let lo = Math.min(...finite);
  let hi = Math.max(...finite);
  if (hi === lo) { const d = Math.abs(lo) * 0.05 || 1; lo -= d; hi += d; }
  const d = (hi - lo) * pad;
  return [lo - d, hi + d];
}

function frame({xMax, yDomain, xLabel, yLabel, label}) {
  const [y0, y1] = yDomain;
  const x = (v) => M.left + (v / Math.max(1, xMax)) * (W - M.left - M.right);
  const y = (v) => H - M.bottom - ((v - y0) / (y1 - y0)) * (H - M.top - M.bottom);
  const svg = s("svg", {viewBox: `0 0 ${W} ${H}`, class: "plot", role: "img", "aria-label": label});
  const axes = s("g", {class: "axes"});
  for (const t of niceTicks(y0, y1)) {
    axes.append(s("line", {x1: M.left, x2: W - M.right, y1: y(t), y2: y(t), class: "gridline"}),
      s("text", {x: M.left - 6, y: y(t) + 4, "text-anchor": "end"}, fmt.score(t)));
  }
  for (const t of niceTicks(0, Math.max(1, xMax), 6).filter((v) => Number.isInteger(v))) {
    axes.append(s("line", {x1: x(t), x2: x(t), y1: H - M.bottom, y2: H - M.bottom + 4, class: "tick"}),
      s("text", {x: x(t), y: H - M.bottom + 16, "text-anchor": "middle"}, fmt.int(t)));
  }
  axes.append(
    s("line", {x1: M.left, x2: W - M.right, y1: H - M.bottom, y2: H - M.bottom, class: "axis"}),
    s("line", {x1: M.left, x2: M.left, y1: M.top, y2: H - M.bottom, class: "axis"}),
    s("text", {x: (M.left + W - M.right) / 2, y: H - 4, "text-anchor": "middle", class: "axis-label"}, xLabel),
    s("text", {x: 12, y: (M.top + H - M.bottom) / 2, "text-anchor": "middle", class: "axis-label",
      transform: `rotate(-90 12 ${(M.top + H - M.bottom) / 2})`}, yLabel),
  );
  svg.append(axes);
  return {svg, x, y};
}

function clickable(el, id, onPick) {
  if (!id) return el;
  el.classList.add("pick");
  el.dataset.program = id;
  el.addEventListener("click", () => onPick(id));
  return el;
}

/** The best score so far at every iteration: a step line through the improvements; the known best dashed. */
export function bestPlot({steps, lastIteration, knownBest, metric, onPick}) {
  const values = steps.map((p) => p.score);
  if (knownBest !== null && knownBest !== undefined) values.push(knownBest);
  const xMax = Math.max(lastIteration, ...steps.map((p) => p.iteration), 1);
  const {svg, x, y} = frame({xMax, yDomain: domain(values), xLabel: "iteration", yLabel: `best ${metric}`,
    label: "best score over iterations"});
  if (knownBest !== null && knownBest !== undefined) {
    svg.append(s("line", {x1: M.left, x2: W - M.right, y1: y(knownBest), y2: y(knownBest), class: "known-best"}),
      s("text", {x: W - M.right - 4, y: y(knownBest) - 4, "text-anchor": "end", class: "known-best-label"},
        `known best ${fmt.score(knownBest)}`));
  }
  if (!steps.length) return svg;
  let d = `M${x(steps[0].iteration)},${y(steps[0].score)}`;
  for (const p of steps.slice(1)) d += `H${x(p.iteration)}V${y(p.score)}`;
  d += `H${x(xMax)}`;
  svg.append(s("path", {d, class: "best-line"}));
  for (const p of steps) {
    svg.append(clickable(s("circle", {cx: x(p.iteration), cy: y(p.score), r: 3.5, class: "best-point"},
      s("title", {}, `iteration ${fmt.int(p.iteration)}: ${fmt.score(p.score)}`)), p.program_id, onPick));
  }
  return svg;
}

/**
 * Every candidate: per bucket of iterations a bar over the range of its valid scores and a dot at its best (a click
 * opens it); along the axis a strip whose height is the bucket's share of failed candidates. Ranges and the strip are
 * one path each and the dots carry no tooltip element of their own: a readout under the plot follows the pointer, so a
 * 100,000-program campaign stays a few hundred nodes.
 */
export function candidatesPlot({series, metric, onPick}) {
  const valid = series.filter((b) => b.valid > 0);
  const xMax = Math.max(1, ...series.map((b) => b.last));
  const {svg, x, y} = frame({xMax, yDomain: domain(valid.flatMap((b) => [b.low, b.high])), xLabel: "iteration",
    yLabel: metric, label: "score of every candidate"});
  let strip = "";
  for (const b of series) {
    const failed = b.programs - b.valid;
    if (!failed) continue;
    const x0 = x(b.first);
    const w = Math.max(1, x(b.last + 1) - x0);
    const hgt = 10 * (failed / b.programs);
    strip += `M${x0.toFixed(1)},${(H - M.bottom).toFixed(1)}v${(-hgt).toFixed(1)}h${w.toFixed(1)}v${hgt.toFixed(1)}z`;
  }
  let ranges = "";
  const marks = s("g", {class: "candidates"});
  const centre = (b) => x((b.first + b.last) / 2);
  for (const [i, b] of valid.entries()) {
    const cx = centre(b);
    if (b.high !== b.low) ranges += `M${cx.toFixed(1)},${y(b.low).toFixed(1)}V${y(b.high).toFixed(1)}`;
    const dot = s("circle", {cx: cx.toFixed(1), cy: y(b.best_score ?? b.high).toFixed(1), r: 2.6, class: "candidate", dataset: {bucket: i}});
    marks.append(clickable(dot, b.best_id, onPick));
  }
  svg.append(s("path", {d: strip, class: "failures"}), s("path", {d: ranges, class: "ranges"}), marks);
  const readout = document.createElement("p");
  readout.className = "readout muted";
  readout.textContent = "Point at a dot for its iterations; click it to open that program.";
  marks.addEventListener("mouseover", (e) => {
    const b = valid[Number(e.target.dataset.bucket)];
    if (!b) return;
    const span = b.first === b.last ? `iteration ${fmt.int(b.first)}` : `iterations ${fmt.int(b.first)}–${fmt.int(b.last)}`;
    readout.textContent = `${span}: ${fmt.int(b.valid)} valid of ${fmt.int(b.programs)}, scores ${fmt.score(b.low)} to ${fmt.score(b.high)}; `
      + `best ${fmt.score(b.best_score)} (${b.best_id.slice(0, 8)})`;
  });
  const box = document.createElement("div");
  box.append(svg, readout);
  return box;
}
