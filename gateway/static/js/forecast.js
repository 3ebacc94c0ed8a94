// Next shift (supervisors and commanders): the worker's forecast of the next 8 hours per area with its 80 % and 95 %
// bands, the 8-hour total in words, the next shift's hot spots as a map layer, how good recent forecasts were, and,
// for supervisors, the recommended allocation of the shift's units with its safeguards (floor, cap), the skew report
// and an Adopt button.
//
// Reads GET /api/forecast (the set: commanders only what lies in their cells) and the forecast frames that follow
// each new set; GET /api/allocation?units=&floor=&cap= and POST /api/allocation (supervisors).
// The pure parts (the area list, the chart's geometry, the sentences, the monitor's rows, the flagged cells, the
// allocation's query) are exported for tests/gateway/js/forecast.test.mjs.

import { $, el, fmtWindow, svg } from "./format.js";

/** The shift the panel shows, hours (the set's "hourly" are its hours). */
export const SHIFT_HOURS = 8;
/** The flagged shares of the jurisdiction the hot-spot layer draws (the NIJ challenge's 0.5 % and 1 %). */
export const FLAG_SHARES = ["0.005", "0.01"];

const LEVELS = { jurisdiction: "the jurisdiction", area: "named areas", cell6: "res-6 areas", cell7: "res-7 cells" };
const LEVEL_ORDER = ["jurisdiction", "area", "cell6", "cell7"];

/** The entries the panel can show, jurisdiction first, then named areas and res-6 cells by name: [{key, label}]. */
export function forecastAreas(fs) {
  const areas = (fs && fs.areas) || {};
  const rank = (e) => ({ jurisdiction: 0, area: 1, cell6: 2 })[e.kind];
  return Object.entries(areas)
    .filter(([, e]) => e && rank(e) !== undefined && Array.isArray(e.hourly) && e.hourly.length)
    .sort(([ka, a], [kb, b]) => rank(a) - rank(b) || String(a.name).localeCompare(String(b.name)) || ka.localeCompare(kb))
    .map(([key, e]) => ({ key, label: e.kind === "cell6" ? `${e.name || "area"} (${key.replace(/^h3:/, "")})` : e.name || key }));
}

/** The key shown by default: ``wanted`` when the set has it, else the jurisdiction, else the first area. */
export function chosenArea(fs, wanted) {
  const keys = forecastAreas(fs).map((a) => a.key);
  if (wanted && keys.includes(wanted)) return wanted;
  return keys.includes("jurisdiction") ? "jurisdiction" : keys[0] || null;
}

/**
 * The chart's geometry for ``hourly`` (the next hours' forecasts) in a ``w`` × ``h`` box, each hour a step ``w / n``
 * wide and its value drawn at the step's middle: {mean: polyline points, band80 / band95: polygon points from high
 * down to low, max: the y axis' top, n}.
 */
export function bandGeometry(hourly, w, h) {
  const ok = (hourly || []).filter((f) => f && typeof f.mean === "number");
  if (!ok.length) return { mean: "", band80: "", band95: "", max: 0, n: 0 };
  const max = Math.max(1, ...ok.map((f) => Math.max(f.mean, typeof f.hi95 === "number" ? f.hi95 : 0)));
  const step = w / ok.length;
  const x = (i) => (step * (i + 0.5)).toFixed(1);
  const y = (v) => (h - (v / max) * h).toFixed(1);
  const band = (lo, hi) => [...ok.map((f, i) => `${x(i)},${y(f[hi])}`), ...ok.map((f, i) => `${x(i)},${y(f[lo])}`).reverse()].join(" ");
  return { mean: ok.map((f, i) => `${x(i)},${y(f.mean)}`).join(" "), band80: band("lo80", "hi80"), band95: band("lo95", "hi95"), max, n: ok.length };
}

function callsWord(n) {
  return `${n} call${n === 1 ? "" : "s"}`;
}

/** "About 120 calls expected 23:00–07:00, likely 105–136." for a forecast F of the shift. */
export function shiftSentence(f) {
  if (!f || typeof f.mean !== "number") return "No forecast for this area.";
  const span = fmtWindow(f.start, Math.round((f.end - f.start) / 60));
  return `About ${callsWord(Math.round(f.mean))} expected ${span}, likely ${f.lo80}–${f.hi80}.`;
}

/** "8 times in 10 between 105 and 136; 19 times in 20 between 99 and 143." */
export function bandsSentence(f) {
  if (!f || typeof f.lo80 !== "number") return "";
  return `8 times in 10 between ${f.lo80} and ${f.hi80}; 19 times in 20 between ${f.lo95} and ${f.hi95}.`;
}

/**
 * The monitor's figures as rows, the jurisdiction first then finer levels, each horizon in order:
 * [{level, label, horizon, n, mae, coverage80, coverage95, drift}]; a commander's set has only the cell levels.
 */
export function monitorRows(monitor) {
  const rows = [];
  for (const [key, m] of Object.entries(monitor || {})) {
    const [level, horizon] = key.split("|");
    if (!m || typeof m !== "object") continue;
    rows.push({ level, label: LEVELS[level] || level, horizon: Number(horizon), ...m });
  }
  const order = (l) => (LEVEL_ORDER.includes(l) ? LEVEL_ORDER.indexOf(l) : LEVEL_ORDER.length);
  return rows.sort((a, b) => order(a.level) - order(b.level) || a.horizon - b.horizon);
}

/** "next hour", "next 8 h". */
export function horizonText(hours) {
  return hours === 1 ? "next hour" : `next ${hours} h`;
}

/** "83 % (aim 80 %)": an interval's coverage against its nominal level; "—" when not measured. */
export function coverageText(value, nominal) {
  return typeof value === "number" ? `${Math.round(value * 100)} % (aim ${nominal} %)` : "—";
}

/** The hot spots flagged at ``share`` ("0.005" or "0.01"): the cells whose rank is within that share's count. */
export function flaggedCells(hotspots, share) {
  const limit = hotspots && hotspots.flagged ? hotspots.flagged[share] : undefined;
  return ((hotspots && hotspots.cells) || []).filter((c) =>
    Array.isArray(c.flagged) ? c.flagged.includes(share) : typeof limit === "number" && c.rank <= limit,
  );
}

/**
 * The allocation's query string from the form's text: "?units=12&floor=1&cap=10", or {error} naming what is wrong.
 * ``floor`` and ``cap`` may be left empty (the gateway's defaults: 1 unit per area when there are enough units, 10 points).
 */
export function allocationQuery(units, floor, cap) {
  const whole = (text) => /^\d{1,5}$/.test(String(text).trim());
  if (!whole(units)) return { error: "Give the units on the next shift as a whole number." };
  const q = new URLSearchParams({ units: String(Number(units)) });
  if (String(floor || "").trim()) {
    if (!whole(floor)) return { error: "The floor is a whole number of units per area." };
    q.set("floor", String(Number(floor)));
  }
  if (String(cap || "").trim()) {
    if (!whole(cap) || Number(cap) < 1 || Number(cap) > 100) return { error: "The cap is 1 to 100 percentage points." };
    q.set("cap", String(Number(cap)));
  }
  return { query: `?${q}` };
}

const pct = (x) => (typeof x === "number" ? `${Math.round(x * 100)} %` : "—");

// ------------------------------------------------------------------ DOM

/** Draw the set ``fs`` (GET /api/forecast or a forecast frame) for the area ``key``; returns the key shown. */
export function renderForecast(fs, key, onChoose) {
  const box = $("#forecast-panel");
  const select = $("#forecast-area");
  const areas = forecastAreas(fs);
  const shown = chosenArea(fs, key);
  // the options are drawn again only when the areas change: a new set every quarter hour must not close the list
  // under a supervisor's pointer (or replace the option being chosen)
  const kept = [...select.options];
  const same = kept.length === areas.length && areas.every((a, i) => kept[i].value === a.key && kept[i].text === a.label);
  if (same) {
    for (const o of kept) o.selected = o.value === shown;
  } else {
    select.replaceChildren(...areas.map((a) => el("option", { value: a.key, selected: a.key === shown }, a.label)));
  }
  select.disabled = !areas.length;
  select.onchange = () => onChoose(select.value);
  box.dataset.version = fs && typeof fs.version === "number" ? String(fs.version) : "";
  if (!shown) {
    $("#forecast-summary").textContent = "No area of the forecast lies inside your zones.";
    $("#forecast-bands").textContent = "";
    $("#forecast-chart").replaceChildren();
    $("#forecast-hours tbody").replaceChildren();
    renderMonitor(fs && fs.monitor);
    return null;
  }
  const entry = fs.areas[shown];
  const shift = (entry.by_horizon || {})[String(SHIFT_HOURS)];
  const summary = $("#forecast-summary");
  summary.textContent = shiftSentence(shift);
  summary.dataset.mean = shift ? String(shift.mean) : "";
  $("#forecast-bands").textContent = bandsSentence(shift);
  renderChart(entry.hourly || [], entry.name || shown);
  $("#forecast-hours tbody").replaceChildren(
    ...(entry.hourly || []).map((f) => {
      const row = el("tr");
      row.append(
        el("th", { scope: "row" }, fmtWindow(f.start, 60)),
        el("td", {}, String(Math.round(f.mean * 10) / 10)),
        el("td", {}, `${f.lo80}–${f.hi80}`),
        el("td", {}, `${f.lo95}–${f.hi95}`),
      );
      return row;
    }),
  );
  renderMonitor(fs.monitor);
  return shown;
}

function renderChart(hourly, name) {
  const W = 480;
  const H = 80;
  const g = bandGeometry(hourly, W, H);
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img" });
  chart.setAttribute("aria-label", `Expected calls per hour in ${name} over the next ${g.n} hours, with 80 % and 95 % bands (the table below lists them)`);
  if (g.band95) chart.append(svg("polygon", { points: g.band95, class: "band95" }));
  if (g.band80) chart.append(svg("polygon", { points: g.band80, class: "band80" }));
  if (g.mean) chart.append(svg("polyline", { points: g.mean, class: "mean" }));
  const axis = el("div", { class: "ticks", "aria-hidden": "true" });
  const first = hourly.length ? hourly[0].start : null;
  const last = hourly.length ? hourly[hourly.length - 1].end : null;
  axis.append(el("span", {}, first === null ? "" : fmtWindow(first, 60).split("–")[0]), el("span", {}, `max ${g.max}`), el("span", {}, last === null ? "" : fmtWindow(last - 3600, 60).split("–")[1]));
  $("#forecast-chart").replaceChildren(chart, axis);
  $("#forecast-chart").dataset.hours = String(g.n);
}

function renderMonitor(monitor) {
  const rows = monitorRows(monitor);
  const box = $("#forecast-monitor");
  box.hidden = !rows.length;
  $("tbody", box).replaceChildren(
    ...rows.map((m) => {
      const row = el("tr");
      row.append(
        el("th", { scope: "row" }, `${m.label}, ${horizonText(m.horizon)}`),
        el("td", {}, typeof m.n === "number" ? String(m.n) : "—"),
        el("td", {}, typeof m.mae === "number" ? m.mae.toFixed(1) : "—"),
        el("td", {}, coverageText(m.coverage80, 80)),
        el("td", {}, coverageText(m.coverage95, 95)),
      );
      return row;
    }),
  );
}

/** The panel while there is no forecast: the gateway's word on why. */
export function renderNoForecast(message) {
  $("#forecast-summary").textContent = message;
  $("#forecast-summary").dataset.mean = "";
  $("#forecast-bands").textContent = "";
  $("#forecast-chart").replaceChildren();
  $("#forecast-hours tbody").replaceChildren();
  $("#forecast-area").replaceChildren();
  $("#forecast-area").disabled = true;
  $("#forecast-monitor").hidden = true;
}

/** Draw GET /api/allocation's answer: the table of recommendations, the skew report, and the plan adopted last. */
export function renderAllocation(body) {
  const table = $("#allocation-table");
  table.hidden = false;
  $("tbody", table).replaceChildren(
    ...body.rows.map((r) => {
      const row = el("tr", { "data-key": r.key });
      const why = el("td", { class: "why" }, r.explanation);
      const bound = [r.floor_bound ? "floor" : null, r.cap_bound ? "cap" : null].filter(Boolean).join(", ");
      row.append(
        el("th", { scope: "row" }, r.name),
        el("td", { class: "units" }, String(r.units)),
        el("td", {}, pct(r.share)),
        el("td", {}, `${Math.round(r.mean)} (${r.lo80}–${r.hi80})`),
        el("td", {}, bound || "—"),
        why,
      );
      return row;
    }),
  );
  const skew = $("#allocation-skew");
  skew.hidden = false;
  $("tbody", skew).replaceChildren(
    ...body.skew.map((s) => {
      const row = el("tr");
      row.append(el("th", { scope: "row" }, s.name), el("td", {}, pct(s.allocation_share)), el("td", {}, pct(s.calls_share)), el("td", {}, s.population_share === null ? "not configured" : pct(s.population_share)));
      return row;
    }),
  );
  const held = body.cap_held ? "" : " The cap could not hold for every area this shift and was not applied.";
  $("#allocation-note").textContent = `${body.units} units, floor ${body.floor} per area, cap ${Math.round(body.cap * 100)} points from the plan adopted last.${held}`;
  renderAdopted(body.adopted);
  $("#allocation-adopt").hidden = false;
}

/** "Adopted by sup-anna at 22:40 for 23:00–07:00: 12 units." */
export function renderAdopted(adopted) {
  const note = $("#allocation-adopted");
  if (!adopted) {
    note.textContent = "No plan adopted yet: the cap applies from the first one adopted.";
    return;
  }
  const shift = adopted.shift ? ` for ${fmtWindow(adopted.shift.start, Math.round((adopted.shift.end - adopted.shift.start) / 60))}` : "";
  note.textContent = `Plan adopted last: by ${adopted.by} at ${fmtWindow(adopted.adopted_at, 1).split("–")[0]}${shift}, ${adopted.units} units.`;
}
