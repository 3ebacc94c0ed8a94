// The history panel: the alerts of a period, closed ones too, searched on the server (GET /api/alerts with
// state, since, until, kind, category, area, q) and shown as a timeline of the period and a list.
//
// The period ends at the newest data's event time (js/clock.js), not the wall clock: "the last 12 hours" of a
// replay of January 2016 are hours of January 2016. Every filter is applied by the gateway to what the role may
// see (a partner's search runs on its generalized view); the page only builds the query and draws the answer.
//
// Opening an alert of the list fetches its page once (GET /api/alerts/{id}/records: its records and the actions on
// it, as the role may see them) and lists "What happened" inside it.

import { $, calls, el, fmtZoned, fullTime, isoTime, kindText, svg } from "./format.js";
import { unitName } from "./state.js";

/** Periods offered, hours. */
export const PERIOD_HOURS = [6, 12, 24, 72, 168];
export const DEFAULT_PERIOD_H = 12;
/** Most alerts one search lists. */
export const HISTORY_LIMIT = 500;

/**
 * The path of a history search. ``f``: {hours, state, kind, category, area, q}; ``end``: epoch seconds the period
 * ends at. Empty filters are left out; ``area`` only for roles that see areas (``withArea``).
 *
 * @returns {{path: string, since: number, until: number}}
 */
export function historySearch(f, end, withArea) {
  const hours = PERIOD_HOURS.includes(Number(f.hours)) ? Number(f.hours) : DEFAULT_PERIOD_H;
  const until = Math.ceil(end / 60) * 60;
  const since = until - hours * 3600;
  const q = new URLSearchParams({ state: f.state || "all", since: String(since), until: String(until), limit: String(HISTORY_LIMIT) });
  for (const key of ["kind", "category", ...(withArea ? ["area"] : []), "q"]) {
    const v = typeof f[key] === "string" ? f[key].trim() : "";
    if (v) q.set(key, v);
  }
  return { path: `/api/alerts?${q}`, since, until };
}

/**
 * A timeline's bars: each alert from its start to its latest record, clipped to [since, until], as fractions of
 * the period, in the fewest lanes where no two bars overlap (oldest first).
 *
 * @returns {{bars: {id, x0, x1, lane, severity}[], lanes: number}}
 */
export function timelineBars(alerts, since, until) {
  const span = until - since;
  if (!(span > 0)) return { bars: [], lanes: 0 };
  const items = alerts
    .filter((a) => typeof a.at === "number")
    .map((a) => ({ a, t0: Math.max(since, typeof a.started_at === "number" ? a.started_at : a.at), t1: Math.min(until, a.at) }))
    .filter(({ t0, t1 }) => t1 >= since && t0 <= until)
    .sort((x, y) => x.t0 - y.t0 || x.t1 - y.t1);
  const laneEnds = [];
  const bars = [];
  const minW = span / 200; // a one-minute alert still shows
  for (const { a, t0, t1 } of items) {
    const end = Math.max(t1, t0 + minW);
    let lane = laneEnds.findIndex((e) => e < t0);
    if (lane < 0) lane = laneEnds.push(end) - 1;
    else laneEnds[lane] = end;
    bars.push({ id: a.id, x0: (t0 - since) / span, x1: (end - since) / span, lane, severity: a.severity || "low" });
  }
  return { bars, lanes: laneEnds.length };
}

/** The path of an alert's page: ``id`` as the caller knows it (a detector's, or a partner's opaque one), URL-encoded. */
export function recordsPath(id) {
  return `/api/alerts/${encodeURIComponent(id)}/records`;
}

const ACTION_WORD = { ack: "Acknowledged", resolve: "Resolved" };

/**
 * What happened to an alert, in plain words: one line per entry of its page (GET /api/alerts/{id}/records), in its
 * order (oldest first). The first record is "Opened" (for supervisors and commanders, "Updated" when it is an update:
 * the older records are no longer kept), a closed one "Ended", any other "Updated"; each with the calls for
 * supervisors and commanders (partners' views carry no count) and the severity. Actions say "Acknowledged" or
 * "Resolved", with who and the note for supervisors and commanders (partners' actions carry neither).
 *
 * @returns {{at: number|null, text: string}[]}
 */
export function recordLines(records, partner) {
  const out = [];
  let first = true;
  for (const rec of Array.isArray(records) ? records : []) {
    if (rec.type === "alert" && rec.alert) {
      const a = rec.alert;
      // a partner's view says "open" for an update too (an update would tell it that calls came in)
      const word = a.state === "closed" ? "Ended" : first && a.state !== "update" ? "Opened" : "Updated";
      first = false;
      const parts = [];
      if (!partner && typeof a.observed === "number") parts.push(calls(a.observed) + (a.window_min ? ` in ${a.window_min} min` : ""));
      if (a.severity) parts.push(`severity ${a.severity}`);
      out.push({ at: typeof rec.at === "number" ? rec.at : null, text: parts.length ? `${word}: ${parts.join(", ")}` : word });
    } else if (rec.type === "action" && rec.action) {
      const x = rec.action;
      const word = ACTION_WORD[x.action] || "Handled";
      const who = !partner && x.by ? ` by ${x.by}${x.agency ? ` (${x.agency})` : ""}` : "";
      const note = !partner && x.note ? `: “${x.note}”` : "";
      out.push({ at: typeof rec.at === "number" ? rec.at : null, text: `${word}${who}${note}` });
    }
  }
  return out;
}

// ------------------------------------------------------------------ DOM

/** Wire the history form once: ``onSearch()`` on submit and on every change of a select; partners get no area field. */
export function wireHistory({ onSearch, partner }) {
  const form = $("#history-form");
  $("#history-area-field").hidden = partner;
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    onSearch();
  });
  for (const name of ["hours", "state", "kind", "category"]) form.elements[name].addEventListener("change", onSearch);
}

/** The named areas, as suggestions of the area field (supervisors and commanders). */
export function setAreaNames(names) {
  $("#history-areas").replaceChildren(...names.map((n) => el("option", { value: n })));
}

/** The form's filters. */
export function historyFilters() {
  const f = $("#history-form").elements;
  return { hours: f.hours.value, state: f.state.value, kind: f.kind.value, category: f.category.value, area: f.area.value, q: f.q.value };
}

export function showHistoryError(text) {
  $("#history-result").textContent = text;
}

/**
 * Draw a search's answer: the timeline of the period and the list, newest first. ``fetchJson(path)``: the JSON body
 * of GET ``path`` with the page's token (main.js's ``api``); without it, opening an alert lists nothing more.
 */
export function renderHistory(state, items, since, until, fetchJson = null) {
  const alerts = items.map((i) => i.alert);
  const n = alerts.length;
  const more = n >= HISTORY_LIMIT ? ` (the newest ${HISTORY_LIMIT}; narrow the search for the rest)` : "";
  $("#history-result").textContent =
    `${n ? `${n} alert${n === 1 ? "" : "s"}` : "No alerts"} between ${fmtZoned(since)} and ${fmtZoned(until)}${more}.`;
  renderTimeline(alerts, since, until);
  const list = $("#history-list");
  list.replaceChildren(...alerts.map((a) => historyItem(state, a, fetchJson)));
}

function renderTimeline(alerts, since, until) {
  const box = $("#history-timeline");
  const { bars, lanes } = timelineBars(alerts, since, until);
  const W = 1000;
  const laneH = 10;
  const H = Math.max(1, lanes) * (laneH + 4) + 4;
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img", class: "timeline" });
  chart.setAttribute("aria-label", `Timeline: ${bars.length} alert${bars.length === 1 ? "" : "s"} from ${fmtZoned(since)} to ${fmtZoned(until)}`);
  const byId = new Map(alerts.map((a) => [a.id, a]));
  for (const b of bars) {
    const a = byId.get(b.id);
    const rect = svg("rect", {
      x: (b.x0 * W).toFixed(1),
      y: 4 + b.lane * (laneH + 4),
      width: Math.max(2, (b.x1 - b.x0) * W).toFixed(1),
      height: laneH,
      class: `bar sev-${b.severity}`,
      "data-alert-id": b.id,
    });
    rect.append(svg("title", {}, `${(a.severity || "low").toUpperCase()} ${kindText(a.kind)}, ${fmtZoned(a.started_at)} to ${fmtZoned(a.at)}: ${a.summary || a.reason || ""}`));
    chart.append(rect);
  }
  // the period's ends and middle, in the jurisdiction's time (HTML under the stretched drawing: text keeps its shape)
  const ticks = el("div", { class: "ticks", "aria-hidden": "true" });
  for (const t of [since, (since + until) / 2, until]) ticks.append(el("span", {}, fmtZoned(t)));
  box.replaceChildren(chart, ticks);
  box.dataset.bars = String(bars.length);
}

const STATUS_WORD = { ack: "Acknowledged", resolve: "Resolved" };

function historyItem(state, a, fetchJson) {
  const sev = a.severity || "low";
  const li = el("li", { class: "history-item", "data-alert-id": a.id, "data-severity": sev, "data-state": a.state || "" });
  const details = el("details");
  const head = el("summary");
  head.append(
    el("time", { datetime: isoTime(a.started_at), title: fullTime(a.started_at) }, fmtZoned(a.started_at)),
    " ",
    el("span", { class: `severity sev-${sev}` }, sev.toUpperCase()),
    " ",
    el("span", { class: "kind" }, kindText(a.kind)),
    " ",
    el("span", { class: "text" }, a.summary || a.reason || ""),
  );
  details.append(head);
  const facts = el("dl", { class: "facts" });
  const fact = (k, v) => v && facts.append(el("dt", {}, k), el("dd", {}, v));
  fact("State", a.state === "closed" ? "ended" : "open");
  fact("Started", fmtZoned(a.started_at));
  fact("Last record", fmtZoned(a.at));
  if (state.partner) fact("Near", (a.units || []).map((u) => unitName(state, u)).join("; "));
  else fact("Areas", (a.areas || []).join(", "));
  const cats = Array.isArray(a.categories) ? a.categories : Object.keys(a.categories || {});
  fact("Categories", cats.join(", "));
  const s = a.status;
  if (s) {
    const who = s.by ? ` by ${s.by}` : "";
    fact(STATUS_WORD[s.action] || s.action, `${fmtZoned(s.at)}${who}${s.note ? `: “${s.note}”` : ""}`);
  } else {
    fact("Status", "not acknowledged");
  }
  if (!state.partner && a.reason && a.summary) fact("Detector", a.reason);
  details.append(facts);
  if (fetchJson) details.append(recordsBox(state, a.id, details, fetchJson));
  li.append(details);
  return li;
}

/** "What happened": fetched the first time ``details`` opens (again after a failure), listed in order. */
function recordsBox(state, id, details, fetchJson) {
  const box = el("section", { class: "history-records" });
  const note = el("p", { class: "records-note" });
  const list = el("ol", { class: "records" });
  box.append(el("h3", {}, "What happened"), note, list);
  let asked = false;
  details.addEventListener("toggle", async () => {
    if (!details.open || asked) return;
    asked = true;
    note.textContent = "Loading…";
    try {
      const body = await fetchJson(recordsPath(id));
      const lines = recordLines(body && body.records, state.partner);
      list.replaceChildren(
        ...lines.map(({ at, text }) => {
          const li = el("li");
          li.append(el("time", { datetime: isoTime(at), title: fullTime(at) }, fmtZoned(at)), " ", el("span", {}, text));
          return li;
        }),
      );
      note.textContent = lines.length ? "" : "No records of it are kept any more.";
    } catch (err) {
      asked = false; // try again when it is opened again
      note.textContent = `Could not load what happened: ${err.message}`;
    }
  });
  return box;
}
