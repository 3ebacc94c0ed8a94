// The agency's basemap under the SVG map, drawn with MapLibre GL JS (and the pmtiles reader for a PMTiles archive).
//
// Only when /api/me names one (the gateway's WF_GATEWAY_BASEMAP): then, and only then, the vendored libraries are
// loaded from /static/vendor/ by <script src> elements (same origin: CSP script-src 'self'), MapLibre's worker from
// its own file (setWorkerUrl: no blob: worker). The MapLibre map is not interactive: its camera follows the SVG
// map's view (both are Web Mercator, cameraFor), which stays the one that draws and answers clicks. If MapLibre
// cannot start (no WebGL, a library missing) the page says so once and keeps the SVG map as it is.
//
// The state of the basemap is on its element for the browser tests: data-state (loading, ready, failed) and,
// after each move, data-center and data-zoom; the MapLibre map is its ``maplibreMap`` property.

import { showMessage } from "./page.js";

export const VENDOR = "/static/vendor/";
const SCRIPTS = ["maplibre-gl-csp.js", "pmtiles.js"];
const WORKER = `${VENDOR}maplibre-gl-csp-worker.js`;
/** Pixels of the Web Mercator world at zoom 0 in MapLibre (its tiles are 512 px). */
const WORLD_PX = 512;

/** Muted colours: the basemap is context under the cells and zones, never louder than them. */
const COLOURS = { background: "#273142", earth: "#273142", landuse: "#2c3b36", water: "#1e3f63", road: "#56627a", place: "#8392ab", other: "#3b475b" };
/** Layer names of the two common vector schemas (Protomaps basemaps, OpenMapTiles), by what they are drawn as. */
const KNOWN = {
  earth: ["earth"],
  landuse: ["landuse", "landcover", "park", "natural"],
  water: ["water", "waterway"],
  road: ["roads", "transportation"],
  place: ["places", "place"],
};

let libraries = null; // the one promise of the loaded libraries
const maps = new WeakMap(); // host element -> its basemap

/** MapLibre's camera for the SVG map's view (geo.js viewOf): the same centre, and pixels per degree of longitude
 * ``k * scale`` = 512 * 2^zoom / 360. */
export function cameraFor({ cx, cy, k, scale }) {
  return { center: [cx, cy], zoom: Math.log2((k * scale * 360) / WORLD_PX) };
}

/**
 * The MapLibre style of a basemap as /api/me gives it ({kind, url, tile_type}); ``layers`` are a vector archive's
 * layer names (its metadata's vector_layers), or null when unknown. ``origin`` resolves a same-origin URL.
 */
export function styleFor(basemap, layers = null, origin = "") {
  if (basemap.kind === "style") return basemap.url;
  const url = basemap.url.startsWith("/") ? origin + basemap.url : basemap.url;
  const raster = basemap.tile_type !== "mvt";
  const source = basemap.kind === "pmtiles" ? { url: `pmtiles://${url}` } : { tiles: [url] };
  if (basemap.min_zoom != null) Object.assign(source, { minzoom: basemap.min_zoom, maxzoom: basemap.max_zoom });
  const style = { version: 8, sources: {}, layers: [{ id: "background", type: "background", paint: { "background-color": COLOURS.background } }] };
  if (raster) {
    style.sources.basemap = { type: "raster", tileSize: 256, ...source };
    style.layers.push({ id: "raster", type: "raster", source: "basemap" });
    return style;
  }
  style.sources.basemap = { type: "vector", ...source };
  style.layers.push(...vectorLayers(layers));
  return style;
}

/** Layers for the vector tiles' ``names``: water, land use, roads and places when it has them (or when unknown),
 * otherwise a fill, line and circle of every layer in muted colours. Place names are not written: no glyphs are
 * served (the SVG map names the jurisdiction's areas), so places are dots. */
function vectorLayers(names) {
  const known = (kind) => KNOWN[kind].filter((n) => !names || names.includes(n));
  const out = [];
  const polygons = ["match", ["geometry-type"], ["Polygon", "MultiPolygon"], true, false];
  const lines = ["match", ["geometry-type"], ["LineString", "MultiLineString"], true, false];
  const points = ["match", ["geometry-type"], ["Point", "MultiPoint"], true, false];
  const add = (id, type, layer, filter, paint) => out.push({ id, type, source: "basemap", "source-layer": layer, filter, paint });
  for (const n of known("earth")) add(`earth-${n}`, "fill", n, polygons, { "fill-color": COLOURS.earth });
  for (const n of known("landuse")) add(`landuse-${n}`, "fill", n, polygons, { "fill-color": COLOURS.landuse, "fill-opacity": 0.8 });
  for (const n of known("water")) {
    add(`water-${n}`, "fill", n, polygons, { "fill-color": COLOURS.water });
    add(`waterline-${n}`, "line", n, lines, { "line-color": COLOURS.water, "line-width": 1.2 });
  }
  for (const n of known("road")) add(`road-${n}`, "line", n, lines, { "line-color": COLOURS.road, "line-width": ["interpolate", ["linear"], ["zoom"], 8, 0.4, 14, 1.6, 18, 4] });
  for (const n of known("place")) add(`place-${n}`, "circle", n, points, { "circle-color": COLOURS.place, "circle-radius": 2.5 });
  if (out.length || !names) return out;
  for (const n of names) {
    add(`fill-${n}`, "fill", n, polygons, { "fill-color": COLOURS.other, "fill-opacity": 0.5 });
    add(`line-${n}`, "line", n, lines, { "line-color": COLOURS.road, "line-width": 0.8 });
    add(`point-${n}`, "circle", n, points, { "circle-color": COLOURS.place, "circle-radius": 2 });
  }
  return out;
}

function loadScript(src) {
  return new Promise((resolve, reject) => {
    const s = document.createElement("script");
    s.src = src;
    s.addEventListener("load", resolve);
    s.addEventListener("error", () => reject(new Error(`${src} could not be loaded`)));
    document.head.append(s);
  });
}

/** MapLibre and pmtiles, loaded once; the pmtiles:// protocol registered. */
function loadLibraries() {
  if (!libraries) {
    const css = document.createElement("link");
    css.rel = "stylesheet";
    css.href = `${VENDOR}maplibre-gl.css`;
    document.head.append(css);
    libraries = Promise.all(SCRIPTS.map((f) => loadScript(VENDOR + f))).then(() => {
      const { maplibregl, pmtiles } = window;
      maplibregl.setWorkerUrl(WORKER);
      const protocol = new pmtiles.Protocol();
      maplibregl.addProtocol("pmtiles", protocol.tile);
      return { maplibregl, pmtiles, protocol };
    });
  }
  return libraries;
}

/** {layers, attribution} of a PMTiles archive's metadata: its vector layers' names (null when not listed) and its
 * attribution (MapLibre shows it; the pmtiles protocol does not pass it on). */
async function archiveInfo(libs, url) {
  const archive = new libs.pmtiles.PMTiles(url);
  libs.protocol.add(archive); // one reader (and its cache of directories) for the metadata and the tiles
  const meta = (await archive.getMetadata()) || {};
  const layers = Array.isArray(meta.vector_layers) ? meta.vector_layers.map((l) => l.id) : null;
  return { layers, attribution: typeof meta.attribution === "string" ? meta.attribution : null };
}

/**
 * Draw ``basemap`` (from /api/me) under the SVG map in ``host`` (#map), its camera on ``view``: {cx, cy, k, scale}
 * of geo.js viewOf and the SVG's size {w, h}.
 * Call on every render: the first call creates the map (asynchronously), later ones move it. Returns false once
 * the basemap has failed (the caller draws the SVG map's own background), true otherwise.
 */
export function drawBasemap(host, basemap, view) {
  let entry = maps.get(host);
  if (!entry) {
    const div = document.createElement("div");
    div.className = "basemap";
    div.setAttribute("aria-hidden", "true");
    div.dataset.state = "loading";
    entry = { div, map: null, view, failed: false };
    maps.set(host, entry);
    start(entry, basemap);
  }
  if (entry.failed) return false;
  if (entry.div.parentNode !== host) host.prepend(entry.div);
  entry.view = view;
  if (entry.map) follow(entry);
  return true;
}

async function start(entry, basemap) {
  try {
    const libs = await loadLibraries();
    const url = basemap.url.startsWith("/") ? location.origin + basemap.url : basemap.url;
    const info = basemap.kind === "pmtiles" ? await archiveInfo(libs, url) : { layers: null, attribution: null };
    const style = styleFor(basemap, info.layers, location.origin);
    if (info.attribution) style.sources.basemap.attribution = info.attribution;
    const map = new libs.maplibregl.Map({
      container: entry.div,
      style,
      interactive: false,
      fadeDuration: 0,
      minZoom: 0,
      maxZoom: 24,
      ...cameraFor(entry.view),
    });
    entry.map = map;
    entry.div.maplibreMap = map;
    map.on("load", () => {
      entry.div.dataset.state = "ready";
    });
    follow(entry);
  } catch (err) {
    fail(entry, err);
  }
}

function follow(entry) {
  const { map, div, view } = entry;
  // the SVG's size, not the panel's (which may have changed since it was drawn): the two centres must coincide.
  // CSSOM, which the CSP allows (it refuses style attributes in markup); MapLibre sizes its own nodes the same way.
  div.style.width = `${view.w}px`;
  div.style.height = `${view.h}px`;
  map.resize(); // MapLibre's canvas follows its element before the camera is set
  const camera = cameraFor(entry.view);
  map.jumpTo(camera);
  div.dataset.center = camera.center.map((v) => v.toFixed(6)).join(",");
  div.dataset.zoom = camera.zoom.toFixed(4);
}

function fail(entry, err) {
  entry.failed = true;
  entry.div.dataset.state = "failed";
  entry.div.remove();
  const host = document.querySelector("#map rect.map-bg");
  if (host) host.classList.remove("veil");
  const why = err && err.message ? err.message : String(err);
  showMessage(`The basemap could not be drawn (${why}); the map is shown without it.`, "error");
}
