// Watchfloor dashboard: one page, no build step, no third-party code.
//
// Data flow: GET /api/me, /api/zones, /api/hotspots and /api/alerts?state=open
// fill the page; the WebSocket (/ws, gateway.protocol) then streams alert,
// action and counts frames. Every counts frame triggers a (throttled) refresh
// of /api/hotspots; outlines of alert cells with no recent calls come from
// /api/cells (cached: a cell's outline never changes). The socket reconnects
// with backoff and resumes from the id of the last alert or action frame, so
// nothing is lost and the feed is updated in place by alert id.
//
// The server's Content-Security-Policy allows only same-origin scripts and
// styles: no inline script, no style attributes. Everything here is built with
// createElement/textContent (never innerHTML), and presentation is by class.
"use strict";

(() => {
  const TOKEN_KEY = "watchfloor.token";
  const SVG_NS = "http://www.w3.org/2000/svg";
  const ACTING_ROLES = new Set(["supervisor", "commander"]);
  // close codes after which retrying with the same token cannot help (gateway.protocol.CloseCode)
  const FINAL_CLOSE = new Map([
    [4401, "token expired"],
    [4403, "forbidden"],
    [4400, "too many refused messages"],
    [1008, "policy violation"],
  ]);
  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 15000;
  const HOTSPOTS_MIN_INTERVAL_MS = 1000;
  const ZONES_REFRESH_MS = 60000;
  const STATUS_REFRESH_MS = 15000;
  const MAX_CARDS = 500;
  const PALETTE_STEPS = 5;
  const KM_PER_DEGREE = 111.32;
  const MIN_SPAN_DEG = 0.012; // about 1.3 km: the tightest zoom, so one zone is not a screen-filling blob
  // optional map tiles: /?tiles=https://tile.example.org/{z}/{x}/{y}.png (http(s) or same-origin path)
  const TILES = (() => {
    const t = new URLSearchParams(location.search).get("tiles");
    return t && /^(https?:\/\/|\/)/.test(t) && ["{z}", "{x}", "{y}"].every((p) => t.includes(p)) ? t : null;
  })();

  const state = {
    token: null,
    me: null, // {role, agency, subject, expires_at}
    zones: new Map(), // zone id -> zone JSON from /api/zones
    zoneCounts: {}, // zone id -> calls in the counts window
    countsAt: null,
    hotspots: [], // [{cell, count, boundary: [[lat, lng], ...]}]
    outlines: new Map(), // cell -> boundary [[lat, lng], ...] of alert cells fetched from /api/cells
    outlinesBusy: false,
    alerts: new Map(), // alert id -> {alert, status, el}
    earlyStatus: new Map(), // alert id -> action seen before its alert
    selectedZone: null,
    lastId: null,
    ws: null,
    attempt: 0,
    retryTimer: null,
    hotspotsBusy: false,
    hotspotsLast: 0,
    hotspotsAgain: false,
    connections: 0,
    timers: [],
    messageTimer: null,
  };

  const $ = (sel, root = document) => root.querySelector(sel);

  // ------------------------------------------------------------------ helpers

  function el(tag, attrs = {}, text = null) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v === true ? "" : String(v));
    }
    if (text !== null) node.textContent = text;
    return node;
  }

  function svg(tag, attrs = {}, text = null) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v !== null && v !== undefined) node.setAttribute(k, String(v));
    }
    if (text !== null) node.textContent = text;
    return node;
  }

  const pad2 = (n) => String(n).padStart(2, "0");

  function fmtTime(epoch) {
    if (typeof epoch !== "number" || !Number.isFinite(epoch)) return "—";
    const d = new Date(epoch * 1000);
    const hms = `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
    const today = new Date();
    if (d.toDateString() === today.toDateString()) return hms;
    return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ${hms}`;
  }

  function isoTime(epoch) {
    return typeof epoch === "number" && Number.isFinite(epoch) ? new Date(epoch * 1000).toISOString() : "";
  }

  function fmtNumber(x, digits = 1) {
    return typeof x === "number" && Number.isFinite(x) ? x.toFixed(digits) : "—";
  }

  function zoneName(id) {
    const z = state.zones.get(id);
    return z ? z.name : id;
  }

  function showMessage(text, kind = "info") {
    const box = $("#messages");
    box.textContent = text;
    box.dataset.kind = kind;
    clearTimeout(state.messageTimer);
    state.messageTimer = setTimeout(() => {
      box.textContent = "";
      delete box.dataset.kind;
    }, 15000);
  }

  function setConn(kind, text) {
    const box = $("#conn-state");
    box.dataset.state = kind;
    box.textContent = text;
  }

  // ------------------------------------------------------------------ token and API

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  /** The token from the URL fragment (then removed from the address bar) or this tab's storage. */
  function takeToken() {
    const params = new URLSearchParams(location.hash.replace(/^#/, ""));
    const fromUrl = params.get("token");
    if (fromUrl) {
      sessionStorage.setItem(TOKEN_KEY, fromUrl.trim());
      params.delete("token");
      const rest = params.toString();
      history.replaceState(null, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
    }
    return sessionStorage.getItem(TOKEN_KEY);
  }

  async function api(path) {
    const res = await fetch(path, { headers: { Authorization: `Bearer ${state.token}` }, cache: "no-store" });
    let body = null;
    try {
      body = await res.json();
    } catch (_) {
      body = null;
    }
    if (!res.ok) {
      throw new ApiError(res.status, (body && body.error) || `http_${res.status}`, (body && body.message) || res.statusText);
    }
    return body;
  }

  function showLogin(message) {
    $("#board").hidden = true;
    $("#login").hidden = false;
    $("#logout").hidden = true;
    $("#who").textContent = "Not logged in";
    $("#login-error").textContent = message || "";
  }

  function logout() {
    sessionStorage.removeItem(TOKEN_KEY);
    stopAll();
    location.replace(location.pathname + location.search);
  }

  // ------------------------------------------------------------------ start-up

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
    setWho(me.claims);
    $("#login").hidden = true;
    $("#board").hidden = false;
    $("#logout").hidden = false;
    document.body.dataset.role = me.claims.role;
    try {
      const [zones, alerts] = await Promise.all([api("/api/zones"), api("/api/alerts?state=open")]);
      setZones(zones.zones);
      // newest first already: append in order
      for (const item of alerts.alerts) upsertAlert(item.alert, "bottom");
      state.lastId = alerts.last_id;
    } catch (err) {
      showMessage(`Could not load the current alerts: ${err.message}`, "error");
    }
    refreshHotspots();
    renderMap();
    connect();
    state.timers.push(setInterval(refreshZones, ZONES_REFRESH_MS), setInterval(reconcileStatuses, STATUS_REFRESH_MS));
  }

  function refused(err) {
    if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
      sessionStorage.removeItem(TOKEN_KEY); // a reload must not try it again
      stopAll();
      setConn("refused", `Refused (HTTP ${err.status} ${err.code}): ${err.message}`);
      showLogin(`The gateway refused this token: ${err.message}`);
    } else {
      setConn("reconnecting", `Gateway unreachable (${err.message}); retrying`);
      scheduleRetry("gateway unreachable");
    }
  }

  /** Stop the socket, the reconnection and the periodic refreshes: the token is no longer usable. */
  function stopAll() {
    const ws = state.ws;
    state.ws = null; // its close handler then does nothing
    if (ws) ws.close(1000, "token refused");
    clearTimeout(state.retryTimer);
    for (const t of state.timers.splice(0)) clearInterval(t);
  }

  function setWho(claims) {
    state.me = { ...(state.me || {}), ...claims };
    const who = $("#who");
    who.textContent = "";
    who.append(
      el("span", { class: "role", "data-role": claims.role }, claims.role),
      " ",
      el("span", { class: "subject" }, claims.subject),
      " · ",
      el("span", { class: "agency" }, claims.agency),
    );
    if (claims.expires_at) who.append(" · ", el("span", { class: "expires" }, `token until ${fmtTime(claims.expires_at)}`));
  }

  async function refreshZones() {
    try {
      setZones((await api("/api/zones")).zones);
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) refused(err);
    }
  }

  // ------------------------------------------------------------------ WebSocket

  function connect() {
    clearTimeout(state.retryTimer);
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const q = new URLSearchParams({ token: state.token });
    if (state.lastId) q.set("last_id", state.lastId);
    const ws = new WebSocket(`${proto}//${location.host}/ws?${q}`);
    state.ws = ws;
    state.connections += 1;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      setConn("connecting", state.lastId ? `Connected; catching up from ${state.lastId}…` : "Connected; catching up…");
    };
    ws.onmessage = (ev) => {
      let f;
      try {
        f = JSON.parse(ev.data);
      } catch (_) {
        return;
      }
      onFrame(f);
    };
    ws.onclose = (ev) => {
      if (state.ws !== ws) return; // replaced or logged out
      state.ws = null;
      onClose(ev, opened);
    };
  }

  async function onClose(ev, opened) {
    const reason = ev.reason || FINAL_CLOSE.get(ev.code) || "";
    if (FINAL_CLOSE.has(ev.code)) {
      stopAll();
      setConn("refused", `Refused (close ${ev.code}): ${reason}`);
      if (ev.code === 4401) showLogin("Your token expired. Paste a new one to continue.");
      return;
    }
    if (!opened) {
      // a refused handshake looks like 1006 to a browser: ask the API why
      try {
        await api("/api/me");
      } catch (err) {
        if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
          refused(err);
          return;
        }
      }
    }
    scheduleRetry(`closed ${ev.code}${reason ? `: ${reason}` : ""}`);
  }

  function scheduleRetry(why) {
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** state.attempt);
    const delay = Math.round(base * (0.5 + Math.random() / 2));
    state.attempt += 1;
    setConn("reconnecting", `Reconnecting in ${(delay / 1000).toFixed(1)} s (${why})`);
    clearTimeout(state.retryTimer);
    state.retryTimer = setTimeout(() => (state.me ? connect() : start()), delay);
  }

  function send(msg) {
    if (!state.ws || state.ws.readyState !== WebSocket.OPEN) {
      showMessage("Not connected: the request was not sent. It can be repeated once the connection is live.", "error");
      return false;
    }
    state.ws.send(JSON.stringify(msg));
    return true;
  }

  function onFrame(f) {
    switch (f.type) {
      case "welcome":
        setWho({ role: f.role, agency: f.agency, subject: f.subject, expires_at: f.expires_at });
        if (state.selectedZone) subscribe(state.selectedZone);
        break;
      case "alert":
        state.lastId = f.id;
        upsertAlert(f.alert, "top");
        renderMap();
        break;
      case "action":
        state.lastId = f.id;
        applyAction(f.action);
        renderMap();
        break;
      case "caught_up":
        state.attempt = 0;
        setConn("live", "Live");
        if (state.connections > 1) reconcileStatuses();
        break;
      case "counts":
        state.zoneCounts = f.zones || {};
        state.countsAt = f.at;
        $("#counts-window").textContent = String(f.window_min);
        renderZoneCounts();
        refreshHotspots();
        break;
      case "subscribed":
        renderSubscription(f.filters);
        break;
      case "zone_created":
        state.zones.set(f.zone.id, f.zone);
        setZones([...state.zones.values()]);
        showMessage(`Zone ${f.zone.name} created.`);
        break;
      case "error":
        showMessage(`The gateway refused a request (${f.code}): ${f.message}`, "error");
        for (const entry of state.alerts.values()) setBusy(entry, false);
        break;
      default:
        break;
    }
  }

  // ------------------------------------------------------------------ zones

  function setZones(list) {
    state.zones = new Map(list.map((z) => [z.id, z]));
    if (state.selectedZone && !state.zones.has(state.selectedZone)) state.selectedZone = null;
    const ul = $("#zone-list");
    ul.textContent = "";
    const sorted = [...state.zones.values()].sort((a, b) => a.kind.localeCompare(b.kind) || a.name.localeCompare(b.name));
    for (const z of sorted) {
      const btn = el("button", { type: "button", class: "zone", "data-zone-id": z.id, "aria-pressed": String(z.id === state.selectedZone) });
      btn.append(
        el("span", { class: "zone-name" }, z.name),
        el("span", { class: `zone-kind kind-${z.kind}` }, z.active === false ? `${z.kind} (inactive)` : z.kind),
        el("span", { class: "count", "aria-label": "calls" }, "—"),
      );
      btn.addEventListener("click", () => selectZone(z.id));
      const li = el("li");
      li.append(btn);
      ul.append(li);
    }
    $("#zone-all").setAttribute("aria-pressed", String(!state.selectedZone));
    renderZoneCounts();
    renderFeedFilter();
    renderMap();
  }

  function renderZoneCounts() {
    for (const btn of document.querySelectorAll("#zone-list button.zone")) {
      const n = state.zoneCounts[btn.dataset.zoneId];
      const out = $(".count", btn);
      out.textContent = n === undefined ? "—" : String(n);
      out.dataset.count = n === undefined ? "" : String(n);
      out.title = n === undefined ? "no count (none yet, or too few to show)" : `${n} calls in the last ${$("#counts-window").textContent} min`;
    }
  }

  function selectZone(id) {
    state.selectedZone = id;
    for (const btn of document.querySelectorAll("#zone-list button.zone")) {
      btn.setAttribute("aria-pressed", String(btn.dataset.zoneId === id));
    }
    $("#zone-all").setAttribute("aria-pressed", String(!id));
    subscribe(id);
    renderFeedFilter();
    renderMap();
  }

  function subscribe(zoneId) {
    send(zoneId ? { type: "subscribe", zones: [zoneId] } : { type: "subscribe" });
  }

  function renderSubscription(filters) {
    const parts = [];
    if (state.selectedZone) parts.push(`following ${zoneName(state.selectedZone)}`);
    else parts.push("following every zone in scope");
    if (filters && filters.categories) parts.push(`categories ${filters.categories.join(", ")}`);
    if (filters && filters.min_severity && filters.min_severity !== "low") parts.push(`severity ≥ ${filters.min_severity}`);
    $("#subscription").textContent = `Feed: ${parts.join("; ")}.`;
  }

  // ------------------------------------------------------------------ hot spots

  async function refreshHotspots() {
    const now = Date.now();
    if (state.hotspotsBusy || now - state.hotspotsLast < HOTSPOTS_MIN_INTERVAL_MS) {
      state.hotspotsAgain = true;
      return;
    }
    state.hotspotsBusy = true;
    state.hotspotsLast = now;
    state.hotspotsAgain = false;
    try {
      const hs = await api("/api/hotspots");
      state.hotspots = hs.cells || [];
      if (hs.zones) {
        state.zoneCounts = { ...state.zoneCounts, ...hs.zones };
        renderZoneCounts();
      }
      renderMap();
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) refused(err);
    } finally {
      state.hotspotsBusy = false;
      if (state.hotspotsAgain) setTimeout(refreshHotspots, HOTSPOTS_MIN_INTERVAL_MS);
    }
  }

  // Alert cells that are not among the hot spots have no outline yet: fetch them once.
  async function fetchAlertOutlines(alertCells) {
    if (state.outlinesBusy) return;
    const known = new Set(state.hotspots.map((h) => h.cell));
    const missing = [...alertCells.keys()].filter((c) => !known.has(c) && !state.outlines.has(c)).slice(0, 500);
    if (!missing.length) return;
    state.outlinesBusy = true;
    try {
      const body = await api(`/api/cells?ids=${missing.map(encodeURIComponent).join(",")}`);
      for (const c of body.cells || []) state.outlines.set(c.cell, c.boundary);
      renderMap();
    } catch (err) {
      // out of scope or malformed: remember nothing, draw what we have (the cells stay listed in their card)
      for (const c of missing) state.outlines.set(c, null);
    } finally {
      state.outlinesBusy = false;
    }
  }

  // ------------------------------------------------------------------ alerts

  function isOpen(entry) {
    return entry.alert.state !== "closed" && !(entry.status && entry.status.action === "resolve");
  }

  function newerStatus(a, b) {
    if (!a) return b || null;
    if (!b) return a;
    return (b.at || 0) >= (a.at || 0) ? b : a;
  }

  function upsertAlert(alert, where) {
    if (!alert || typeof alert.id !== "string") return;
    let entry = state.alerts.get(alert.id);
    const created = !entry;
    if (created) {
      const node = $("#alert-template").content.firstElementChild.cloneNode(true);
      entry = { alert, status: null, el: node, busy: false };
      state.alerts.set(alert.id, entry);
      // only supervisors and commanders may act: other roles get no buttons at all
      if (ACTING_ROLES.has(state.me && state.me.role)) wireActions(entry);
      else $(".actions", node).remove();
      const feed = $("#feed");
      if (where === "top") feed.prepend(node);
      else feed.append(node);
      trimFeed();
    }
    entry.alert = alert;
    entry.status = newerStatus(newerStatus(entry.status, alert.status || null), state.earlyStatus.get(alert.id) || null);
    state.earlyStatus.delete(alert.id);
    renderCard(entry);
    renderFeedFilter();
  }

  function trimFeed() {
    while (state.alerts.size > MAX_CARDS) {
      const oldest = $("#feed").lastElementChild;
      if (!oldest) break;
      state.alerts.delete(oldest.dataset.alertId);
      oldest.remove();
    }
  }

  /**
   * Statuses of the alerts on the page from GET /api/alerts (supervisors and commanders get them there).
   *
   * The gateway sends an action frame only to connections that were sent the alert itself, so a
   * card filled from the REST API at start-up, or before a reconnect, would otherwise never hear of
   * an acknowledgement made by someone else. Run after every resumed connection and periodically.
   */
  async function reconcileStatuses() {
    if (!state.me || !ACTING_ROLES.has(state.me.role) || !state.alerts.size) return;
    let body;
    try {
      body = await api("/api/alerts?state=all&limit=1000");
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) refused(err);
      return;
    }
    let changed = false;
    for (const { alert } of body.alerts) {
      const entry = state.alerts.get(alert.id);
      if (!entry || !alert.status) continue;
      const status = newerStatus(entry.status, alert.status);
      if (status !== entry.status) {
        entry.status = status;
        renderCard(entry);
        changed = true;
      }
    }
    if (changed) {
      renderFeedFilter();
      renderMap();
    }
  }

  function applyAction(action) {
    const entry = state.alerts.get(action.alert_id);
    if (!entry) {
      state.earlyStatus.set(action.alert_id, action);
      return;
    }
    entry.status = newerStatus(entry.status, action);
    setBusy(entry, false);
    renderCard(entry);
    renderFeedFilter();
  }

  function describeStatus(status) {
    return status.action === "resolve" ? "Resolved" : "Acknowledged";
  }

  function renderCard(entry) {
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
    $(".kind", node).textContent = a.kind.replace("_", " ");
    $(".state", node).textContent = { open: "new", update: "updated", closed: "ended" }[a.state] || a.state || "";
    const at = $(".at", node);
    at.textContent = fmtTime(a.at);
    at.setAttribute("datetime", isoTime(a.at));

    $(".reason", node).textContent = a.reason || "";
    const observed = a.observed === null || a.observed === undefined ? "too few to show" : String(a.observed);
    $(".observed", node).textContent = `${observed} observed vs ${fmtNumber(a.expected)} expected`;
    $(".window", node).textContent = a.window_min ? `${a.window_min} min` : "—";
    const cats = Object.entries(a.categories || {}).sort((x, y) => y[1] - x[1]);
    $(".categories", node).textContent = cats.length ? cats.map(([c, n]) => `${c} ${n}`).join(", ") : "—";
    const p = typeof a.p_value === "number" ? ` (p = ${a.p_value.toExponential(1)})` : "";
    $(".score", node).textContent = `${fmtNumber(a.score)}${p}`;
    $(".model", node).textContent = [a.model, a.model_version && `v${a.model_version}`].filter(Boolean).join(" ") || "—";
    $(".zones", node).textContent = (a.zones || []).length ? a.zones.map(zoneName).join(", ") : "—";
    const cells = $(".cells", node);
    cells.textContent = "";
    const onMap = new Set(state.hotspots.map((h) => h.cell));
    (a.cells || []).forEach((c, i) => {
      if (i) cells.append(" ");
      cells.append(el("code", { class: onMap.has(c) ? "cell-id on-map" : "cell-id", "data-cell": c }, c));
    });
    if (!(a.cells || []).length) cells.textContent = "—";
    $(".started", node).textContent = fmtTime(a.started_at);

    renderStatus(entry);
    renderActions(entry);
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
    if (s.at) box.append(" at ", el("time", { datetime: isoTime(s.at) }, fmtTime(s.at)));
    if (s.note) box.append(": ", el("q", { class: "status-note" }, s.note));
  }

  function renderActions(entry) {
    const form = $(".actions", entry.el);
    if (!form) return;
    const resolved = Boolean(entry.status && entry.status.action === "resolve");
    form.hidden = resolved;
    const acked = Boolean(entry.status);
    $("button.ack", form).disabled = entry.busy || acked;
    $("button.resolve", form).disabled = entry.busy;
  }

  function setBusy(entry, busy) {
    entry.busy = busy;
    entry.el.classList.toggle("busy", busy);
    renderActions(entry);
  }

  function wireActions(entry) {
    const form = $(".actions", entry.el);
    form.addEventListener("submit", (ev) => ev.preventDefault());
    const label = () => `${entry.alert.kind.replace("_", " ")} alert of ${fmtTime(entry.alert.at)}`;
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

  function visibleInFeed(entry) {
    if (!state.selectedZone) return true;
    return entry.alert.kind === "feed_outage" || (entry.alert.zones || []).includes(state.selectedZone);
  }

  function renderFeedFilter() {
    let shown = 0;
    let open = 0;
    for (const entry of state.alerts.values()) {
      const visible = visibleInFeed(entry);
      entry.el.hidden = !visible;
      if (visible) shown += 1;
      if (visible && isOpen(entry)) open += 1;
    }
    $("#feed-count").textContent = shown ? `${open} open of ${shown}` : "";
    $("#feed-empty").hidden = shown > 0;
  }

  // ------------------------------------------------------------------ map

  /** Rings of [lng, lat] for a GeoJSON geometry; Points come back as {point, radius_m}. */
  function geometryShapes(geom, radius) {
    if (!geom) return [];
    if (geom.type === "Polygon") return geom.coordinates.map((ring) => ({ ring }));
    if (geom.type === "MultiPolygon") return geom.coordinates.flatMap((poly) => poly.map((ring) => ({ ring })));
    if (geom.type === "Point") return [{ point: geom.coordinates, radius_m: radius }];
    return [];
  }

  function cellRing(cell) {
    return cell.boundary.map(([lat, lng]) => [lng, lat]);
  }

  function extend(box, lng, lat) {
    box[0] = Math.min(box[0], lng);
    box[1] = Math.min(box[1], lat);
    box[2] = Math.max(box[2], lng);
    box[3] = Math.max(box[3], lat);
  }

  function shapesBox(shapes, box = [Infinity, Infinity, -Infinity, -Infinity]) {
    for (const s of shapes) {
      if (s.ring) for (const [lng, lat] of s.ring) extend(box, lng, lat);
      else extend(box, s.point[0], s.point[1]);
    }
    return box;
  }

  function openAlertCells() {
    const cells = new Map(); // cell -> [severity...]
    for (const entry of state.alerts.values()) {
      if (!isOpen(entry) || !visibleInFeed(entry)) continue;
      for (const c of entry.alert.cells || []) {
        if (!cells.has(c)) cells.set(c, []);
        cells.get(c).push(entry.alert.severity);
      }
    }
    return cells;
  }

  function breaksFor(max) {
    const ubs = [];
    for (let i = 1; i <= PALETTE_STEPS; i += 1) {
      const ub = Math.max(1, Math.round(1 + ((max - 1) * i) / PALETTE_STEPS));
      if (!ubs.includes(ub)) ubs.push(ub);
    }
    return ubs;
  }

  function renderMap() {
    const host = $("#map");
    if (!host || $("#board").hidden) return;
    const w = Math.max(240, Math.round(host.clientWidth));
    const h = Math.max(240, Math.round(host.clientHeight));
    const zoneShapes = [...state.zones.values()].map((z) => ({ zone: z, shapes: geometryShapes(z.polygon, z.radius_m) }));
    const alertCells = openAlertCells();
    const hotCells = new Set(state.hotspots.map((c) => c.cell));
    const quietAlertCells = [...alertCells.keys()]
      .filter((c) => !hotCells.has(c) && Array.isArray(state.outlines.get(c)))
      .map((c) => ({ cell: c, count: 0, boundary: state.outlines.get(c) }));
    const cellShapes = state.hotspots.concat(quietAlertCells).filter((c) => Array.isArray(c.boundary) && c.boundary.length > 2);
    fetchAlertOutlines(alertCells);

    let box;
    const focus = state.selectedZone && zoneShapes.find((z) => z.zone.id === state.selectedZone);
    if (focus) {
      box = shapesBox(focus.shapes);
    } else {
      box = [Infinity, Infinity, -Infinity, -Infinity];
      for (const z of zoneShapes) shapesBox(z.shapes, box);
      shapesBox(cellShapes.map((c) => ({ ring: cellRing(c) })), box);
    }
    host.textContent = "";
    if (!Number.isFinite(box[0])) {
      host.append(el("p", { class: "map-empty hint" }, "Nothing to draw yet: no zones and no recent calls in scope."));
      renderLegend([]);
      return;
    }
    // at least MIN_SPAN_DEG across, and a margin of 8% on each side
    const cx = (box[0] + box[2]) / 2;
    const cy = (box[1] + box[3]) / 2;
    const k = Math.cos((cy * Math.PI) / 180); // Web Mercator, scaled so that the centre keeps its km
    const spanX = Math.max((box[2] - box[0]) * k, MIN_SPAN_DEG) * 1.16;
    const spanY = Math.max(box[3] - box[1], MIN_SPAN_DEG) * 1.16;
    const scale = Math.min(w / spanX, h / spanY); // pixels per degree of latitude
    const my0 = mercatorY(cy);
    const project = (lng, lat) => [w / 2 + (lng - cx) * k * scale, h / 2 - (mercatorY(lat) - my0) * k * scale];
    const pathOf = (ring) => `M${ring.map(([lng, lat]) => project(lng, lat).map((v) => v.toFixed(1)).join(",")).join("L")}Z`;

    const root = svg("svg", { viewBox: `0 0 ${w} ${h}`, width: w, height: h, role: "presentation" });
    root.append(svg("rect", { class: "map-bg", x: 0, y: 0, width: w, height: h }));
    if (TILES) root.append(tileLayer(w, h, cx, cy, 360 * k * scale));

    // hot-spot cells, coloured by count; cells of open alerts drawn last, outlined in red
    const max = cellShapes.reduce((m, c) => Math.max(m, c.count), 1);
    const ubs = breaksFor(max);
    const gCells = svg("g", { class: "cells" });
    const ordered = [...cellShapes].sort((a, b) => Number(alertCells.has(a.cell)) - Number(alertCells.has(b.cell)) || a.count - b.count);
    for (const c of ordered) {
      const q = ubs.findIndex((ub) => c.count <= ub);
      const hot = alertCells.has(c.cell);
      const p = svg("path", { d: pathOf(cellRing(c)), class: `cell q${q < 0 ? ubs.length - 1 : q}${hot ? " alert" : ""}`, "data-cell": c.cell, "data-count": c.count });
      p.append(svg("title", {}, `${c.cell}: ${c.count} calls${hot ? " (alert)" : ""}`));
      gCells.append(p);
    }
    root.append(gCells);

    // zones: outlines (stations and schools), points as circles of their radius
    const touched = new Set();
    for (const entry of state.alerts.values()) if (isOpen(entry)) for (const z of entry.alert.zones || []) touched.add(z);
    const gZones = svg("g", { class: "zones" });
    const gLabels = svg("g", { class: "labels" });
    const labels = [];
    for (const { zone, shapes } of zoneShapes) {
      const cls = `zone kind-${zone.kind}${zone.id === state.selectedZone ? " selected" : ""}${touched.has(zone.id) ? " alerting" : ""}${zone.active === false ? " inactive" : ""}`;
      const g = svg("g", { class: cls, "data-zone-id": zone.id });
      g.append(svg("title", {}, `${zone.name} (${zone.kind}, ${zone.agency})`));
      for (const s of shapes) {
        if (s.ring) {
          g.append(svg("path", { d: pathOf(s.ring) }));
        } else {
          const [x, y] = project(s.point[0], s.point[1]);
          const r = s.radius_m ? (s.radius_m / 1000 / KM_PER_DEGREE) * scale : 5;
          g.append(svg("circle", { cx: x.toFixed(1), cy: y.toFixed(1), r: Math.max(4, r).toFixed(1) }));
        }
      }
      g.addEventListener("click", () => selectZone(zone.id));
      gZones.append(g);
      const zb = shapesBox(shapes);
      if (Number.isFinite(zb[0])) {
        const [x, y] = project((zb[0] + zb[2]) / 2, zb[3]);
        labels.push({ x, y: y - 5, text: zone.name, hot: touched.has(zone.id), selected: zone.id === state.selectedZone });
      }
    }
    placeLabels(labels, gLabels, w, h);
    // at county scale a res-8 cell is a few pixels: ring the alert cells so they are found at a glance
    const gMarkers = svg("g", { class: "alert-markers" });
    for (const c of cellShapes) {
      if (!alertCells.has(c.cell)) continue;
      const pts = cellRing(c).map(([lng, lat]) => project(lng, lat));
      const mx = pts.reduce((s, p) => s + p[0], 0) / pts.length;
      const my = pts.reduce((s, p) => s + p[1], 0) / pts.length;
      const radius = Math.max(...pts.map(([px, py]) => Math.hypot(px - mx, py - my)));
      if (radius < 14) gMarkers.append(svg("circle", { class: "alert-marker", cx: mx.toFixed(1), cy: my.toFixed(1), r: (radius + 9).toFixed(1) }));
    }
    root.append(gZones, gMarkers, gLabels);
    root.append(scaleBar(w, h, scale));
    host.append(root);

    const shownAlertCells = cellShapes.filter((c) => alertCells.has(c.cell)).length;
    $("#map-caption").textContent = `${focus ? focus.zone.name : "all zones in scope"} · ${cellShapes.length} active cells${
      alertCells.size ? ` · ${shownAlertCells} of ${alertCells.size} alert cells drawn` : ""
    }`;
    renderLegend(ubs);
    // cell ids in the cards are marked when they are on the map
    const onMap = new Set(cellShapes.map((c) => c.cell));
    for (const code of document.querySelectorAll("#feed code.cell-id")) code.classList.toggle("on-map", onMap.has(code.dataset.cell));
  }

  /** Zone names, alerting and selected ones first, leaving out any that would overlap one already placed. */
  function placeLabels(labels, group, w, h) {
    const CHAR_PX = 6.3; // average advance of an 11px sans-serif glyph
    const placed = [];
    labels.sort((a, b) => Number(b.hot) - Number(a.hot) || Number(b.selected) - Number(a.selected) || a.y - b.y);
    for (const l of labels) {
      if (l.x < 0 || l.x > w || l.y < 0 || l.y > h + 12) continue; // the zone is off the map
      const half = (l.text.length * CHAR_PX) / 2;
      l.x = Math.min(Math.max(l.x, half + 4), w - half - 4); // keep names of zones near the edge inside
      l.y = Math.min(Math.max(l.y, 14), h - 4);
      const box = [l.x - half - 2, l.y - 12, l.x + half + 2, l.y + 3];
      if (placed.some((p) => box[0] < p[2] && p[0] < box[2] && box[1] < p[3] && p[1] < box[3])) continue;
      placed.push(box);
      group.append(svg("text", { x: l.x.toFixed(1), y: l.y.toFixed(1), class: `zone-label${l.hot ? " alerting" : ""}` }, l.text));
    }
  }

  // y of the Web Mercator projection, in degrees (equal to the latitude near the equator)
  function mercatorY(lat) {
    return (Math.log(Math.tan(Math.PI / 4 + (lat * Math.PI) / 360)) * 180) / Math.PI;
  }

  // Raster tiles under the map when the page is opened with ?tiles=<template> ({z}/{x}/{y});
  // none by default: the dashboard must work with no internet. ``perUnit`` is pixels per
  // unit of the Web Mercator square, so a tile of zoom z is perUnit / 2^z pixels wide.
  function tileLayer(w, h, cx, cy, perUnit) {
    const g = svg("g", { class: "tiles" });
    const z = Math.max(0, Math.min(19, Math.round(Math.log2(perUnit / 256))));
    const n = 2 ** z;
    const uc = (cx + 180) / 360;
    const vc = 0.5 - mercatorY(cy) / 360;
    const size = perUnit / n;
    const i0 = Math.floor((uc - w / 2 / perUnit) * n);
    const i1 = Math.floor((uc + w / 2 / perUnit) * n);
    const j0 = Math.max(0, Math.floor((vc - h / 2 / perUnit) * n));
    const j1 = Math.min(n - 1, Math.floor((vc + h / 2 / perUnit) * n));
    for (let i = i0; i <= i1; i += 1) {
      for (let j = j0; j <= j1; j += 1) {
        const x = ((i % n) + n) % n;
        const href = TILES.replace("{z}", z).replace("{x}", x).replace("{y}", j);
        g.append(
          svg("image", {
            href,
            x: (w / 2 + (i / n - uc) * perUnit).toFixed(1),
            y: (h / 2 + (j / n - vc) * perUnit).toFixed(1),
            width: (size + 0.5).toFixed(1),
            height: (size + 0.5).toFixed(1),
          }),
        );
      }
    }
    return g;
  }

  function scaleBar(w, h, scale) {
    const pxPerKm = scale / KM_PER_DEGREE;
    const target = w / 6 / pxPerKm;
    const km = [0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100].reduce((best, v) => (Math.abs(v - target) < Math.abs(best - target) ? v : best));
    const len = km * pxPerKm;
    const x = 16;
    const y = h - 18;
    const g = svg("g", { class: "scale" });
    g.append(
      svg("path", { d: `M${x},${y - 5}V${y}H${(x + len).toFixed(1)}V${y - 5}` }),
      svg("text", { x: x + len + 6, y }, km < 1 ? `${km * 1000} m` : `${km} km`),
    );
    return g;
  }

  function renderLegend(ubs) {
    const box = $("#legend");
    box.textContent = "";
    const list = el("ul", { class: "legend-list" });
    let lo = 1;
    ubs.forEach((ub, i) => {
      const item = el("li", {});
      item.append(el("span", { class: `swatch q${i}`, "aria-hidden": "true" }), lo === ub ? `${ub}` : `${lo}–${ub}`);
      list.append(item);
      lo = ub + 1;
    });
    const calls = el("li", { class: "legend-title" }, `calls per cell, last ${$("#counts-window").textContent} min:`);
    list.prepend(calls);
    const alert = el("li", {});
    alert.append(el("span", { class: "swatch swatch-alert", "aria-hidden": "true" }), "alert cell");
    const zone = el("li", {});
    zone.append(el("span", { class: "swatch swatch-zone", "aria-hidden": "true" }), "zone");
    list.append(alert, zone);
    box.append(list);
  }

  // ------------------------------------------------------------------ wiring

  function init() {
    $("#login-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const t = $("#token-input").value.trim();
      if (!t) return;
      sessionStorage.setItem(TOKEN_KEY, t);
      $("#token-input").value = "";
      location.reload();
    });
    $("#logout").addEventListener("click", logout);
    $("#zone-all").addEventListener("click", () => selectZone(null));
    window.addEventListener("hashchange", () => {
      if (new URLSearchParams(location.hash.replace(/^#/, "")).get("token")) {
        takeToken();
        location.reload();
      }
    });
    let resizeTimer = null;
    window.addEventListener("resize", () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(renderMap, 150);
    });
    start();
  }

  init();
})();
