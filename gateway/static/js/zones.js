// The left panel: the places in scope with their counts, the followed one, and for partners their agreement.
//
// Supervisors and commanders get one button per zone with its live count (the counts frame's ``zones``).
// Partners get one button per released unit (their zones, overlapping ones merged) with the unit's value in
// the newest closed window of their released table (the counts frame's ``units``), never a live count.

import { $, $$, el, fmtWindow, periodWord } from "./format.js";
import { describeTotal, unitTotal, withheldRules } from "./released.js";

/** Title, hint, buttons and agreement for the current zones (or units); ``onSelect(key)`` on a click. */
export function renderPlaces(state, { onSelect }) {
  const ul = $("#zone-list");
  ul.textContent = "";
  const items = state.partner ? unitItems(state) : zoneItems(state);
  for (const item of items) {
    const btn = el("button", { type: "button", class: item.cls, ...item.data, "aria-pressed": "false" });
    btn.append(el("span", { class: "zone-name" }, item.name), el("span", { class: `zone-kind kind-${item.kind}` }, item.kindText));
    btn.append(el("span", { class: item.countCls }, "—"));
    btn.addEventListener("click", () => onSelect(item.key));
    const li = el("li");
    li.append(btn);
    ul.append(li);
  }
  $("#zones-title").textContent = state.partner ? "Your places" : "Zones";
  $("#zone-all").textContent = state.partner ? "All your places" : "All zones";
  renderHint(state);
  renderAgreement(state);
  markSelection(state);
  renderCounts(state);
}

function zoneItems(state) {
  const sorted = [...state.zones.values()].sort((a, b) => a.kind.localeCompare(b.kind) || a.name.localeCompare(b.name));
  return sorted.map((z) => ({
    key: z.id,
    cls: "zone",
    data: { "data-zone-id": z.id },
    name: z.name,
    kind: z.kind,
    kindText: z.active === false ? `${z.kind} (inactive)` : z.kind,
    countCls: "count",
  }));
}

function unitItems(state) {
  return [...state.units]
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((u) => {
      const kinds = [...new Set(u.zones.map((z) => (state.zones.get(z) || {}).kind).filter(Boolean))];
      const kind = kinds.length === 1 ? kinds[0] : "area";
      return {
        key: u.id,
        cls: "zone unit",
        data: { "data-unit-id": u.id, "data-zone-ids": u.zones.join(" ") },
        name: u.name,
        kind,
        kindText: u.zones.length > 1 ? `${u.zones.length} ${kinds.length === 1 ? kinds[0] : "place"}s, counted as one` : kind,
        countCls: "count released",
      };
    });
}

function renderHint(state) {
  const hint = $("#zones-hint");
  if (state.partner && !state.countsShared) {
    hint.textContent = "Your agreement shares alerts for these places, not counts. Choose a place to follow only it.";
  } else if (state.partner) {
    const per = periodWord(state.counts.windowMin);
    hint.textContent =
      `Calls near each place per ${per}, shown once the ${per} has ended; fewer than ${state.k} are not shown. ` +
      "Choose a place to follow only it.";
  } else {
    hint.textContent = `Live calls in the last ${state.counts.windowMin} min. Choose a zone to follow only it.`;
  }
}

/** Partners: what their data-sharing agreement says they receive (gateway.agreements summary). */
function renderAgreement(state) {
  const box = $("#agreement");
  const a = state.agreement;
  box.hidden = !a;
  if (!a) return;
  $("#agreement-summary").textContent = a.summary || "";
  $("#agreement-contact").textContent = a.contact ? `Questions: ${a.contact}.` : "";
  $("#agreement-rules").replaceChildren(...withheldRules(a).map((rule) => el("li", {}, rule)));
}

export function markSelection(state) {
  const key = state.selection ? state.selection.key : null;
  for (const btn of $$("#zone-list button.zone")) {
    btn.setAttribute("aria-pressed", String((btn.dataset.unitId || btn.dataset.zoneId) === key));
  }
  $("#zone-all").setAttribute("aria-pressed", String(!key));
}

/** The count on each button: live calls per zone, or a partner unit's value in the newest released window. */
export function renderCounts(state) {
  renderHint(state);
  const c = state.counts;
  for (const btn of $$("#zone-list button.zone")) {
    const out = $(".count", btn);
    if (state.partner) {
      const groups = c.units ? c.units[btn.dataset.unitId] : undefined;
      const text = describeTotal(groups, state.k);
      const total = unitTotal(groups);
      const start = typeof c.at === "number" ? c.at - c.windowMin * 60 : null;
      const when = fmtWindow(start, c.windowMin);
      out.textContent = "";
      if (text) out.append(el("span", { class: "value" }, text), ", ", el("span", { class: "window" }, when));
      else out.textContent = !state.countsShared ? "" : c.at === null ? "nothing released yet" : "not released";
      out.dataset.count = total && total.exact !== null ? String(total.exact) : "";
      out.dataset.withheld = String(Boolean(total && total.exact === null));
      const name = $(".zone-name", btn).textContent;
      out.title = text
        ? `Calls near ${name}, ${when}: shown once the ${periodWord(c.windowMin)} ended; fewer than ${state.k} are not shown`
        : !state.countsShared
          ? "Your agreement does not share counts"
          : c.at === null
            ? "No closed window has been released yet"
            : "No number was released for this place in the newest window";
    } else {
      const n = c.zones[btn.dataset.zoneId];
      out.textContent = n === undefined ? "—" : String(n);
      out.dataset.count = n === undefined ? "" : String(n);
      out.title = n === undefined ? "no count (none yet, or too few to show)" : `${n} calls in the last ${c.windowMin} min`;
    }
  }
}

export function renderSubscription(state, filters) {
  const parts = [];
  if (state.selection) parts.push(`following ${state.selection.name}`);
  else parts.push(state.partner ? "following all your places" : "following every zone in scope");
  if (filters && filters.categories) parts.push(`categories ${filters.categories.join(", ")}`);
  if (filters && filters.min_severity && filters.min_severity !== "low") parts.push(`severity ≥ ${filters.min_severity}`);
  $("#subscription").textContent = `Feed: ${parts.join("; ")}.`;
}
