// The map: an SVG redrawn from the state (zones, hot-spot cells, alert regions, the jurisdiction's outline and
// named areas (places.js) over optional raster tiles or the agency's basemap).
//
// Layers, bottom up: the basemap (basemap.js: MapLibre in its own element under the SVG, its camera on the SVG's
// view) or tiles (SVG images), the background (a veil over the basemap), the jurisdiction's outline and its named areas, cells, each open alert's region as
// one red outline, zones, rings around what is too small to find, labels (zones', then areas'), scale bar.
// Supervisors and commanders see calls per res-8 cell coloured by count, the named areas and their zones.
// Partners see no cell and no area (/api/places gives them the outline only): only their zones, with the ones
// touched by an open alert highlighted (class "alerting") and ringed when they are too small to find at a glance.
// An alert over the whole jurisdiction (or over more than MAX_OUTLINED_CELLS cells) is not outlined: the legend
// and caption name it instead.

import { $, cellLabel, el, svg } from "./format.js";
import { alertingZones, isOpen, visibleInFeed } from "./state.js";
import {
  KM_PER_DEGREE,
  USUAL_CLASSES,
  USUAL_WORDS,
  breaksFor,
  cellRing,
  emptyBox,
  geometryShapes,
  mergedRings,
  placeLabels,
  scaleKm,
  shapesBox,
  tilesFor,
  usualClass,
  viewOf,
} from "./geo.js";
import { outlineShapes, placesFor, placesLayer } from "./places.js";
import { drawBasemap } from "./basemap.js";
import { FLAG_SHARES, flaggedCells } from "./forecast.js";

/** Smallest radius (px) of a shape drawn without a ring around it when it is part of an open alert. */
const FINDABLE_PX = 14;
/** Most cells of an alert outlined on the map; a larger alert is named in the legend instead. */
const MAX_OUTLINED_CELLS = 200;
/** Alerts over the whole jurisdiction (streams.detection's jurisdiction-wide surge) are never outlined. */
const JURISDICTION_WIDE = "surge:jurisdiction:";

/**
 * Draw the map into #map. ``onSelect(key)`` is called with a zone id (a unit id for partners) on a click.
 * Returns {onMap: cells drawn, missing: alert cells with no outline known yet (fetch them from /api/cells)}.
 */
export function renderMap(state, opts) {
  const { onSelect } = opts;
  const places = placesFor(state.token, () => renderMap(state, opts));
  const host = $("#map");
  const result = { onMap: new Set(), missing: [] };
  if (!host || $("#board").hidden) return result;
  const w = Math.max(240, Math.round(host.clientWidth));
  const h = Math.max(240, Math.round(host.clientHeight));
  host.setAttribute("aria-label", state.partner ? "Map of your places within the jurisdiction's outline; those near an open alert are outlined in red" : "Map of recent calls by hexagonal cell over the jurisdiction's named areas, with zones and each open alert's region outlined in red");

  const zoneShapes = [...state.zones.values()].map((z) => ({ zone: z, shapes: geometryShapes(z.polygon, z.radius_m) }));
  const alertCells = openAlertCells(state);
  const hotCells = new Set(state.hotspots.map((c) => c.cell));
  const quietAlertCells = [...alertCells.keys()]
    .filter((c) => !hotCells.has(c) && Array.isArray(state.outlines.get(c)))
    // not among the busiest cells: no calls in the window when the list was complete, unknown (not 0) otherwise
    .map((c) => ({ cell: c, count: state.hotspotsComplete ? 0 : null, boundary: state.outlines.get(c) }));
  const cellShapes = state.hotspots.concat(quietAlertCells).filter((c) => Array.isArray(c.boundary) && c.boundary.length > 2);
  result.missing = [...alertCells.keys()].filter((c) => !hotCells.has(c) && !state.outlines.has(c));
  result.onMap = new Set(cellShapes.map((c) => c.cell));

  const selected = new Set(state.selection ? state.selection.zones : []);
  const focus = zoneShapes.filter((z) => selected.has(z.zone.id));
  const area = areaShapes(places, state.filter && state.filter.area);
  let box;
  if (area.length) {
    box = shapesBox(area, emptyBox()); // the filter's named area (js/overview.js), outlined by placesLayer
  } else if (focus.length) {
    box = emptyBox();
    for (const z of focus) shapesBox(z.shapes, box);
  } else {
    box = emptyBox();
    for (const z of zoneShapes) shapesBox(z.shapes, box);
    shapesBox(cellShapes.map((c) => ({ ring: cellRing(c) })), box);
    // the whole jurisdiction: always for supervisors (their scope), for the others while no cell is drawn
    if (!cellShapes.length || (state.me && state.me.role === "supervisor")) shapesBox(outlineShapes(places), box);
  }
  for (const child of [...host.children]) if (!child.classList.contains("basemap")) child.remove(); // the basemap stays
  if (!Number.isFinite(box[0])) {
    host.append(el("p", { class: "map-empty hint" }, state.partner ? "Nothing to draw yet: your places have not loaded." : "Nothing to draw yet: no zones and no recent calls in scope."));
    renderLegend(state, []);
    return result;
  }
  const { cx, cy, k, scale, project } = viewOf(box, w, h);
  const pathOf = (ring) => `M${ring.map(([lng, lat]) => project(lng, lat).map((v) => v.toFixed(1)).join(",")).join("L")}Z`;

  const root = svg("svg", { viewBox: `0 0 ${w} ${h}`, width: w, height: h, role: "presentation" });
  const basemap = state.basemap ? drawBasemap(host, state.basemap, { cx, cy, k, scale, w, h }) : false;
  root.append(svg("rect", { class: `map-bg${basemap ? " veil" : ""}`, x: 0, y: 0, width: w, height: h }));
  if (state.tiles) root.append(tileLayer(state.tiles, w, h, cx, cy, 360 * k * scale));
  const base = places ? placesLayer(places, project, w, h, state.filter && state.filter.area) : null;
  if (base) root.append(base.group);

  // hot-spot cells, coloured against their usual (the same window on the previous days) when the gateway has one,
  // else (or when the legend says so) by count; cells of open alerts drawn last
  const byUsual = state.colourBy === "usual" && state.hotspotsUsualDays > 0;
  const ubs = breaksFor(cellShapes.reduce((m, c) => Math.max(m, c.count || 0), 1));
  const gCells = svg("g", { class: "cells" });
  const ordered = [...cellShapes].sort((a, b) => Number(alertCells.has(a.cell)) - Number(alertCells.has(b.cell)) || a.count - b.count);
  for (const c of ordered) {
    const q = ubs.findIndex((ub) => (c.count || 0) <= ub);
    const hot = alertCells.has(c.cell);
    const known = c.count !== null;
    const vs = byUsual ? usualClass(c.count, c.usual) : null;
    const cls = !known ? "cell unknown" : byUsual ? `cell ${vs ? `vs-${vs}` : "no-usual"}` : `cell q${q < 0 ? ubs.length - 1 : q}`;
    const p = svg("path", { d: pathOf(cellRing(c)), class: `${cls}${hot ? " alert" : ""}`, "data-cell": c.cell, "data-count": known ? c.count : "" });
    if (vs) p.setAttribute("data-vs-usual", vs);
    const calls = known ? `${c.count} calls` : "calls not shown (not among the busiest cells drawn)";
    const usual = typeof c.usual === "number" ? `, usual ${c.usual}${vs ? ` (${USUAL_WORDS[vs]})` : ""}` : "";
    p.append(svg("title", {}, `${cellLabel(c.cell, state.cellAreas.get(c.cell))}: ${calls}${usual}${hot ? " (alert)" : ""}`));
    gCells.append(p);
  }
  root.append(gCells);

  // the next shift's hot spots (js/forecast.js), when the layer is on: solid in the top 0.5 %, dashed to the top 1 %
  const gForecast = svg("g", { class: "forecast-hot-spots" });
  if (state.forecastLayer && state.forecast) {
    const known = new Map(cellShapes.map((c) => [c.cell, c.boundary]));
    const top = new Set(flaggedCells(state.forecast.hotspots, FLAG_SHARES[0]).map((c) => c.cell));
    for (const c of flaggedCells(state.forecast.hotspots, FLAG_SHARES[1])) {
      const boundary = known.get(c.cell) || state.outlines.get(c.cell);
      if (!Array.isArray(boundary)) {
        if (!state.outlines.has(c.cell)) result.missing.push(c.cell);
        continue;
      }
      const half = top.has(c.cell);
      const p = svg("path", { d: pathOf(cellRing({ boundary })), class: `forecast-hot ${half ? "flag-halfpc" : "flag-1pc"}`, "data-cell": c.cell, "data-rank": c.rank });
      const mean = typeof c.mean === "number" ? `about ${Math.round(c.mean * 10) / 10} calls expected next shift` : "";
      p.append(svg("title", {}, `${c.name || cellLabel(c.cell, state.cellAreas.get(c.cell))}: hot spot #${c.rank} (top ${half ? "0.5" : "1"} % of the area), ${mean}`));
      gForecast.append(p);
    }
  }
  root.append(gForecast);
  host.dataset.forecastCells = String(gForecast.childElementCount);

  // each open alert's cells as one outline (the union's edges), ringed when too small to find
  const regions = alertRegions(state);
  const boundaries = new Map(cellShapes.map((c) => [c.cell, c.boundary]));
  const gRegions = svg("g", { class: "alert-regions" });
  const gMarkers = svg("g", { class: "alert-markers" });
  for (const r of regions.outlined) {
    const rings = mergedRings(r.cells.filter((c) => boundaries.has(c)).map((c) => cellRing({ boundary: boundaries.get(c) })));
    if (!rings.length) continue;
    const p = svg("path", { class: "alert-outline", d: rings.map(pathOf).join(""), "data-alert-id": r.id, "data-cells": r.cells.length });
    p.append(svg("title", {}, `${r.label}: ${r.cells.length} cell${r.cells.length === 1 ? "" : "s"}`));
    gRegions.append(p);
    gMarkers.append(...ringIfSmall(rings.flat().map(([lng, lat]) => project(lng, lat)), "cell-marker"));
  }
  root.append(gRegions);

  // zones: outlines (stations and schools), points as circles of their radius
  const touched = alertingZones(state);
  const gZones = svg("g", { class: "zones" });
  const labels = [];
  const unitOf = new Map(state.units.flatMap((u) => u.zones.map((z) => [z, u.id])));
  for (const { zone, shapes } of zoneShapes) {
    const hot = touched.has(zone.id);
    const cls = `zone kind-${zone.kind}${selected.has(zone.id) ? " selected" : ""}${hot ? " alerting" : ""}${zone.active === false ? " inactive" : ""}`;
    const g = svg("g", { class: cls, "data-zone-id": zone.id });
    g.append(svg("title", {}, `${zone.name} (${zone.kind}, ${zone.agency})${hot ? ": open alert" : ""}`));
    const pts = []; // the drawn outline in pixels
    for (const s of shapes) {
      if (s.ring) {
        g.append(svg("path", { d: pathOf(s.ring) }));
        pts.push(...s.ring.map(([lng, lat]) => project(lng, lat)));
      } else {
        const [x, y] = project(s.point[0], s.point[1]);
        const r = Math.max(4, s.radius_m ? (s.radius_m / 1000 / KM_PER_DEGREE) * scale : 5);
        g.append(svg("circle", { cx: x.toFixed(1), cy: y.toFixed(1), r: r.toFixed(1) }));
        pts.push([x - r, y], [x + r, y], [x, y - r], [x, y + r]);
      }
    }
    const key = state.partner ? unitOf.get(zone.id) : zone.id;
    if (key) g.addEventListener("click", () => onSelect(key));
    gZones.append(g);
    const zb = shapesBox(shapes);
    if (!Number.isFinite(zb[0])) continue;
    const [x, y] = project((zb[0] + zb[2]) / 2, zb[3]);
    labels.push({ x, y: y - 5, text: zone.name, hot, selected: selected.has(zone.id) });
    // partners have no cells to outline: ring the zones of open alerts that are too small to see
    if (state.partner && hot) gMarkers.append(...ringIfSmall(pts, "zone-marker"));
  }
  const gLabels = svg("g", { class: "labels" });
  const taken = []; // label boxes: the zones' names first, the areas' where they do not overlap one
  for (const l of placeLabels(labels, w, h, taken)) {
    gLabels.append(svg("text", { x: l.x.toFixed(1), y: l.y.toFixed(1), class: `zone-label${l.hot ? " alerting" : ""}` }, l.text));
  }
  const areaLabels = base ? placeLabels(base.labels, w, h, taken) : [];
  for (const l of areaLabels) gLabels.append(svg("text", { x: l.x.toFixed(1), y: l.y.toFixed(1), class: "area-label" }, l.text));
  host.dataset.places = base ? JSON.stringify({ outline: base.drawn.outline, areas: base.drawn.areas.length, labels: areaLabels.map((l) => l.text) }) : "";
  host.dataset.alertOutlines = String(gRegions.childElementCount);
  root.append(gZones, gMarkers, gLabels, scaleBar(w, h, scale));
  host.append(root);

  const focusName = state.selection ? state.selection.name : null;
  if (state.partner) {
    const n = zoneShapes.filter((z) => touched.has(z.zone.id)).length;
    const zones = `${zoneShapes.length} zone${zoneShapes.length === 1 ? "" : "s"}`;
    $("#map-caption").textContent = `${focusName || "all your places"} · ${zones}${n ? ` · ${n} near an open alert` : ""}`;
  } else {
    const shownAlertCells = cellShapes.filter((c) => alertCells.has(c.cell)).length;
    $("#map-caption").textContent = `${focusName || "all zones in scope"} · ${cellShapes.length} active cells${
      alertCells.size ? ` · ${shownAlertCells} of ${alertCells.size} alert cells drawn` : ""
    }${regions.wide.length ? ` · ${regions.wide.length} jurisdiction-wide alert${regions.wide.length === 1 ? "" : "s"}` : ""}`;
  }
  renderLegend(state, ubs, regions.wide, places, byUsual, () => renderMap(state, opts));
  return result;
}

/** Cells of open alerts shown in the feed: cell -> [severity, ...] (partners' alerts carry none). */
function openAlertCells(state) {
  const cells = new Map();
  for (const entry of state.alerts.values()) {
    if (!isOpen(entry) || !visibleInFeed(state, entry)) continue;
    for (const c of entry.alert.cells || []) {
      if (!cells.has(c)) cells.set(c, []);
      cells.get(c).push(entry.alert.severity);
    }
  }
  return cells;
}

/**
 * Open alerts shown in the feed with cells: {outlined: [{id, label, cells}], wide: [{id, label, cells}]}; wide ones
 * (jurisdiction-wide, or more than MAX_OUTLINED_CELLS cells) are named in the legend rather than outlined.
 */
function alertRegions(state) {
  const outlined = [];
  const wide = [];
  for (const [id, entry] of state.alerts) {
    if (!isOpen(entry) || !visibleInFeed(state, entry)) continue;
    const cells = entry.alert.cells || [];
    if (!cells.length) continue;
    const r = { id, label: `${entry.alert.severity || ""} ${entry.alert.kind || "alert"}`.trim(), cells };
    (id.startsWith(JURISDICTION_WIDE) || cells.length > MAX_OUTLINED_CELLS ? wide : outlined).push(r);
  }
  return { outlined, wide };
}

/** A dashed ring around the points ``pts`` when they fit in a circle smaller than FINDABLE_PX; else nothing. */
function ringIfSmall(pts, cls) {
  if (!pts.length) return [];
  const mx = pts.reduce((s, p) => s + p[0], 0) / pts.length;
  const my = pts.reduce((s, p) => s + p[1], 0) / pts.length;
  const radius = Math.max(...pts.map(([px, py]) => Math.hypot(px - mx, py - my)));
  if (radius >= FINDABLE_PX) return [];
  return [svg("circle", { class: `alert-marker ${cls}`, cx: mx.toFixed(1), cy: my.toFixed(1), r: (radius + 9).toFixed(1) })];
}

// Raster tiles under the map when the gateway is configured with WF_GATEWAY_TILES (given in /api/me);
// none by default: the dashboard must work with no internet.
function tileLayer(template, w, h, cx, cy, perUnit) {
  const g = svg("g", { class: "tiles" });
  for (const t of tilesFor(w, h, cx, cy, perUnit)) {
    const href = template.replace("{z}", t.z).replace("{x}", t.x).replace("{y}", t.y);
    const size = (t.size + 0.5).toFixed(1);
    g.append(svg("image", { href, x: t.left.toFixed(1), y: t.top.toFixed(1), width: size, height: size }));
  }
  return g;
}

function scaleBar(w, h, scale) {
  const pxPerKm = scale / KM_PER_DEGREE;
  const km = scaleKm(w, pxPerKm);
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

function swatch(cls, text) {
  const item = el("li", {});
  item.append(el("span", { class: `swatch ${cls}`, "aria-hidden": "true" }), text);
  return item;
}

/** The shapes of the named area called ``name`` (case ignored), or none. */
function areaShapes(places, name) {
  if (!name || !places || !places.areas) return [];
  const want = name.toLowerCase();
  const f = places.areas.features.find((x) => x.properties && String(x.properties.name).toLowerCase() === want);
  return f ? geometryShapes(f.geometry) : [];
}

function renderLegend(state, ubs, wide = [], places = null, byUsual = false, redraw = null) {
  const box = $("#legend");
  box.textContent = "";
  const list = el("ul", { class: "legend-list" });
  if (state.partner) {
    list.append(swatch("swatch-zone", "your place"), swatch("swatch-zone-alert", "near an open alert"));
    if (places && places.outline) list.append(swatch("swatch-boundary", places.name || "jurisdiction"));
    box.append(list);
    return;
  }
  if (byUsual) {
    const days = state.hotspotsUsualDays;
    list.append(el("li", { class: "legend-title" }, `calls per cell, last ${state.counts.windowMin} min, against the same time on the previous ${days} day${days === 1 ? "" : "s"}:`));
    for (const k of USUAL_CLASSES) list.append(swatch(`vs-${k}`, USUAL_WORDS[k]));
  } else {
    list.append(el("li", { class: "legend-title" }, `calls per cell, last ${state.counts.windowMin} min:`));
    let lo = 1;
    ubs.forEach((ub, i) => {
      list.append(swatch(`q${i}`, lo === ub ? `${ub}` : `${lo}–${ub}`));
      lo = ub + 1;
    });
  }
  if (redraw && state.hotspotsUsualDays > 0) {
    const next = byUsual ? "count" : "usual";
    const button = el("button", { type: "button", class: "legend-mode", "aria-pressed": String(byUsual) }, "against the usual");
    button.title = byUsual ? "Colour the cells by their calls instead" : "Colour the cells by their calls against the usual";
    button.addEventListener("click", () => {
      state.colourBy = next;
      redraw();
    });
    const item = el("li");
    item.append(button);
    list.append(item);
  }
  list.append(swatch("swatch-alert", "alert region"), swatch("swatch-zone", "zone"));
  if (state.forecastLayer && state.forecast) {
    list.append(swatch("swatch-forecast", "next shift's hot spot, top 0.5 % of the area"), swatch("swatch-forecast-1pc", "top 1 %"));
  }
  if (places && places.outline) list.append(swatch("swatch-boundary", places.name || "jurisdiction"));
  if (places && places.areas && places.areas.features.length) list.append(swatch("swatch-area", "named area"));
  for (const r of wide) {
    list.append(el("li", { class: "legend-wide", "data-alert-id": r.id }, `${r.label}: jurisdiction-wide (${r.cells.length} cells), not outlined`));
  }
  box.append(list);
}
