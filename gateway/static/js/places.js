// The map's base layer, to orient by: the jurisdiction's outline (every role) and its named areas with their names
// (supervisors and commanders), from GET /api/places, read once per token. Drawn under the cells; works offline
// (nothing but the gateway is asked).

import { getJson } from "./api.js";
import { svg } from "./format.js";
import { geometryShapes, labelPoint, ringArea } from "./geo.js";

/** Smallest on-screen area (px²) of an area whose name is written on it: about a 45 px square. */
export const MIN_LABELLED_PX2 = 2000;

let loaded = { token: null, body: null, asked: false };

/**
 * The places of /api/places for ``token``, or null until they are read (then ``onLoad`` is called once).
 * Asked once per token; a refusal or an error leaves the map without a base layer (it still works).
 */
export function placesFor(token, onLoad) {
  if (!token) return null;
  if (loaded.token !== token) loaded = { token, body: null, asked: false };
  if (!loaded.asked) {
    loaded.asked = true;
    const mine = loaded;
    getJson(token, "/api/places")
      .then((body) => {
        if (loaded !== mine) return; // logged out or in again meanwhile
        mine.body = body;
        onLoad();
      })
      .catch(() => {}); // no base layer: the cells and zones are drawn as before
  }
  return loaded.body;
}

/** Shapes ({ring}) of the jurisdiction's outline, for the map's extent. */
export const outlineShapes = (places) => (places ? geometryShapes(places.outline) : []);

/** The outer rings of a (Multi)Polygon. */
function outerRings(geom) {
  if (!geom) return [];
  if (geom.type === "Polygon") return geom.coordinates.slice(0, 1);
  if (geom.type === "MultiPolygon") return geom.coordinates.map((poly) => poly[0]);
  return [];
}

/**
 * The layer: the outline as a thin line, each area as a faint outline (with its name as a tooltip). Returns
 * {group, labels: [{x, y, text}] of the areas large enough on screen to be named, biggest first, drawn: {...}}.
 */
export function placesLayer(places, project, w, h, chosen = "") {
  const pathOf = (ring) => `M${ring.map(([lng, lat]) => project(lng, lat).map((v) => v.toFixed(1)).join(",")).join("L")}Z`;
  const group = svg("g", { class: "places" });
  const drawn = { outline: 0, areas: [], labelled: [] };
  const labels = [];
  const areas = (places.areas && places.areas.features) || [];
  for (const f of areas) {
    const name = f.properties && f.properties.name;
    const rings = geometryShapes(f.geometry).map((s) => s.ring);
    if (!name || !rings.length) continue;
    const isChosen = Boolean(chosen) && name.toLowerCase() === chosen.toLowerCase();
    const p = svg("path", { class: isChosen ? "area chosen" : "area", d: rings.map(pathOf).join(""), "data-area": name });
    p.append(svg("title", {}, name));
    group.append(p);
    drawn.areas.push(name);
    let best = null;
    for (const ring of outerRings(f.geometry)) {
      const pts = ring.map(([lng, lat]) => project(lng, lat));
      const a = ringArea(pts);
      if (!best || a > best.a) best = { a, pts };
    }
    if (!best || best.a < MIN_LABELLED_PX2) continue;
    const at = labelPoint(best.pts);
    if (at && at[0] >= 0 && at[0] <= w && at[1] >= 0 && at[1] <= h) labels.push({ x: at[0], y: at[1] + 4, text: name, area: best.a, hot: false, selected: false });
  }
  const outline = geometryShapes(places.outline).map((s) => s.ring);
  if (outline.length) {
    const p = svg("path", { class: "boundary", d: outline.map(pathOf).join("") });
    p.append(svg("title", {}, places.name || "jurisdiction"));
    group.append(p);
    drawn.outline = outline.length;
  }
  labels.sort((a, b) => b.area - a.area);
  return { group, labels, drawn };
}
