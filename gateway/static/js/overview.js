// At a glance (supervisors and commanders): KPI tiles (calls in the last 15 min, hour and 24 h against the usual,
// open incidents, median times to dispatch and to the scene) and the calls of the last 24 hours against the usual
// band, from GET /api/overview (the worker's counts at its watermark; "usual" is the same clock time on each of
// the previous days still kept, at most 7). Its category and area filters act on the tiles, the chart and the feed.
//
// The pure parts (comparison words, the chart's geometry) are exported for tests/gateway/js/overview.test.mjs.

import { $, el, fmtTime, svg } from "./format.js";
import { usualClass } from "./geo.js";

/**
 * "about twice the usual", "about the usual", "below the usual": a plain word for ``calls`` against ``usual``, on
 * the map's classes (geo.js ``usualClass``), the ones above the usual said with their ratio.
 */
export function comparedToUsual(calls, usual) {
  const cls = usualClass(calls, usual);
  if (cls === null) return "no usual yet";
  if (cls === "below") return "below the usual";
  if (cls === "about") return "about the usual";
  if (usual < 0.5) return `${calls} where almost none are usual`;
  const r = calls / usual;
  const words = { 2: "twice", 3: "three times", 4: "four times", 5: "five times" };
  const n = Math.round(r);
  return r < 1.75 ? "half again the usual" : `about ${words[n] || `${n} times`} the usual`;
}

/** "1 h", "15 min", "24 h". */
export function windowText(minutes) {
  return minutes % 60 === 0 ? `${minutes / 60} h` : `${minutes} min`;
}

/**
 * The chart's geometry in a ``w`` × ``h`` box: {calls: "x,y ..." polyline of the calls per bin, usual: the usual's
 * polyline, band: "x,y ..." polygon from low to high (empty when no usual), max: the y axis' top}.
 */
export function chartGeometry(bins, w, h) {
  const ok = (bins || []).filter((b) => typeof b.calls === "number");
  if (!ok.length) return { calls: "", usual: "", band: "", max: 0 };
  const max = Math.max(1, ...ok.map((b) => Math.max(b.calls, typeof b.high === "number" ? b.high : 0)));
  const step = ok.length > 1 ? w / (ok.length - 1) : 0;
  const x = (i) => (i * step).toFixed(1);
  const y = (v) => (h - (v / max) * h).toFixed(1);
  const calls = ok.map((b, i) => `${x(i)},${y(b.calls)}`).join(" ");
  const withUsual = ok.map((b, i) => [i, b]).filter(([, b]) => typeof b.usual === "number");
  const usual = withUsual.map(([i, b]) => `${x(i)},${y(b.usual)}`).join(" ");
  const band = withUsual.length
    ? [...withUsual.map(([i, b]) => `${x(i)},${y(b.high)}`), ...withUsual.reverse().map(([i, b]) => `${x(i)},${y(b.low)}`)].join(" ")
    : "";
  return { calls, usual, band, max };
}

// ------------------------------------------------------------------ DOM

/** "≤ 300 s" for a response-time median of /api/overview, "—" when there was none. */
export function medianText(m) {
  return m && m.n && typeof m.median === "string" ? m.median.replace("<=", "≤").replace(">", "over") : "—";
}

/** Draw /api/overview's answer ``o`` into the tiles strip. */
export function renderOverview(o) {
  const tiles = (o.tiles || []).map((t) => {
    const word = comparedToUsual(t.calls, t.usual);
    const detail = typeof t.usual === "number" ? `${word} (${t.usual.toFixed(t.usual < 10 ? 1 : 0)})` : word;
    const high = ["above", "well-above"].includes(usualClass(t.calls, t.usual));
    return tile(`Calls, last ${windowText(t.window_min)}`, typeof t.calls === "number" ? String(t.calls) : "—", detail, high);
  });
  const open = o.open_incidents;
  tiles.push(tile("Open incidents", typeof open === "number" ? String(open) : "—", "calls not yet closed", false));
  const r = o.response || {};
  // the worker keeps response times per coarse cell and not per category: the gateway gives them for the whole
  // jurisdiction only (null for a filter or a commander's zone)
  const n = (m) => (!o.response ? "whole jurisdiction only" : m && m.n ? `24 h, ${m.n} calls` : "none in 24 h");
  tiles.push(tile("Median to dispatch", medianText(r.dispatch), n(r.dispatch), false));
  tiles.push(tile("Median to the scene", medianText(r.travel), n(r.travel), false));
  $("#overview-tiles").replaceChildren(...tiles);
  const days = o.usual_days || 0;
  $("#overview-note").textContent = days
    ? `the mean of the same time on each of the previous ${days} day${days === 1 ? "" : "s"}, the band from their lowest to their highest.`
    : "none yet, as the worker keeps no previous day.";
  renderChart((o.series && o.series.bins) || [], o.series ? o.series.step_min : 15);
  renderAreas(o.response_areas);
}

/** The busiest areas' response times (the whole jurisdiction only: hidden under a filter or for a commander). */
function renderAreas(areas) {
  const box = $("#overview-areas");
  box.hidden = !Array.isArray(areas) || !areas.length;
  if (box.hidden) return;
  $("tbody", box).replaceChildren(
    ...areas.map((a) => {
      const row = el("tr");
      const where = a.name ? `around ${a.name}` : a.cell;
      const calls = a.dispatch && a.dispatch.n ? String(a.dispatch.n) : "—";
      row.append(el("th", { scope: "row", title: a.cell }, where), el("td", {}, calls), el("td", {}, medianText(a.dispatch)), el("td", {}, medianText(a.travel)));
      return row;
    }),
  );
}

function tile(label, value, detail, high) {
  const node = el("div", { class: "tile", "data-high": String(high), role: "group", "aria-label": label });
  node.append(el("span", { class: "tile-label" }, label), el("span", { class: "tile-value" }, value), el("span", { class: "tile-detail" }, detail));
  return node;
}

function renderChart(bins, stepMin) {
  const box = $("#overview-chart");
  const W = 480;
  const H = 64;
  const g = chartGeometry(bins, W, H);
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img" });
  const first = bins.length ? bins[0].start : null;
  const last = bins.length ? bins[bins.length - 1].start + stepMin * 60 : null;
  const total = bins.reduce((s, b) => s + (typeof b.calls === "number" ? b.calls : 0), 0);
  chart.setAttribute("aria-label", `Calls per ${stepMin} minutes over the last 24 hours: ${total} in all; the usual band behind them`);
  if (g.band) chart.append(svg("polygon", { points: g.band, class: "band" }));
  if (g.usual) chart.append(svg("polyline", { points: g.usual, class: "usual" }));
  if (g.calls) chart.append(svg("polyline", { points: g.calls, class: "calls" }));
  const axis = el("div", { class: "ticks", "aria-hidden": "true" });
  axis.append(el("span", {}, first === null ? "" : fmtTime(first)), el("span", {}, `max ${g.max}`), el("span", {}, last === null ? "" : fmtTime(last)));
  box.replaceChildren(chart, axis);
  box.dataset.bins = String(bins.length);
}
