// "What to expect at your places", for partners (transit, school): their forecast, read from GET /api/forecast and
// the forecast frames. The server makes it from the partner's own released numbers only (gateway/partnerforecast.py):
// per place and window, the mean of the same time on previous days as a range of whole calls, a withheld number
// counting as anything from 0 to k-1. This module only lays it out; it adds no number of its own.
//
// The section (index.html): <section id="partner-forecast" hidden> holding #partner-forecast-places (one <details>
// per place) and #partner-forecast-note. main.js calls renderPartnerForecast(view) with each answer or frame.

import { $, calls, el, fmtWindow } from "./format.js";

/** One window's range in words: "3–5 calls", "4 calls", "fewer than 3", or "no numbers yet" when no day had one. */
export function rangeText(w, k) {
  if (!w || typeof w.low !== "number" || typeof w.high !== "number") return "no numbers yet";
  if (w.high < k) return `fewer than ${k}`;
  if (w.low === w.high) return calls(w.low);
  return `${w.low}–${w.high} calls`;
}

/** "On those days: between 1 and 7." (the least and the most of a single day), or "" when unknown. */
export function spreadText(w) {
  if (!w || typeof w.least !== "number" || typeof w.most !== "number") return "";
  return w.least === w.most ? `On those days: ${calls(w.least)} each time.` : `On those days: between ${w.least} and ${w.most}.`;
}

/**
 * The section's content: for each place, its next ``limit`` windows as {start, when, range, detail}; ``detail`` is
 * the server's own sentence and the spread, for a tooltip and for screen readers.
 */
export function expectRows(view, limit = 8) {
  if (!view || !Array.isArray(view.units)) return [];
  return view.units.map((u) => ({
    id: u.id,
    name: u.name,
    windows: (u.windows || []).slice(0, limit).map((w) => ({
      start: w.start,
      when: fmtWindow(w.start, view.window_min),
      range: rangeText(w, view.k),
      detail: [w.text, spreadText(w)].filter(Boolean).join(". "),
    })),
  }));
}

/** Which days it is made from, in words: "From the numbers released to you on 7 days, 2026-11-28 to 2026-12-04." */
export function basisNote(view) {
  if (!view) return "";
  const days = Array.isArray(view.days) ? view.days : [];
  if (!days.length) return view.text || "No numbers have been released to you yet to base a forecast on.";
  const which = view.same_weekday ? "the same weekday on previous weeks" : "the same time on previous days";
  const span = days.length === 1 ? days[0] : `${days[0]} to ${days[days.length - 1]}`;
  return (
    `Made only from the numbers released to you, for ${which} (${days.length} day${days.length === 1 ? "" : "s"}: ${span}). ` +
    `A number withheld as fewer than ${view.k} counts as anything from 0 to ${view.k - 1}, which widens the range.`
  );
}

/**
 * Draw ``view`` (a partner's /api/forecast answer or a frame's ``forecast``) into the section and show it: one
 * collapsible entry per place, its summary the next window's range, open when there are at most ``openUpTo`` places.
 */
export function renderPartnerForecast(view, root = $("#partner-forecast"), openUpTo = 2) {
  if (!root) return;
  const places = $("#partner-forecast-places", root);
  const note = $("#partner-forecast-note", root);
  const rows = expectRows(view);
  places.replaceChildren();
  note.textContent = basisNote(view);
  for (const place of rows) {
    const list = el("ul", { class: "partner-forecast-windows", "aria-label": `What to expect at ${place.name}` });
    for (const w of place.windows) {
      const item = el("li", { title: w.detail });
      item.append(el("span", { class: "when" }, w.when), " ", el("span", { class: "range" }, w.range));
      item.append(el("span", { class: "visually-hidden" }, `. ${w.detail}`));
      list.append(item);
    }
    if (!place.windows.length) list.append(el("li", { class: "hint" }, "no numbers yet"));
    const next = place.windows.length ? `: ${place.windows[0].range} next` : "";
    const summary = el("summary", {}, "");
    summary.append(el("span", { class: "place" }, place.name), el("span", { class: "hint" }, next));
    places.append(el("details", { class: "partner-forecast-place", "data-unit-id": place.id, open: rows.length <= openUpTo }, null));
    places.lastChild.append(summary, list);
  }
  root.hidden = false;
}
