// The alert feed: one card per alert id, updated in place by alert and action frames.
//
// Supervisors and commanders see everything the detector wrote and act on it: the card leads with the worker's plain
// sentence (``summary``; the detector's ``reason`` on records older than it), then severity, state, age and the named
// areas; the statistics (reason, counts, score and p-value, model, cells) wait behind a "Details" toggle.
// Partners see what gateway.disclosure lets through: the reason written for them, the severity, the extent,
// the units touched (by name), category names and times, and whether it was acknowledged (not by whom).

import { $, ageText, el, fmtNumber, fmtTime, fmtZoned, fullTime, isoTime, kindText } from "./format.js";
import { canAct, isOpen, unitName, visibleInFeed, zoneName } from "./state.js";

const MAX_CARDS = 500;
const STATE_TEXT = { open: "new", update: "updated", closed: "ended" };
const EXTENT_TEXT = { jurisdiction: "Whole jurisdiction", area: "Your area" };
// area names shown on a card before "and N more" (all of them in its tooltip)
const MAX_AREAS = 5;
const AGE_REFRESH_MS = 30_000;
let ageTimer = null;

function newerStatus(a, b) {
  if (!a) return b || null;
  if (!b) return a;
  return (b.at || 0) >= (a.at || 0) ? b : a;
}

/**
 * Add or update the card of ``alert`` ("top" for live frames, "bottom" while filling from the REST API).
 * ``send(msg)`` sends an ack or resolve and returns whether it went out (only used for acting roles).
 */
export function upsertAlert(state, alert, where, send) {
  if (!alert || typeof alert.id !== "string") return;
  let entry = state.alerts.get(alert.id);
  if (!entry) {
    const template = state.partner ? "#partner-alert-template" : "#alert-template";
    const node = $(template).content.firstElementChild.cloneNode(true);
    entry = { alert, status: null, el: node, busy: false };
    state.alerts.set(alert.id, entry);
    // only supervisors and commanders may act: other roles get no buttons at all
    const form = $(".actions", node);
    if (form && canAct(state)) wireActions(entry, send);
    else if (form) form.remove();
    const feed = $("#feed");
    if (where === "top") feed.prepend(node);
    else feed.append(node);
    trimFeed(state);
  }
  if (ageTimer === null) ageTimer = setInterval(() => renderAges(state), AGE_REFRESH_MS);
  entry.alert = alert;
  entry.status = newerStatus(newerStatus(entry.status, alert.status || null), state.earlyStatus.get(alert.id) || null);
  state.earlyStatus.delete(alert.id);
  renderCard(state, entry);
  renderFeedFilter(state);
}

function trimFeed(state) {
  while (state.alerts.size > MAX_CARDS) {
    const oldest = $("#feed").lastElementChild;
    if (!oldest) break;
    state.alerts.delete(oldest.dataset.alertId);
    oldest.remove();
  }
}

/** An action frame; one for an alert not on the page yet is kept for when it comes. */
export function applyAction(state, action) {
  const entry = state.alerts.get(action.alert_id);
  if (!entry) {
    state.earlyStatus.set(action.alert_id, action);
    return;
  }
  entry.status = newerStatus(entry.status, action);
  setBusy(entry, false);
  renderCard(state, entry);
  renderFeedFilter(state);
}

/** Statuses from GET /api/alerts items ({alert}); true when a card changed. */
export function mergeStatuses(state, items) {
  let changed = false;
  for (const { alert } of items) {
    const entry = state.alerts.get(alert.id);
    if (!entry || !alert.status) continue;
    const status = newerStatus(entry.status, alert.status);
    if (status !== entry.status) {
      entry.status = status;
      renderCard(state, entry);
      changed = true;
    }
  }
  if (changed) renderFeedFilter(state);
  return changed;
}

/** The gateway refused a request: no card waits for an answer any more. */
export function clearBusy(state) {
  for (const entry of state.alerts.values()) setBusy(entry, false);
}

/** Re-render every card (zone or unit names became known). */
export function renderCards(state) {
  for (const entry of state.alerts.values()) renderCard(state, entry);
}

export function renderFeedFilter(state) {
  let shown = 0;
  let open = 0;
  for (const entry of state.alerts.values()) {
    const visible = visibleInFeed(state, entry);
    entry.el.hidden = !visible;
    if (visible) shown += 1;
    if (visible && isOpen(entry)) open += 1;
  }
  const f = state.filter || {};
  const only = [f.category, f.area].filter(Boolean).join(", ");
  $("#feed-count").textContent = (shown ? `${open} open of ${shown}` : "") + (only ? ` · ${only} only` : "");
  $("#feed-empty").hidden = shown > 0;
}

/** Mark the cell ids in the cards that are drawn on the map, and name the area of each whose area is known (``areas``). */
export function markCellsOnMap(onMap, areas) {
  for (const code of document.querySelectorAll("#feed code.cell-id")) {
    code.classList.toggle("on-map", onMap.has(code.dataset.cell));
    const area = areas.get(code.dataset.cell);
    if (area) code.title = area;
  }
}

function renderCard(state, entry) {
  const a = entry.alert;
  const node = entry.el;
  const sev = a.severity || "low";
  node.dataset.alertId = a.id;
  node.dataset.severity = sev;
  node.dataset.state = a.state || "";
  node.dataset.status = entry.status ? entry.status.action : "none";
  node.classList.toggle("closed", a.state === "closed");
  node.classList.toggle("resolved", Boolean(entry.status && entry.status.action === "resolve"));

  const badge = $(".severity", node);
  badge.textContent = sev.toUpperCase();
  badge.className = `severity sev-${sev}`;
  badge.title = `${sev} severity`;
  const summary = $(".summary", node);
  if (summary) summary.textContent = a.summary || a.reason || "";
  $(".kind", node).textContent = kindText(a.kind);
  $(".state", node).textContent = STATE_TEXT[a.state] || a.state || "";
  renderAge(entry);
  const at = $(".at", node);
  at.textContent = fmtZoned(a.at);
  at.setAttribute("datetime", isoTime(a.at));
  at.title = fullTime(a.at);
  $(".reason", node).textContent = a.reason || "";
  const started = $(".started", node);
  started.textContent = fmtZoned(a.started_at);
  started.title = fullTime(a.started_at);

  if (state.partner) renderPartnerFacts(state, a, node);
  else renderFacts(state, a, node);
  renderStatus(entry);
  renderActions(entry);
}

function renderFacts(state, a, node) {
  const observed = a.observed === null || a.observed === undefined ? "too few to show" : String(a.observed);
  $(".observed", node).textContent = `${observed} observed vs ${fmtNumber(a.expected)} expected`;
  $(".window", node).textContent = a.window_min ? `${a.window_min} min` : "—";
  const cats = Object.entries(a.categories || {}).sort((x, y) => y[1] - x[1]);
  $(".categories", node).textContent = cats.length ? cats.map(([c, n]) => `${c} ${n}`).join(", ") : "—";
  const p = typeof a.p_value === "number" ? ` (p = ${a.p_value.toExponential(1)})` : "";
  $(".score", node).textContent = `${fmtNumber(a.score)}${p}`;
  $(".model", node).textContent = [a.model, a.model_version && `v${a.model_version}`].filter(Boolean).join(" ") || "—";
  // the worker's names of the areas holding the cells, most cells first (absent on records older than the profile)
  const areas = Array.isArray(a.areas) ? a.areas : [];
  const areasNode = $(".areas", node);
  const more = areas.length - MAX_AREAS;
  areasNode.textContent = !areas.length ? "—" : more > 0 ? `${areas.slice(0, MAX_AREAS).join(", ")} and ${more} more` : areas.join(", ");
  areasNode.title = more > 0 ? areas.join(", ") : "";
  $(".zones", node).textContent = (a.zones || []).length ? a.zones.map((z) => zoneName(state, z)).join(", ") : "—";
  const cells = $(".cells", node);
  cells.textContent = "";
  const onMap = new Set(state.hotspots.map((h) => h.cell));
  (a.cells || []).forEach((c, i) => {
    if (i) cells.append(" ");
    const area = state.cellAreas.get(c);
    cells.append(el("code", { class: onMap.has(c) ? "cell-id on-map" : "cell-id", "data-cell": c, title: area || null }, c));
  });
  if (!(a.cells || []).length) cells.textContent = "—";
}

function renderPartnerFacts(state, a, node) {
  $(".extent", node).textContent = EXTENT_TEXT[a.extent] || a.extent || "—";
  const places = (a.units || []).map((u) => unitName(state, u));
  $(".places", node).textContent = places.length ? places.join("; ") : "—";
  const cats = Array.isArray(a.categories) ? a.categories : [];
  const none = a.kind === "feed_outage" ? "—" : `none with ${state.k} or more calls`;
  $(".categories", node).textContent = cats.length ? cats.join(", ") : none;
}

/** "12 min ago" beside the card's time (of its latest record); empty for a replay's old event times. */
function renderAge(entry) {
  const age = $(".age", entry.el);
  if (age) age.textContent = ageText(entry.alert.at, Date.now() / 1000);
}

function renderAges(state) {
  for (const entry of state.alerts.values()) renderAge(entry);
}

function describeStatus(status) {
  return status.action === "resolve" ? "Resolved" : "Acknowledged";
}

function renderStatus(entry) {
  const box = $(".status", entry.el);
  box.textContent = "";
  const s = entry.status;
  if (!s) {
    box.append(el("span", { class: "status-action" }, "Not acknowledged"));
    return;
  }
  box.append(el("span", { class: "status-action" }, describeStatus(s)));
  if (s.by) {
    box.append(" by ", el("span", { class: "status-by" }, s.by));
    const who = [s.role, s.agency].filter(Boolean).join(", ");
    if (who) box.append(` (${who})`);
  }
  if (s.at) box.append(" at ", el("time", { datetime: isoTime(s.at), title: fullTime(s.at) }, fmtZoned(s.at)));
  if (s.note) box.append(": ", el("q", { class: "status-note" }, s.note));
}

function renderActions(entry) {
  const form = $(".actions", entry.el);
  if (!form) return;
  form.hidden = Boolean(entry.status && entry.status.action === "resolve");
  $("button.ack", form).disabled = entry.busy || Boolean(entry.status);
  $("button.resolve", form).disabled = entry.busy;
}

function setBusy(entry, busy) {
  entry.busy = busy;
  entry.el.classList.toggle("busy", busy);
  renderActions(entry);
}

function wireActions(entry, send) {
  const form = $(".actions", entry.el);
  form.addEventListener("submit", (ev) => ev.preventDefault());
  const label = () => `${kindText(entry.alert.kind)} alert of ${fmtTime(entry.alert.at)}`;
  for (const kind of ["ack", "resolve"]) {
    const btn = $(`button.${kind}`, form);
    btn.addEventListener("focus", () => btn.setAttribute("aria-label", `${btn.textContent} ${label()}`));
    btn.addEventListener("click", () => {
      const note = $("input.note", form).value.trim();
      if (send({ type: kind, alert_id: entry.alert.id, note })) {
        setBusy(entry, true);
        $("input.note", form).value = "";
      }
    });
  }
}
