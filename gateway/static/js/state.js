// The page's state, one object made by createState() in main.js and passed to every module that reads it,
// and the questions about it that several modules ask (pure functions: no DOM, no I/O).

import { emptyClock } from "./clock.js";
import { Applied } from "./failover.js";

/** Roles that may acknowledge and resolve alerts; every other role gets no buttons at all. */
export const ACTING_ROLES = new Set(["supervisor", "commander"]);
/** Roles that see their released table (units, closed windows) instead of cells and live counts (gateway.disclosure). */
export const PARTNER_ROLES = new Set(["transit", "school"]);
/** Activity window of supervisors' and commanders' counts frames until the first one says (gateway.server). */
export const DEFAULT_COUNTS_WINDOW_MIN = 15;

export function createState() {
  return {
    token: null,
    me: null, // claims, then updated by the welcome frame: {role, agency, subject, expires_at, ...}
    partner: false, // a transit or school partner (set from /api/me)
    tiles: null, // map tile URL template from /api/me (WF_GATEWAY_TILES), or null
    k: 3, // values below k are withheld
    agreement: null, // partners: their data-sharing agreement from /api/me
    units: [], // partners: [{id, name, zones: [zone ids]}], the areas their numbers are released for
    countsShared: true, // partners: whether their agreement shares counts at all
    zones: new Map(), // zone id -> zone JSON from /api/zones
    selection: null, // {key, name, zones: [zone ids]}: the zone (or partner unit) followed; null for all
    counts: {
      at: null, // epoch s: supervisors, the watermark; partners, the end of the newest released window
      windowMin: DEFAULT_COUNTS_WINDOW_MIN,
      zones: {}, // supervisors and commanders: zone id -> calls in the window
      units: null, // partners: unit id -> {group: n or null}; null before the first released window
    },
    hotspots: [], // supervisors and commanders: [{cell, count, boundary: [[lat, lng], ...]}]
    hotspotsUsualDays: 0, // previous days the hot spots' usual is the mean of (0: none, the map colours by count)
    colourBy: "usual", // the map's cells: "usual" (against it, when there is one) or "count"
    hotspotsComplete: true, // every cell with calls is among the hotspots (fewer than the limit came back)
    outlines: new Map(), // cell -> boundary of alert cells fetched from /api/cells (null: not available)
    cellAreas: new Map(), // supervisors, commanders: cell -> name of the area holding it (from /api/hotspots and /api/cells)
    jurisdiction: null, // {name, timezone} from /api/me: every time is shown in that zone
    alerts: new Map(), // alert id -> {alert, status, el, busy}
    earlyStatus: new Map(), // alert id -> action seen before its alert
    lastId: null, // cursor to resume from (opaque for partners)
    applied: new Applied(), // alert and action frames applied: a repeat after a move is dropped (js/failover.js)
    gateways: [], // base URLs of the gateways the socket goes round (js/failover.js gatewayList)
    liveGateway: null, // index in gateways of the one the socket was last live on
    clock: emptyClock(), // the newest data's event time and when it last moved (js/clock.js)
    caughtUp: false, // the socket has replayed what was missed: alert frames from now on are new
    filter: { category: "", area: "" }, // supervisors, commanders: the at-a-glance filters (tiles, chart, feed)
    forecast: null, // supervisors, commanders: the forecast set from /api/forecast or the latest forecast frame
    forecastArea: null, // the key of the area the next-shift panel shows (null: the jurisdiction, or the first)
    forecastLayer: false, // the map outlines the next shift's hot spots
    allocationQuery: null, // supervisors: the query of the recommendation shown ("?units=12"), adopted as it is
  };
}

export const canAct = (state) => Boolean(state.me && ACTING_ROLES.has(state.me.role));

export function zoneName(state, id) {
  const z = state.zones.get(id);
  return z ? z.name : id;
}

export function unitName(state, id) {
  const u = state.units.find((x) => x.id === id);
  return u ? u.name : id;
}

export function isOpen(entry) {
  return entry.alert.state !== "closed" && !(entry.status && entry.status.action === "resolve");
}

/** Whether a card is shown under the current selection and filters (feed outages concern every place). */
export function visibleInFeed(state, entry) {
  if (entry.alert.kind === "feed_outage") return true;
  if (!matchesFilter(state.filter, entry.alert)) return false;
  if (!state.selection) return true;
  return (entry.alert.zones || []).some((z) => state.selection.zones.includes(z));
}

/**
 * Whether ``alert`` passes the at-a-glance filters ``{category, area}`` (empty: any): a category among its
 * categories (an object of counts for supervisors, a list for partners), an area among its named areas.
 */
export function matchesFilter(filter, alert) {
  if (!filter) return true;
  if (filter.category) {
    const cats = Array.isArray(alert.categories) ? alert.categories : Object.keys(alert.categories || {});
    if (!cats.includes(filter.category)) return false;
  }
  if (filter.area) {
    const want = filter.area.toLowerCase();
    if (!(alert.areas || []).some((a) => String(a).toLowerCase() === want)) return false;
  }
  return true;
}

/** Zone ids touched by open alerts (any selection). */
export function alertingZones(state) {
  const touched = new Set();
  for (const entry of state.alerts.values()) if (isOpen(entry)) for (const z of entry.alert.zones || []) touched.add(z);
  return touched;
}

/** The selection for a zone id (supervisors, commanders) or a unit id (partners), or null. */
export function selectionFor(state, key) {
  if (!key) return null;
  if (state.partner) {
    const u = state.units.find((x) => x.id === key);
    return u ? { key, name: u.name, zones: [...u.zones] } : null;
  }
  return state.zones.has(key) ? { key, name: zoneName(state, key), zones: [key] } : null;
}
