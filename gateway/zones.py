"""Named zones: the places partners and event commanders are entitled to see (pure: no I/O besides reading files).

A :class:`Zone` is a GeoJSON geometry plus the set of H3 cells (resolution 8,
the detectors' resolution) that cover it. Alerts and counts carry res-8 cells,
so "does this alert touch this zone" is a set intersection.

Zones come from two places:

* configuration files (:func:`load_zone_files`): one GeoJSON FeatureCollection
  per partner, e.g. ``infra/zones/septa-stations.geojson``. Each Feature has
  properties ``id``, ``name``, ``kind`` (station, line, school, area) and
  ``agency``. Polygons and MultiPolygons are covered by the cells they overlap;
  Points (a station, a school) take the cells within ``radius_m`` (default 300 m).
* event zones (:func:`event_zone`), drawn by a supervisor for a parade or a
  game, active between two times; stored in Redis as :meth:`Zone.to_json`.

Examples
--------
>>> square = {"type": "Polygon", "coordinates": [[[-75.3445, 40.1127], [-75.3441, 40.1127],
...           [-75.3441, 40.1130], [-75.3445, 40.1130], [-75.3445, 40.1127]]]}
>>> sorted(polygon_cells(square))  # smaller than a hexagon, still one cell
['882aac9599fffff']
>>> z = event_zone(id="parade", name="Parade route", polygon=square, starts_at=100.0, ends_at=200.0, agency="NPD")
>>> z.active(150.0), z.active(200.0), Zone.from_json(z.to_json()) == z
(True, False, True)
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import h3

#: Resolution of zone cells: the detectors' (``detectors.types.DETECTION_RESOLUTION``).
ZONE_RESOLUTION = 8
KINDS = ("station", "line", "school", "event", "area")
#: Kinds a configuration file may hold; event zones are made with :func:`event_zone`.
FILE_KINDS = ("station", "line", "school", "area")
MAX_VERTICES = 2000
MAX_CELLS = 5000
DEFAULT_RADIUS_M = 300.0
MAX_RADIUS_M = 5000.0
MAX_EVENT_S = 14 * 24 * 3600.0
MAX_TEXT = 100


class Bounds(Protocol):
    """A bounding box in degrees, as :class:`streams.ingest.schema.Jurisdiction` is."""

    # Read-only properties, so that a frozen dataclass (Jurisdiction) satisfies the protocol.
    @property
    def min_lat(self) -> float: ...
    @property
    def min_lng(self) -> float: ...
    @property
    def max_lat(self) -> float: ...
    @property
    def max_lng(self) -> float: ...

    def contains(self, lat: float, lng: float) -> bool: ...


class ZoneError(ValueError):
    """A zone file, geometry or event zone that cannot be accepted; the message names what and where."""


class GeometryError(ZoneError):
    """The GeoJSON geometry itself is invalid (not the zone's other fields): ``bad_polygon`` on the wire."""


@dataclass(frozen=True)
class Zone:
    """A named place and the res-8 cells covering it.

    ``active_from`` / ``active_until`` bound an event zone in epoch seconds
    (``None``: unbounded); ``threshold`` is the surge score an event zone's
    surge test uses (``None``: the detector's default); ``floor`` is the
    lowest threshold a commander may set (a supervisor's choice; ``None``:
    the supervisor's threshold is the floor).
    """

    id: str
    name: str
    kind: str
    agency: str
    cells: frozenset[str]
    polygon: dict[str, Any]
    active_from: float | None = None
    active_until: float | None = None
    threshold: float | None = None
    floor: float | None = None
    #: extra calls an hour expected while an event zone is active (``None``: none announced); the forecaster adds them
    expected_calls_per_hour: float | None = None

    def active(self, now: float) -> bool:
        """Whether the zone is in force at ``now``: ``active_from <= now < active_until``."""
        return (self.active_from is None or self.active_from <= now) and (self.active_until is None or now < self.active_until)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "agency": self.agency,
            "cells": sorted(self.cells),
            "polygon": self.polygon,
            "active_from": self.active_from,
            "active_until": self.active_until,
            "threshold": self.threshold,
            "floor": self.floor,
            "expected_calls_per_hour": self.expected_calls_per_hour,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Zone:
        """The zone :meth:`to_json` gave; ``ZoneError`` naming the bad field otherwise."""
        if not isinstance(data, dict):
            raise ZoneError(f"a zone is a JSON object, got {type(data).__name__}")
        missing = [k for k in ("id", "name", "kind", "agency", "cells", "polygon") if k not in data]
        if missing:
            raise ZoneError(f"zone JSON lacks {', '.join(missing)}")
        zid = _text(data["id"], "zone id")
        cells = data["cells"]
        if not isinstance(cells, list) or not cells or not all(_is_zone_cell(c) for c in cells):
            raise ZoneError(f"zone {zid!r}: cells must be a non-empty list of H3 res-{ZONE_RESOLUTION} cell ids")
        if data["kind"] not in KINDS:
            raise ZoneError(f"zone {zid!r}: kind must be one of {', '.join(KINDS)}, got {data['kind']!r}")
        if not isinstance(data["polygon"], dict):
            raise ZoneError(f"zone {zid!r}: polygon must be a GeoJSON geometry object")
        return cls(
            id=zid,
            name=_text(data["name"], f"zone {zid!r} name"),
            kind=data["kind"],
            agency=_text(data["agency"], f"zone {zid!r} agency"),
            cells=frozenset(cells),
            polygon=data["polygon"],
            active_from=_optional_number(data.get("active_from"), f"zone {zid!r} active_from"),
            active_until=_optional_number(data.get("active_until"), f"zone {zid!r} active_until"),
            threshold=_optional_number(data.get("threshold"), f"zone {zid!r} threshold"),
            floor=_optional_number(data.get("floor"), f"zone {zid!r} floor"),
            expected_calls_per_hour=_optional_number(data.get("expected_calls_per_hour"), f"zone {zid!r} expected_calls_per_hour"),
        )


def polygon_cells(geometry: object, res: int = ZONE_RESOLUTION, max_cells: int = MAX_CELLS) -> frozenset[str]:
    """The H3 cells at ``res`` that overlap a GeoJSON Polygon or MultiPolygon (positions are ``[lng, lat]``).

    A cell counts when any part of it overlaps the shape, so an outline smaller
    than a hexagon (a station, a schoolyard) still maps to the cell(s) it lies in.
    Raises :class:`GeometryError` for anything but a valid, closed, finite geometry
    of at most :data:`MAX_VERTICES` positions covering at most ``max_cells`` cells
    whose rings neither cross nor touch themselves or each other (stricter than
    OGC simple features, which let a hole touch its shell at one point; whether
    a hole lies inside its shell is not checked).

    >>> polygon_cells({"type": "Point", "coordinates": [-75.3, 40.1]})
    Traceback (most recent call last):
    ...
    gateway.zones.GeometryError: geometry type must be Polygon or MultiPolygon, got 'Point'
    >>> polygon_cells({"type": "Polygon", "coordinates": [[[-75.4, 40.0], [-75.0, 40.0], [-75.0, 40.4], [-75.4, 40.0]]]}, max_cells=1000)
    Traceback (most recent call last):
    ...
    gateway.zones.GeometryError: polygon covers 1127 cells at res 8, more than the 1000 allowed
    >>> bowtie = [[-75.30, 40.10], [-75.29, 40.11], [-75.29, 40.10], [-75.30, 40.11], [-75.30, 40.10]]
    >>> polygon_cells({"type": "Polygon", "coordinates": [bowtie]})
    Traceback (most recent call last):
    ...
    gateway.zones.GeometryError: polygon ring 0 crosses itself: its edges 0 and 2 meet; a ring must be a simple closed line
    """
    try:
        return _polygon_cells(geometry, res, max_cells)
    except GeometryError:
        raise
    except ZoneError as exc:  # the position and ring checks are shared with Point features
        raise GeometryError(str(exc)) from None


def _polygon_cells(geometry: object, res: int, max_cells: int) -> frozenset[str]:
    if not isinstance(geometry, dict):
        raise ZoneError(f"geometry must be a GeoJSON object, got {type(geometry).__name__}")
    kind = geometry.get("type")
    coords = geometry.get("coordinates")
    if kind == "Polygon":
        polygons = [coords]
    elif kind == "MultiPolygon":
        if not isinstance(coords, list) or not coords:
            raise ZoneError("MultiPolygon coordinates must be a non-empty list of polygons")
        polygons = coords
    else:
        raise ZoneError(f"geometry type must be Polygon or MultiPolygon, got {kind!r}")
    vertices = 0
    rings: list[tuple[str, list[tuple[int, int]]]] = []
    for p, polygon in enumerate(polygons):
        where = "polygon" if kind == "Polygon" else f"polygon {p}"
        if not isinstance(polygon, list) or not polygon:
            raise ZoneError(f"{where}: coordinates must be a non-empty list of linear rings")
        for r, ring in enumerate(polygon):
            # counted before the positions are checked: a huge ring is refused before it is walked
            if isinstance(ring, list) and vertices + len(ring) > MAX_VERTICES:
                raise ZoneError(f"geometry has more than {MAX_VERTICES} positions; simplify it")
            vertices += _check_ring(ring, f"{where} ring {r}")
            rings.append((f"{where} ring {r}", _distinct(ring, f"{where} ring {r}")))
    _check_simple(rings)
    shape = h3.geo_to_h3shape({"type": kind, "coordinates": coords})
    # A cheap lower bound first, so that a continent is refused before millions of cells are made:
    # every cell fully inside at a coarser resolution has 7 children per level, all overlapping.
    for coarse in (res - 6, res - 3):
        if coarse >= 0:
            at_least = len(h3.h3shape_to_cells_experimental(shape, coarse, "full")) * 7 ** (res - coarse)
            if at_least > max_cells:
                raise ZoneError(f"polygon covers at least {at_least} cells at res {res}, more than the {max_cells} allowed")
    cells = frozenset(h3.h3shape_to_cells_experimental(shape, res, "overlap"))
    if len(cells) > max_cells:
        raise ZoneError(f"polygon covers {len(cells)} cells at res {res}, more than the {max_cells} allowed")
    if not cells:
        raise ZoneError("polygon covers no cell")
    return cells


def point_cells(lng: float, lat: float, radius_m: float = DEFAULT_RADIUS_M, res: int = ZONE_RESOLUTION) -> frozenset[str]:
    """The cells around a point: the grid disk of its cell with ``k = ceil(radius_m / average edge length)``.

    This over-covers (a res-8 disk of k=1 spans about 1.5 km) rather than miss
    a cell a call within ``radius_m`` would fall in.

    >>> len(point_cells(-75.3443, 40.1128, 300.0))
    7
    """
    _check_position([lng, lat], "point")
    if isinstance(radius_m, bool) or not isinstance(radius_m, int | float) or not 0 < radius_m <= MAX_RADIUS_M:
        raise ZoneError(f"radius_m must be a number in (0, {MAX_RADIUS_M:g}], got {radius_m!r}")
    k = math.ceil(radius_m / h3.average_hexagon_edge_length(res, unit="m"))
    return frozenset(h3.grid_disk(h3.latlng_to_cell(lat, lng, res), k))


def event_zone(
    *,
    id: str,
    name: str,
    polygon: dict[str, Any],
    starts_at: float,
    ends_at: float,
    agency: str,
    threshold: float | None = None,
    within: Bounds | None = None,
    floor: float | None = None,
    expected_calls_per_hour: float | None = None,
) -> Zone:
    """An event zone active from ``starts_at`` until ``ends_at`` (at most 14 days); ``ZoneError`` otherwise.

    With ``within`` (the jurisdiction's bounding box, :class:`streams.ingest.schema.Jurisdiction`),
    every position of the polygon must lie inside it: the detectors never see a call
    outside the jurisdiction, so a zone there would watch nothing. An invalid polygon
    raises :class:`GeometryError`.

    >>> from streams.ingest.schema import Jurisdiction
    >>> square = {"type": "Polygon", "coordinates": [[[-74.01, 40.7], [-74.0, 40.7], [-74.0, 40.71], [-74.01, 40.7]]]}
    >>> event_zone(id="far", name="Far", polygon=square, starts_at=0, ends_at=60, agency="A",
    ...            within=Jurisdiction(39.95, -75.7, 40.45, -75.0))
    Traceback (most recent call last):
    ...
    gateway.zones.GeometryError: event zone 'far': position [-74.01, 40.7] is outside the jurisdiction (lat 39.95..40.45, lng -75.7..-75.0)
    """
    zid = _text(id, "event zone id")
    start = _optional_number(starts_at, "starts_at")
    end = _optional_number(ends_at, "ends_at")
    if start is None or end is None:
        raise ZoneError("an event zone needs both starts_at and ends_at (epoch seconds)")
    if end <= start:
        raise ZoneError(f"event zone {zid!r}: ends_at ({end}) must be after starts_at ({start})")
    if end - start > MAX_EVENT_S:
        raise ZoneError(f"event zone {zid!r} lasts {(end - start) / 86400:.1f} days, at most {MAX_EVENT_S / 86400:.0f} are allowed")
    score = _optional_number(threshold, "threshold")
    if score is not None and score <= 0:
        raise ZoneError(f"event zone {zid!r}: threshold must be a positive score or None, got {threshold!r}")
    low = _optional_number(floor, "floor")
    if low is not None and (low <= 0 or (score is not None and score < low)):
        raise ZoneError(f"event zone {zid!r}: floor must be a positive score no higher than the threshold, got {floor!r}")
    load = _optional_number(expected_calls_per_hour, "expected_calls_per_hour")
    if load is not None and load < 0:
        raise ZoneError(f"event zone {zid!r}: expected_calls_per_hour must be 0 or more, got {expected_calls_per_hour!r}")
    try:
        cells = polygon_cells(polygon)
    except ZoneError as exc:
        raise GeometryError(f"event zone {zid!r}: {exc}") from None
    if within is not None:
        for pos in _positions(polygon):
            if not within.contains(pos[1], pos[0]):
                raise GeometryError(
                    f"event zone {zid!r}: position [{pos[0]}, {pos[1]}] is outside the jurisdiction "
                    f"(lat {within.min_lat}..{within.max_lat}, lng {within.min_lng}..{within.max_lng})"
                )
    return Zone(
        id=zid,
        name=_text(name, f"event zone {zid!r} name"),
        kind="event",
        agency=_text(agency, f"event zone {zid!r} agency"),
        cells=cells,
        polygon=polygon,
        active_from=start,
        active_until=end,
        threshold=score,
        floor=low,
        expected_calls_per_hour=load,
    )


def load_zone_files(paths: Iterable[Path]) -> dict[str, Zone]:
    """Every zone in these GeoJSON FeatureCollections, by id; ``ZoneError`` naming the file and feature otherwise."""
    zones: dict[str, Zone] = {}
    origin: dict[str, str] = {}
    for path in paths:
        path = Path(path)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ZoneError(f"{path}: cannot read a GeoJSON file ({exc})") from None
        if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection" or not isinstance(doc.get("features"), list):
            raise ZoneError(f"{path}: expected a GeoJSON FeatureCollection with a 'features' list")
        for i, feature in enumerate(doc["features"]):
            zone = _feature_zone(feature, f"{path}: feature {i}")
            if zone.id in zones:
                raise ZoneError(f"{path}: feature {i}: zone id {zone.id!r} is already defined in {origin[zone.id]}")
            zones[zone.id] = zone
            origin[zone.id] = f"{path} feature {i}"
    return zones


def _feature_zone(feature: object, where: str) -> Zone:
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        raise ZoneError(f"{where}: expected a GeoJSON Feature")
    props = feature.get("properties")
    if not isinstance(props, dict):
        raise ZoneError(f"{where}: has no properties object")
    for name in ("id", "name", "kind", "agency"):
        if name not in props:
            raise ZoneError(f"{where}: missing property {name!r} (required: id, name, kind, agency)")
    try:
        zid = _text(props["id"], "property 'id'")
        where = f"{where} ({zid})"
        if props["kind"] not in FILE_KINDS:
            raise ZoneError(f"property 'kind' must be one of {', '.join(FILE_KINDS)}, got {props['kind']!r}")
        geometry: Any = feature.get("geometry")  # unchecked JSON: each branch below validates it
        if isinstance(geometry, dict) and geometry.get("type") == "Point":
            coords: Any = geometry.get("coordinates")  # _check_position raises unless it is [lng, lat]
            _check_position(coords, "point")
            cells = point_cells(coords[0], coords[1], props.get("radius_m", DEFAULT_RADIUS_M))
            # what is drawn is what is matched: the outline of the cells
            outline = json.loads(json.dumps(h3.cells_to_geo(cells)))
        else:
            cells, outline = polygon_cells(geometry), geometry
        return Zone(
            id=zid,
            name=_text(props["name"], "property 'name'"),
            kind=props["kind"],
            agency=_text(props["agency"], "property 'agency'"),
            cells=cells,
            polygon=outline,
        )
    except ZoneError as exc:
        raise ZoneError(f"{where}: {exc}") from None


def _check_ring(ring: object, where: str) -> int:
    if not isinstance(ring, list) or len(ring) < 4:
        n = len(ring) if isinstance(ring, list) else type(ring).__name__
        raise ZoneError(f"{where}: a linear ring needs at least 4 positions (the first repeated last), got {n}")
    for j, pos in enumerate(ring):
        _check_position(pos, f"{where} position {j}")
    if list(ring[0][:2]) != list(ring[-1][:2]):
        raise ZoneError(f"{where}: ring is not closed: first position {ring[0]} differs from last {ring[-1]}")
    return len(ring)


def _distinct(ring: list[list[float]], where: str) -> list[tuple[int, int]]:
    """A checked, closed ring's positions on the :data:`_GRID` (see :func:`_check_simple`), without
    repeats of the previous one or the closing one."""
    out: list[tuple[int, int]] = []
    for pos in ring:
        p = (round(pos[0] * _GRID), round(pos[1] * _GRID))
        if not out or p != out[-1]:
            out.append(p)
    if len(out) > 1 and out[-1] == out[0]:
        out.pop()
    if len(out) < 3:
        raise ZoneError(f"{where}: a linear ring needs at least 3 distinct positions, got {len(out)}")
    return out


def _positions(geometry: dict[str, Any]) -> Iterator[list[float]]:
    """Every position of a geometry :func:`polygon_cells` accepted."""
    polygons = [geometry["coordinates"]] if geometry["type"] == "Polygon" else geometry["coordinates"]
    for polygon in polygons:
        for ring in polygon:
            yield from ring


# A ring is simple when no two of its edges meet except consecutive ones at their
# shared vertex; two rings must not meet at all. The check is the Shamos-Hoey sweep
# (M. I. Shamos and D. Hoey, "Geometric intersection problems", FOCS 1976; as in
# D. Sunday, "Intersections for a Set of Segments", geomalgorithms.com): edges enter
# a y-ordered list at their left end and leave it at their right end, and only
# edges that become neighbours in that list are tested. Until the first contact
# the order is consistent, so the first one is always found: O(n log n) tests
# instead of n^2 / 2, which matters when anyone may send 2,000 positions ten times
# a second. Positions are snapped to integers on a 1e-9 degree grid (about 0.1 mm)
# so that every orientation test is exact: with floats, nearly collinear edges
# give inconsistent answers and the sweep can miss a crossing.

#: positions per degree of the grid the simplicity check works on
_GRID = 10**9

_Edge = tuple[int, int, int, int, int, int, int]  # left x, y, right x, y, ring, index in ring, ring length


def _orient(ax: int, ay: int, bx: int, by: int, cx: int, cy: int) -> int:
    """Twice the signed area of a, b, c: > 0 when c is left of a -> b, 0 when collinear."""
    return (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)


def _on(ax: int, ay: int, bx: int, by: int, cx: int, cy: int) -> bool:
    """Whether c, collinear with a and b, lies on the segment a-b."""
    return min(ax, bx) <= cx <= max(ax, bx) and min(ay, by) <= cy <= max(ay, by)


def _meet(e: _Edge, f: _Edge) -> str | None:
    """How two edges meet: ``cross`` (interiors cross), ``overlap`` (collinear along a stretch), ``touch`` (at a point), or None."""
    ax, ay, bx, by = e[:4]
    cx, cy, dx, dy = f[:4]
    d1, d2 = _orient(cx, cy, dx, dy, ax, ay), _orient(cx, cy, dx, dy, bx, by)
    d3, d4 = _orient(ax, ay, bx, by, cx, cy), _orient(ax, ay, bx, by, dx, dy)
    if ((d1 > 0 > d2) or (d1 < 0 < d2)) and ((d3 > 0 > d4) or (d3 < 0 < d4)):
        return "cross"
    if d1 == d2 == d3 == d4 == 0:
        # on one line, both stored left to right: (x, y) order is their order along it
        lo, hi = max((ax, ay), (cx, cy)), min((bx, by), (dx, dy))
        return None if lo > hi else "touch" if lo == hi else "overlap"
    if (
        (d1 == 0 and _on(cx, cy, dx, dy, ax, ay))
        or (d2 == 0 and _on(cx, cy, dx, dy, bx, by))
        or (d3 == 0 and _on(ax, ay, bx, by, cx, cy))
        or (d4 == 0 and _on(ax, ay, bx, by, dx, dy))
    ):
        return "touch"
    return None


def _consecutive(e: _Edge, f: _Edge) -> bool:
    return e[4] == f[4] and (e[5] - f[5]) % e[6] in (1, e[6] - 1)


def _check_simple(rings: list[tuple[str, list[tuple[int, int]]]]) -> None:
    """Refuse a ring that crosses, touches or doubles back on itself, and two rings that meet; see the comment above."""
    edges: list[_Edge] = []
    for r, (where, pts) in enumerate(rings):
        m = len(pts)
        for i in range(m):
            (ax, ay), (bx, by) = pts[i], pts[(i + 1) % m]
            # consecutive edges meet at their shared vertex; they must not run back along each other
            px, py = pts[i - 1]
            if _orient(px, py, ax, ay, bx, by) == 0 and (bx - ax) * (ax - px) + (by - ay) * (ay - py) < 0:
                raise ZoneError(f"{where} doubles back on itself at its position {i}; a ring must enclose an area")
            if (ax, ay) > (bx, by):
                ax, ay, bx, by = bx, by, ax, ay
            edges.append((ax, ay, bx, by, r, i, m))
    events = sorted([(e[0], e[1], 0, k) for k, e in enumerate(edges)] + [(e[2], e[3], 1, k) for k, e in enumerate(edges)])
    status: list[int] = []  # active edges, bottom to top

    def test(i: int, j: int) -> None:
        e, f = edges[i], edges[j]
        if _consecutive(e, f):
            return
        how = _meet(e, f)
        if how is None:
            return
        first, second = sorted((e, f), key=lambda g: (g[4], g[5]))
        verb = "touch" if how == "touch" else "cross"
        if e[4] == f[4]:
            raise ZoneError(
                f"{rings[e[4]][0]} {verb}es itself: its edges {first[5]} and {second[5]} meet; a ring must be a simple closed line"
            )
        raise ZoneError(f"{rings[first[4]][0]} and {rings[second[4]][0]} {verb} (edges {first[5]} and {second[5]}); rings must not meet")

    for _x, _y, kind, k in events:
        if kind == 0:
            ax, ay, bx, by = edges[k][:4]
            lo, hi = 0, len(status)
            while lo < hi:
                mid = (lo + hi) // 2
                sx, sy, tx, ty = edges[status[mid]][:4]
                side = _orient(sx, sy, tx, ty, ax, ay) or _orient(sx, sy, tx, ty, bx, by)
                if side > 0:
                    lo = mid + 1
                else:
                    hi = mid
            status.insert(lo, k)
            if lo > 0:
                test(k, status[lo - 1])
            if lo + 1 < len(status):
                test(k, status[lo + 1])
        else:
            pos = status.index(k)
            del status[pos]
            if 0 < pos < len(status):
                test(status[pos - 1], status[pos])


def _check_position(pos: object, where: str) -> None:
    if not isinstance(pos, list | tuple) or len(pos) not in (2, 3):
        raise ZoneError(f"{where}: a position is [lng, lat], got {pos!r:.60}")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in pos):
        raise ZoneError(f"{where}: coordinates must be finite numbers, got {pos!r:.60}")
    lng, lat = pos[0], pos[1]
    if not (-180.0 <= lng <= 180.0 and -90.0 <= lat <= 90.0):
        raise ZoneError(f"{where}: [lng, lat] = [{lng}, {lat}] is out of range (GeoJSON puts longitude first)")


def _text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_TEXT or not value.isprintable():
        raise ZoneError(f"{what} must be a non-empty printable string of at most {MAX_TEXT} characters, got {value!r:.60}")
    return value


def _optional_number(value: object, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ZoneError(f"{what} must be a finite number, got {value!r:.60}")
    return float(value)


def _is_zone_cell(cell: object) -> bool:
    return isinstance(cell, str) and h3.is_valid_cell(cell) and h3.get_resolution(cell) == ZONE_RESOLUTION
