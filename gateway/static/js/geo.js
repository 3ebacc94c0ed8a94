// Map arithmetic (pure: numbers in, numbers out): shapes of zones and cells, bounding boxes, the projection,
// which tiles cover the view, the scale bar's length, the colour classes and where labels fit.

export const KM_PER_DEGREE = 111.32;
/** About 1.3 km: the tightest zoom, so one zone is not a screen-filling blob. */
export const MIN_SPAN_DEG = 0.012;
export const PALETTE_STEPS = 5;

/** Shapes of a GeoJSON geometry: {ring: [[lng, lat], ...]} for polygons, {point, radius_m} for points. */
export function geometryShapes(geom, radius) {
  if (!geom) return [];
  if (geom.type === "Polygon") return geom.coordinates.map((ring) => ({ ring }));
  if (geom.type === "MultiPolygon") return geom.coordinates.flatMap((poly) => poly.map((ring) => ({ ring })));
  if (geom.type === "Point") return [{ point: geom.coordinates, radius_m: radius }];
  return [];
}

/** A cell's boundary ([[lat, lng], ...], as h3 gives it) as a ring of [lng, lat]. */
export function cellRing(cell) {
  return cell.boundary.map(([lat, lng]) => [lng, lat]);
}

export const emptyBox = () => [Infinity, Infinity, -Infinity, -Infinity];

function extend(box, lng, lat) {
  box[0] = Math.min(box[0], lng);
  box[1] = Math.min(box[1], lat);
  box[2] = Math.max(box[2], lng);
  box[3] = Math.max(box[3], lat);
}

/** [west, south, east, north] of ``shapes``, grown from ``box``. */
export function shapesBox(shapes, box = emptyBox()) {
  for (const s of shapes) {
    if (s.ring) for (const [lng, lat] of s.ring) extend(box, lng, lat);
    else extend(box, s.point[0], s.point[1]);
  }
  return box;
}

/** Upper bounds of the colour classes for counts 1..max (at most PALETTE_STEPS, no empty class). */
export function breaksFor(max) {
  const ubs = [];
  for (let i = 1; i <= PALETTE_STEPS; i += 1) {
    const ub = Math.max(1, Math.round(1 + ((max - 1) * i) / PALETTE_STEPS));
    if (!ubs.includes(ub)) ubs.push(ub);
  }
  return ubs;
}

/** y of the Web Mercator projection, in degrees (equal to the latitude near the equator). */
export function mercatorY(lat) {
  return (Math.log(Math.tan(Math.PI / 4 + (lat * Math.PI) / 360)) * 180) / Math.PI;
}

/**
 * The view of ``box`` in a w x h pixel map: at least MIN_SPAN_DEG across, a margin of 8% on each side.
 * Returns {cx, cy, k, scale, project}: ``scale`` is pixels per degree of latitude at the centre and
 * ``project(lng, lat)`` gives [x, y] in pixels (Web Mercator, scaled so that the centre keeps its km).
 */
export function viewOf(box, w, h) {
  const cx = (box[0] + box[2]) / 2;
  const cy = (box[1] + box[3]) / 2;
  const k = Math.cos((cy * Math.PI) / 180);
  const spanX = Math.max((box[2] - box[0]) * k, MIN_SPAN_DEG) * 1.16;
  const spanY = Math.max(box[3] - box[1], MIN_SPAN_DEG) * 1.16;
  const scale = Math.min(w / spanX, h / spanY);
  const my0 = mercatorY(cy);
  const project = (lng, lat) => [w / 2 + (lng - cx) * k * scale, h / 2 - (mercatorY(lat) - my0) * k * scale];
  return { cx, cy, k, scale, project };
}

/**
 * The raster tiles that cover a w x h view centred on (cx, cy): [{z, x, y, left, top, size}].
 * ``perUnit`` is pixels per unit of the Web Mercator square, so a tile of zoom z is perUnit / 2^z pixels wide.
 */
export function tilesFor(w, h, cx, cy, perUnit) {
  const z = Math.max(0, Math.min(19, Math.round(Math.log2(perUnit / 256))));
  const n = 2 ** z;
  const uc = (cx + 180) / 360;
  const vc = 0.5 - mercatorY(cy) / 360;
  const size = perUnit / n;
  const i0 = Math.floor((uc - w / 2 / perUnit) * n);
  const i1 = Math.floor((uc + w / 2 / perUnit) * n);
  const j0 = Math.max(0, Math.floor((vc - h / 2 / perUnit) * n));
  const j1 = Math.min(n - 1, Math.floor((vc + h / 2 / perUnit) * n));
  const out = [];
  for (let i = i0; i <= i1; i += 1) {
    for (let j = j0; j <= j1; j += 1) {
      out.push({ z, x: ((i % n) + n) % n, y: j, left: w / 2 + (i / n - uc) * perUnit, top: h / 2 + (j / n - vc) * perUnit, size });
    }
  }
  return out;
}

/** The round length (km) of a scale bar about a sixth of the map's width. */
export function scaleKm(w, pxPerKm) {
  const target = w / 6 / pxPerKm;
  return [0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100].reduce((best, v) => (Math.abs(v - target) < Math.abs(best - target) ? v : best));
}

/**
 * Labels {x, y, text, hot, selected, area} that fit: alerting and selected ones first (then the biggest areas), none overlapping one already
 * placed (nor a box of ``boxes``, which the placed ones are added to), names near an edge pulled inside.
 * Returns the placed labels with their adjusted x, y.
 */
export function placeLabels(labels, w, h, boxes = []) {
  const CHAR_PX = 6.3; // average advance of an 11px sans-serif glyph
  const placed = [];
  const order = [...labels].sort((a, b) => Number(b.hot) - Number(a.hot) || Number(b.selected) - Number(a.selected) || (b.area || 0) - (a.area || 0) || a.y - b.y);
  for (const l of order) {
    if (l.x < 0 || l.x > w || l.y < 0 || l.y > h + 12) continue; // the zone is off the map
    const half = (l.text.length * CHAR_PX) / 2;
    const x = Math.min(Math.max(l.x, half + 4), w - half - 4);
    const y = Math.min(Math.max(l.y, 14), h - 4);
    const box = [x - half - 2, y - 12, x + half + 2, y + 3];
    if (boxes.some((p) => box[0] < p[2] && p[0] < box[2] && box[1] < p[3] && p[1] < box[3])) continue;
    boxes.push(box);
    placed.push({ ...l, x, y });
  }
  return placed;
}

/** A vertex's key: rounded to 1e-7° (about 1 cm), so the corner two cells share is one key. */
const vertexKey = ([x, y]) => `${x.toFixed(7)},${y.toFixed(7)}`;

/**
 * The outline of the union of ``rings`` (cells' rings of [lng, lat], open or closed) as rings of [lng, lat]:
 * the edges that belong to exactly one ring, chained. Cells that touch give one ring; holes come out as rings too.
 */
export function mergedRings(rings) {
  const edges = new Map(); // undirected key -> {a, b, n}
  for (const raw of rings) {
    const ring = raw.length > 1 && vertexKey(raw[0]) === vertexKey(raw[raw.length - 1]) ? raw.slice(0, -1) : raw;
    for (let i = 0; i < ring.length; i += 1) {
      const a = ring[i];
      const b = ring[(i + 1) % ring.length];
      const ka = vertexKey(a);
      const kb = vertexKey(b);
      if (ka === kb) continue;
      const key = ka < kb ? `${ka}|${kb}` : `${kb}|${ka}`;
      const e = edges.get(key);
      if (e) e.n += 1;
      else edges.set(key, { a, b, ka, kb, n: 1 });
    }
  }
  const from = new Map(); // start vertex key -> edges of the outline starting there
  for (const e of edges.values()) {
    if (e.n !== 1) continue;
    if (!from.has(e.ka)) from.set(e.ka, []);
    from.get(e.ka).push(e);
  }
  const out = [];
  for (const starts of from.values()) {
    while (starts.length) {
      const first = starts.pop();
      const ring = [first.a];
      let e = first;
      for (let guard = 0; guard < edges.size && e.kb !== first.ka; guard += 1) {
        ring.push(e.b);
        const next = from.get(e.kb);
        if (!next || !next.length) break;
        e = next.pop();
      }
      ring.push(first.a);
      out.push(ring);
    }
  }
  return out;
}

/** The area (px², positive) of a ring of [x, y] pixels. */
export function ringArea(pts) {
  let s = 0;
  for (let i = 0; i < pts.length; i += 1) {
    const [x1, y1] = pts[i];
    const [x2, y2] = pts[(i + 1) % pts.length];
    s += x1 * y2 - x2 * y1;
  }
  return Math.abs(s) / 2;
}

/**
 * A point well inside a ring of [x, y] pixels, where its name is written: the middle of the widest span of the
 * horizontal line through the middle of its height (inside even when the ring is concave, unlike its centroid).
 */
export function labelPoint(pts) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const [, y] of pts) {
    lo = Math.min(lo, y);
    hi = Math.max(hi, y);
  }
  const y = (lo + hi) / 2 + 1e-6; // off any vertex
  const xs = [];
  for (let i = 0; i < pts.length; i += 1) {
    const [x1, y1] = pts[i];
    const [x2, y2] = pts[(i + 1) % pts.length];
    if ((y1 <= y) !== (y2 <= y)) xs.push(x1 + ((y - y1) * (x2 - x1)) / (y2 - y1));
  }
  xs.sort((a, b) => a - b);
  let best = null;
  for (let i = 0; i + 1 < xs.length; i += 2) {
    if (!best || xs[i + 1] - xs[i] > best[1] - best[0]) best = [xs[i], xs[i + 1]];
  }
  return best ? [(best[0] + best[1]) / 2, y] : null;
}

/** Classes of a cell's calls against its usual, in the legend's order (most below to most above). */
export const USUAL_CLASSES = ["below", "about", "above", "well-above"];
export const USUAL_WORDS = { below: "below the usual", about: "about the usual", above: "half again or more", "well-above": "twice or more" };

/**
 * A cell's calls ``count`` against its ``usual`` (the mean of the same window on the previous days): one of
 * USUAL_CLASSES, or null when there is no usual to compare with. Where almost none are usual (below 0.5), three
 * calls or more are well above it and fewer are about it.
 */
export function usualClass(count, usual) {
  if (typeof count !== "number" || typeof usual !== "number") return null;
  if (usual < 0.5) return count >= 3 ? "well-above" : "about";
  const r = count / usual;
  if (r >= 2) return "well-above";
  if (r >= 1.5) return "above";
  if (r >= 2 / 3) return "about";
  return "below";
}
