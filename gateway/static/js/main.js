// Watchfloor dashboard: one page, native ES modules, no build step, no third-party code.
//
// This module only wires: it loads what the page shows from the REST API (gateway.api), hands the
// WebSocket's frames (gateway.protocol) to the module that shows each, and schedules the refreshes.
//
//   GET /api/me            claims, zones, k, map tiles, the jurisdiction's time zone; partners also their agreement and units
//   GET /api/zones         zone outlines (map, zone list)
//   GET /api/alerts        the open alerts and the cursor to resume the socket from
//   GET /api/hotspots      supervisors, commanders: calls per cell (throttled, after each counts frame);
//                          partners: their units in the newest released window (once; counts frames follow)
//   GET /api/cells         outlines of alert cells with no recent calls (cached: an outline never changes)
//   GET /api/alerts?state=all&since=&until=&...   the history panel's searches (when it is open)
//   GET /api/forecast      supervisors, commanders: the next shift's forecast (once; forecast frames follow)
//   GET, POST /api/allocation   supervisors: the recommended units per area; adopting one
//   GET /api/doors         supervisors: the live doors' health (every DOORS_REFRESH_MS)
//   /ws                    alert, action, counts, forecast, ... frames; on loss moves to the next gateway of /api/me's
//                          "gateways" (WF_GATEWAY_PEERS), resumes from the cursor; API calls follow it (js/failover.js)
//
// The server's Content-Security-Policy allows only same-origin scripts and styles: no inline script, no
// style attributes. Every module builds nodes with createElement/textContent (never innerHTML), and
// presentation is by class (style.css).

import { ApiError, forgetToken, getJson, hasTokenInFragment, keepToken, postJson, setApiBase, takeToken } from "./api.js";
import { Applied, describeGateway, gatewayList, socketUrl } from "./failover.js";
import { applyAction, clearBusy, markCellsOnMap, mergeStatuses, renderCards, renderFeedFilter, upsertAlert } from "./feed.js";
import { $, fmtTime, fmtZoned, setTimeZone } from "./format.js";
import { allocationQuery, renderAdopted, renderAllocation, renderForecast, renderNoForecast } from "./forecast.js";
import { historyFilters, historySearch, renderHistory, setAreaNames, showHistoryError, wireHistory } from "./history.js";
import { renderMap } from "./map.js";
import { renderOverview } from "./overview.js";
import { renderPartnerForecast } from "./partnerforecast.js";
import { describeClock, liveLagFor, observe } from "./clock.js";
import { describeDoors } from "./doors.js";
import { setClockZone, setConn, setDataClock, setDoors, setGateway, setWho, showBoard, showLogin, showMessage } from "./page.js";
import { placesFor } from "./places.js";
import { Backoff, LiveSocket } from "./socket.js";
import { PARTNER_ROLES, canAct, createState, selectionFor } from "./state.js";
import { markSelection, renderCounts, renderPlaces, renderSubscription } from "./zones.js";

const HOTSPOTS_MIN_INTERVAL_MS = 1000;
/** Busiest cells asked for (bench/dashboard_page.py: 5,000 cells cost about 90 ms a redraw, 1,000 about a fifth). */
const HOTSPOTS_LIMIT = 1000;
const ZONES_REFRESH_MS = 60000;
const STATUS_REFRESH_MS = 15000;
const CLOCK_REFRESH_MS = 15000;
const DOORS_REFRESH_MS = 30000;
const OVERVIEW_MIN_INTERVAL_MS = 15000;
const MAX_OUTLINES_PER_CALL = 500;

const state = createState();
const timers = [];
const startBackoff = new Backoff();
let startTimer = null;
let outlinesBusy = false;
let historyWired = false;
let historySeq = 0;

const api = (path) => getJson(state.token, path);

const socket = new LiveSocket({
  url(base) {
    return socketUrl(base, state.token, state.lastId);
  },
  onOpen({ base }) {
    setApiBase(base); // the page's own gateway may be the one lost: ask the one the socket is on
  },
  onFrame,
  onState(kind, text) {
    if (kind !== "live") state.caughtUp = false;
    setConn(kind, text);
  },
  onFinal({ code, reason, error }) {
    if (error) {
      refused(error);
      return;
    }
    stopAll();
    setConn("refused", `Refused (close ${code}): ${reason}`);
    if (code === 4401) showLogin("Your token expired. Paste a new one to continue.");
  },
  async whyRefused() {
    try {
      await api("/api/me");
      return null;
    } catch (err) {
      return err instanceof ApiError && err.refused ? err : null;
    }
  },
});

/** ``fn`` run at most once at a time and once per ``minMs``; a call meanwhile runs it once more afterwards. */
function throttled(fn, minMs) {
  let busy = false;
  let last = 0;
  let again = false;
  const run = async () => {
    if (busy || Date.now() - last < minMs) {
      if (!again) setTimeout(run, minMs);
      again = true;
      return;
    }
    busy = true;
    again = false;
    last = Date.now();
    try {
      await fn();
    } finally {
      busy = false;
    }
  };
  return run;
}

function send(msg) {
  if (socket.send(msg)) return true;
  showMessage("Not connected: the request was not sent. It can be repeated once the connection is live.", "error");
  return false;
}

function drawMap() {
  const { onMap, missing } = renderMap(state, { onSelect: select });
  markCellsOnMap(onMap, state.cellAreas);
  if (missing.length) loadOutlines(missing);
}

// ------------------------------------------------------------------ start-up and refusal

async function start() {
  state.token = takeToken();
  if (!state.token) {
    showLogin("");
    setConn("idle", "Not connected");
    return;
  }
  setConn("connecting", "Connecting…");
  let me;
  try {
    me = await api("/api/me");
  } catch (err) {
    refused(err);
    return;
  }
  startBackoff.reset();
  applyMe(me);
  state.gateways = gatewayList(me.gateways, location.origin);
  socket.setGateways(state.gateways, state.gateways.indexOf(location.origin));
  showBoard(state.me.role, state.partner);
  setWho(state.me);
  setClockZone(state.jurisdiction);
  $("#overview").hidden = state.partner;
  $("#forecast-panel").hidden = state.partner;
  $("#allocation").hidden = state.me.role !== "supervisor";
  if (!historyWired) {
    historyWired = true;
    wireOverview();
    wireForecast();
    wireHistory({ onSearch: searchHistory, partner: state.partner });
    $("#history-toggle").addEventListener("toggle", () => $("#history-toggle").open && searchHistory());
  }
  try {
    const [zones, alerts] = await Promise.all([api("/api/zones"), api("/api/alerts?state=open")]);
    setZones(zones.zones);
    for (const item of alerts.alerts) upsertAlert(state, item.alert, "bottom", send); // newest first already
    // partners whose agreement shares no counts: the newest alert is their only data (for the others it would make
    // the first counts frame look like data moving, a replay's sign)
    if (!state.countsShared && alerts.alerts.length) noteData(Math.max(...alerts.alerts.map((item) => item.alert.at)));
    state.lastId = alerts.last_id;
    state.applied = new Applied(alerts.last_id);
  } catch (err) {
    showMessage(`Could not load the current alerts: ${err.message}`, "error");
    setZones([]);
  }
  refreshHotspots();
  refreshOverview();
  loadForecast();
  if (state.partner) loadPartnerForecast();
  drawMap();
  socket.connect();
  if (state.me.role === "supervisor") {
    loadDoors();
    timers.push(setInterval(loadDoors, DOORS_REFRESH_MS));
  }
  timers.push(
    setInterval(loadZones, ZONES_REFRESH_MS),
    setInterval(reconcileStatuses, STATUS_REFRESH_MS),
    setInterval(showClock, CLOCK_REFRESH_MS),
  );
}

/** The at-a-glance filters act on the tiles and the chart (asked again) and on the feed (here). */
function wireOverview() {
  const form = $("#overview-filters");
  form.addEventListener("submit", (ev) => ev.preventDefault());
  const apply = () => {
    state.filter = { category: form.elements.category.value, area: form.elements.area.value.trim() };
    renderFeedFilter(state);
    loadOverview();
    loadHotspots(); // the map's cells of that category; drawMap fits the area
    drawMap();
  };
  form.elements.category.addEventListener("change", apply);
  form.elements.area.addEventListener("change", apply);
}

/** The live doors' health under the data clock (supervisors): hidden while there is none (a file replay). */
async function loadDoors() {
  try {
    const body = await api("/api/doors");
    setDoors(describeDoors(body.doors));
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) refused(err);
    else setDoors({ kind: "broken", text: `The doors' health could not be read: ${err.message}`, details: [] });
  }
}

const refreshOverview = throttled(loadOverview, OVERVIEW_MIN_INTERVAL_MS);
let overviewSeq = 0;

async function loadOverview() {
  if (state.partner || !state.token) return;
  fillAreaNames();
  const q = new URLSearchParams();
  if (state.filter.category) q.set("category", state.filter.category);
  if (state.filter.area) q.set("area", state.filter.area);
  const seq = ++overviewSeq;
  try {
    const o = await api(`/api/overview${q.size ? `?${q}` : ""}`);
    if (seq !== overviewSeq) return; // a newer filter was asked meanwhile
    $("#overview-error").textContent = "";
    renderOverview(o);
  } catch (err) {
    if (seq !== overviewSeq) return;
    if (err instanceof ApiError && err.status === 401) refused(err);
    else $("#overview-error").textContent = `The figures could not be read: ${err.message}`;
  }
}

// ------------------------------------------------------------------ next shift (js/forecast.js)

/** The forecast panel's controls: the hot-spot layer's toggle and, for supervisors, the allocation's form. */
function wireForecast() {
  const layer = $("#forecast-layer");
  layer.addEventListener("click", () => {
    state.forecastLayer = !state.forecastLayer;
    layer.setAttribute("aria-pressed", String(state.forecastLayer));
    showForecast(); // draws the map when the layer is on
    if (!state.forecastLayer) drawMap();
  });
  const form = $("#allocation-form");
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    recommend();
  });
  $("#allocation-adopt").addEventListener("click", adopt);
}

async function loadForecast() {
  if (state.partner || !state.token) return;
  try {
    const body = await api("/api/forecast");
    if (body.ready === false) {
      if (!state.forecast) renderNoForecast(`${body.message.charAt(0).toUpperCase()}${body.message.slice(1)}.`);
      return;
    }
    state.forecast = body;
    showForecast();
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) refused(err);
    else renderNoForecast(`The forecast could not be read: ${err.message}`);
  }
}

function showForecast() {
  if (!state.forecast) return;
  state.forecastArea = renderForecast(state.forecast, state.forecastArea, (key) => {
    state.forecastArea = key;
    showForecast();
  });
  const hot = state.forecast.hotspots || {};
  const n = (hot.cells || []).length;
  $("#forecast-layer-note").textContent = state.forecastLayer
    ? `${n} hot spot${n === 1 ? "" : "s"} of the next ${hot.horizon || 8} hours outlined on the map (res-${hot.resolution || 8} cells).`
    : "";
  if (state.forecastLayer) drawMap();
}

async function recommend() {
  const form = $("#allocation-form");
  const q = allocationQuery(form.elements.units.value, form.elements.floor.value, form.elements.cap.value);
  $("#allocation-error").textContent = q.error || "";
  if (q.error) return;
  try {
    const body = await api(`/api/allocation${q.query}`);
    state.allocationQuery = q.query;
    renderAllocation(body);
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) refused(err);
    else $("#allocation-error").textContent = `No recommendation: ${err.message}`;
  }
}

async function adopt() {
  if (!state.allocationQuery) return;
  try {
    const body = await postJson(state.token, `/api/allocation${state.allocationQuery}`);
    renderAdopted(body.adopted);
    showMessage("The plan was adopted; the next recommendation's cap is measured from it.");
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) refused(err);
    else $("#allocation-error").textContent = `The plan was not adopted: ${err.message}`;
  }
}

/** Partners: what to expect at their places (js/partnerforecast.js); none when the agreement shares no history (403). */
async function loadPartnerForecast() {
  try {
    renderPartnerForecast(await api("/api/forecast"));
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) refused(err);
  }
}

/** The named areas as suggestions of the area fields (supervisors and commanders), once /api/places is read. */
function fillAreaNames() {
  const places = placesFor(state.token, () => {});
  if (!places || !places.areas || state.partner || $("#history-areas").options.length) return;
  setAreaNames([...new Set(places.areas.features.map((f) => f.properties && f.properties.name).filter(Boolean))].sort());
}

/** Search the history panel's period (ending at the newest data's time: a replay's, not the wall clock's). */
async function searchHistory() {
  fillAreaNames();
  const end = state.clock.at !== null ? state.clock.at : Date.now() / 1000;
  const { path, since, until } = historySearch(historyFilters(), end, !state.partner);
  const seq = ++historySeq;
  showHistoryError("Searching…");
  try {
    const body = await api(path);
    if (seq === historySeq) renderHistory(state, body.alerts, since, until, api); // only the latest search is drawn
  } catch (err) {
    if (seq !== historySeq) return;
    if (err instanceof ApiError && err.status === 401) refused(err);
    else showHistoryError(`The search failed: ${err.message}`);
  }
}

/** Data of event time ``at`` arrived: the header's clock follows it. */
function noteData(at) {
  state.clock = observe(state.clock, at, Date.now() / 1000);
  showClock();
}

function showClock() {
  setDataClock(describeClock(state.clock, Date.now() / 1000, liveLagFor(state.partner, state.counts.windowMin)));
}

function applyMe(me) {
  const role = me.claims.role;
  state.me = { ...me.claims };
  state.partner = PARTNER_ROLES.has(role);
  state.k = typeof me.k === "number" ? me.k : state.k;
  state.tiles = tileTemplate(me.tiles);
  state.basemap = me.basemap && typeof me.basemap.url === "string" ? me.basemap : null; // basemap.js draws it
  state.basemap = me.basemap && typeof me.basemap.url === "string" ? me.basemap : null; // basemap.js draws it
  state.jurisdiction = me.jurisdiction || null;
  const zone = state.jurisdiction && state.jurisdiction.timezone;
  if (zone && !setTimeZone(zone)) showMessage(`This browser does not know the time zone ${zone}: times are shown in UTC.`, "error");
  state.agreement = me.agreement || null;
  state.units = Array.isArray(me.units) ? me.units : [];
  if (state.agreement) state.counts.windowMin = state.agreement.window_min;
  state.countsShared = !state.partner || Boolean(state.agreement && (state.agreement.shares || []).includes("counts"));
}

/** The map tile URL template the gateway is configured with: https or a same-origin path, with {z}, {x}, {y}. */
function tileTemplate(t) {
  const ok = typeof t === "string" && /^(https:\/\/|\/(?!\/))/.test(t) && ["{z}", "{x}", "{y}"].every((p) => t.includes(p));
  return ok ? t : null;
}

/** The API said no: a refused token shows the login box; an unreachable gateway is retried with backoff. */
function refused(err) {
  if (err instanceof ApiError && err.refused) {
    forgetToken(); // a reload must not try it again
    stopAll();
    setConn("refused", `Refused (HTTP ${err.status} ${err.code}): ${err.message}`);
    showLogin(`The gateway refused this token: ${err.message}`);
    return;
  }
  const delay = startBackoff.next();
  setConn("reconnecting", `Gateway unreachable (${err.message}); retrying in ${(delay / 1000).toFixed(1)} s`);
  clearTimeout(startTimer);
  startTimer = setTimeout(start, delay);
}

/** Stop the socket, the reconnection and the periodic refreshes: the token is no longer usable. */
function stopAll() {
  socket.stop("token refused");
  clearTimeout(startTimer);
  for (const t of timers.splice(0)) clearInterval(t);
}

function logout() {
  forgetToken();
  stopAll();
  location.replace(location.pathname + location.search);
}

// ------------------------------------------------------------------ frames

function onFrame(f) {
  if (!state.applied.accept(f)) return; // applied before the socket moved: not twice
  switch (f.type) {
    case "welcome":
      state.me = { ...state.me, role: f.role, agency: f.agency, subject: f.subject, expires_at: f.expires_at };
      setWho(state.me);
      if (state.selection) subscribe();
      break;
    case "alert":
      state.lastId = f.id;
      upsertAlert(state, f.alert, "top", send);
      if (state.caughtUp) noteData(f.alert.at); // a new alert, not one replayed on (re)connection
      drawMap();
      break;
    case "action":
      state.lastId = f.id;
      applyAction(state, f.action);
      drawMap();
      break;
    case "caught_up":
      socket.live();
      showGateway();
      state.caughtUp = true;
      setConn("live", "Live");
      showClock(); // "Replay" in place of "Live" when the data is a replay
      if (socket.connections > 1) reconcileStatuses();
      break;
    case "counts":
      onCounts(f);
      break;
    case "subscribed":
      renderSubscription(state, f.filters);
      break;
    case "forecast":
      if (!state.partner && f.forecast) {
        state.forecast = { ...f.forecast, version: f.version };
        showForecast();
      } else if (state.partner && f.forecast) renderPartnerForecast(f.forecast);
      break;
    case "zone_created":
      state.zones.set(f.zone.id, f.zone);
      setZones([...state.zones.values()]);
      showMessage(`Zone ${f.zone.name} created.`);
      break;
    case "error":
      showMessage(`The gateway refused a request (${f.code}): ${f.message}`, "error");
      clearBusy(state);
      break;
    default:
      break;
  }
}

/** The header's word on the gateway the page is live on, and that it moved there when it did (js/failover.js). */
function showGateway() {
  const { index } = socket.gateway;
  const from = state.liveGateway;
  state.liveGateway = index;
  if (from === index) return;
  setGateway(describeGateway(state.gateways, index, from, fmtTime(Date.now() / 1000)), index);
}

function onCounts(f) {
  state.counts.at = typeof f.at === "number" ? f.at : null;
  if (typeof f.window_min === "number") state.counts.windowMin = f.window_min;
  noteData(state.counts.at);
  if (state.partner) {
    // the newest closed window of the released table: it changes once per window, never in between
    state.counts.units = f.units || {};
    renderCounts(state);
    return;
  }
  state.counts.zones = f.zones || {};
  renderCounts(state);
  refreshHotspots();
  refreshOverview();
}

// ------------------------------------------------------------------ zones and selection

function setZones(list) {
  state.zones = new Map(list.map((z) => [z.id, z]));
  if (state.selection) state.selection = selectionFor(state, state.selection.key);
  renderPlaces(state, { onSelect: select });
  renderCards(state);
  renderFeedFilter(state);
  drawMap();
}

async function loadZones() {
  try {
    setZones((await api("/api/zones")).zones);
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) refused(err);
  }
}

/** Follow one zone (a unit for partners), or every place with ``key`` null. */
function select(key) {
  state.selection = selectionFor(state, key);
  markSelection(state);
  subscribe();
  renderFeedFilter(state);
  drawMap();
}

function subscribe() {
  send(state.selection ? { type: "subscribe", zones: state.selection.zones } : { type: "subscribe" });
}

// ------------------------------------------------------------------ what the REST API adds to the frames

const refreshHotspots = throttled(loadHotspots, HOTSPOTS_MIN_INTERVAL_MS);

async function loadHotspots() {
  if (!state.countsShared) return;
  try {
    const category = state.filter.category;
    const hs = await api(state.partner ? "/api/hotspots" : `/api/hotspots?limit=${HOTSPOTS_LIMIT}${category ? `&category=${category}` : ""}`);
    if (!state.partner && (hs.category || "") !== state.filter.category) return; // the filter changed meanwhile: asked again
    if (state.partner) {
      // only until the first counts frame: both read the same released window
      if (state.counts.units === null) {
        state.counts.units = Object.fromEntries((hs.units || []).map((u) => [u.unit, u.calls]));
        state.counts.at = hs.at;
        noteData(hs.at);
      }
      renderCounts(state);
      return;
    }
    noteData(hs.at);
    state.hotspots = hs.cells || [];
    state.hotspotsUsualDays = typeof hs.usual_days === "number" ? hs.usual_days : 0;
    state.hotspotsComplete = state.hotspots.length < HOTSPOTS_LIMIT; // else an alert cell not listed may still have calls
    for (const c of state.hotspots) if (c.area) state.cellAreas.set(c.cell, c.area);
    if (hs.zones && !hs.category) {
      state.counts.zones = { ...state.counts.zones, ...hs.zones };
      renderCounts(state);
    }
    drawMap();
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) refused(err);
  }
}

/** Outlines of alert cells that are not among the hot spots, fetched once each. */
async function loadOutlines(missing) {
  if (outlinesBusy) return;
  outlinesBusy = true;
  const ask = missing.slice(0, MAX_OUTLINES_PER_CALL);
  try {
    const body = await api(`/api/cells?ids=${ask.map(encodeURIComponent).join(",")}`);
    for (const c of body.cells || []) {
      state.outlines.set(c.cell, c.boundary);
      if (c.area) state.cellAreas.set(c.cell, c.area);
    }
  } catch (err) {
    // out of scope or malformed: remember nothing, draw what we have (the cells stay listed in their card)
    for (const c of ask) state.outlines.set(c, null);
  } finally {
    outlinesBusy = false;
  }
  drawMap();
}

/**
 * Statuses of the alerts on the page from GET /api/alerts (supervisors and commanders).
 *
 * The gateway sends an action frame only to connections that were sent the alert itself, so a card filled
 * from the REST API at start-up, or before a reconnect, would otherwise never hear of an acknowledgement made
 * by someone else. Run after every resumed connection and periodically.
 */
async function reconcileStatuses() {
  if (!canAct(state) || !state.alerts.size) return;
  try {
    const body = await api("/api/alerts?state=all&limit=1000");
    if (mergeStatuses(state, body.alerts)) drawMap();
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) refused(err);
  }
}

// ------------------------------------------------------------------ wiring

function init() {
  $("#login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const t = $("#token-input").value.trim();
    if (!t) return;
    keepToken(t);
    $("#token-input").value = "";
    location.reload();
  });
  $("#logout").addEventListener("click", logout);
  $("#print-view").addEventListener("click", () => window.print());
  // on paper (the button or the browser's own print): who printed which view, when, and how fresh its data is
  window.addEventListener("beforeprint", () => {
    const who = state.me ? `${state.me.subject} (${state.me.role}, ${state.me.agency})` : "";
    const data = describeClock(state.clock, Date.now() / 1000, liveLagFor(state.partner, state.counts.windowMin)).text;
    const sel = state.selection ? ` · following ${state.selection.name}` : "";
    $("#print-note").textContent = `Printed ${fmtZoned(Date.now() / 1000)} by ${who}${sel} · ${data}`;
    // the next shift on paper too (a closed details prints its summary only); closed again afterwards
    const next = $("#forecast-toggle");
    if (state.forecast && !next.open) {
      next.open = true;
      window.addEventListener("afterprint", () => (next.open = false), { once: true });
    }
  });
  $("#zone-all").addEventListener("click", () => select(null));
  window.addEventListener("hashchange", () => {
    if (hasTokenInFragment()) {
      takeToken();
      location.reload();
    }
  });
  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(drawMap, 150);
  });
  start();
}

init();
