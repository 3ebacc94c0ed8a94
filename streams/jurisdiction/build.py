"""Build a profile's GeoJSON from data: named areas from a call file's place column, a boundary from the areas.

Pure functions over rows and dicts; the command line is ``streams/jurisdiction/__main__.py``.

:func:`areas_from_column` reads only three columns of each row (the name and
the coordinates) and keeps only per-cell name counts: no address, no time, no
other column reaches its output. Each H3 cell is given the name most of its
calls carry (ties: the alphabetically first); cells with fewer than
``min_calls`` calls are left out (one stray geocode must not name a cell).
Each name's cells become one (Multi)Polygon drawn by h3 (``cells_to_h3shape``).

Examples
--------
>>> rows = [{"twp": "NORRISTOWN", "lat": "40.1215", "lng": "-75.3399"}] * 3 + [{"twp": "UPPER MERION", "lat": "40.1215", "lng": "-75.3399"}]
>>> fc = areas_from_column(rows, "twp", "lat", "lng", min_calls=3, title_case=True)
>>> [f["properties"] for f in fc["features"]]
[{'name': 'Norristown', 'cells': 1, 'calls': 4}]
>>> boundary_from_areas(fc)["type"]
'Polygon'
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from typing import Any

import h3

from streams.jurisdiction.areas import DEFAULT_RESOLUTION, Areas

#: Decimal places kept in the GeoJSON written (6: about 0.1 m, far below a cell's width).
COORDINATE_DECIMALS = 6


def areas_from_column(
    rows: Iterable[Mapping[str, str]],
    name_column: str,
    lat_column: str,
    lng_column: str,
    *,
    resolution: int = DEFAULT_RESOLUTION,
    min_calls: int = 3,
    title_case: bool = False,
    exclude: Collection[str] = (),
) -> dict[str, Any]:
    """A FeatureCollection of named areas built from rows carrying a place name and coordinates.

    Rows whose name is empty or in ``exclude`` (compared after ``title_case``),
    or whose coordinates are missing, unreadable, out of range or (0, 0), are
    not counted. Each feature has ``name``, ``cells`` (cells it holds) and
    ``calls`` (calls in those cells, whatever name they carried) properties;
    features come in order of name.
    """
    if isinstance(min_calls, bool) or not isinstance(min_calls, int) or min_calls < 1:
        raise ValueError(f"min_calls must be an integer >= 1, found {min_calls!r}")
    if isinstance(resolution, bool) or not isinstance(resolution, int) or not 0 <= resolution <= 15:
        raise ValueError(f"resolution must be an integer 0..15, found {resolution!r}")
    excluded = set(exclude)
    per_cell: dict[str, Counter[str]] = {}
    for row in rows:
        name = (row.get(name_column) or "").strip()
        if title_case:
            name = " ".join(name.split()).title()
        if not name or name in excluded:
            continue
        point = _latlng(row.get(lat_column), row.get(lng_column))
        if point is None:
            continue
        cell = h3.latlng_to_cell(point[0], point[1], resolution)
        per_cell.setdefault(cell, Counter())[name] += 1
    by_name: dict[str, list[str]] = {}
    calls: Counter[str] = Counter()
    for cell, names in per_cell.items():
        total = sum(names.values())
        if total < min_calls:
            continue
        top = max(names.values())
        winner = min(name for name, n in names.items() if n == top)
        by_name.setdefault(winner, []).append(cell)
        calls[winner] += total
    features = [
        {
            "type": "Feature",
            "properties": {"name": name, "cells": len(cells), "calls": calls[name]},
            "geometry": cells_geometry(cells),
        }
        for name, cells in sorted(by_name.items())
    ]
    return {"type": "FeatureCollection", "features": features}


def boundary_from_areas(collection: Mapping[str, Any], resolution: int = DEFAULT_RESOLUTION) -> dict[str, Any]:
    """The union of all areas' cells as one Polygon/MultiPolygon geometry, holes filled.

    The areas are indexed at ``resolution`` (:meth:`Areas.from_geojson`), their
    cells merged by h3 and each resulting polygon's holes (cells where no call
    was placed: parks, quarries, a reservoir) dropped, since they are still
    inside the jurisdiction. Separate pieces stay separate polygons.
    """
    cells = list(Areas.from_geojson(collection, resolution=resolution).cells())
    if not cells:
        raise ValueError("the areas hold no H3 cell: nothing to draw a boundary from")
    shape = dict(h3.cells_to_h3shape(cells).__geo_interface__)
    polygons = [shape["coordinates"]] if shape["type"] == "Polygon" else shape["coordinates"]
    outer = [[_rounded(polygon[0])] for polygon in polygons]
    if len(outer) == 1:
        return {"type": "Polygon", "coordinates": outer[0]}
    return {"type": "MultiPolygon", "coordinates": outer}


def cells_geometry(cells: Iterable[str]) -> dict[str, Any]:
    """The outline of H3 cells as a GeoJSON Polygon (one piece) or MultiPolygon, holes kept, coordinates rounded."""
    shape = dict(h3.cells_to_h3shape(list(cells)).__geo_interface__)
    polygons = [shape["coordinates"]] if shape["type"] == "Polygon" else shape["coordinates"]
    rounded = [[_rounded(ring) for ring in polygon] for polygon in polygons]
    if len(rounded) == 1:
        return {"type": "Polygon", "coordinates": rounded[0]}
    return {"type": "MultiPolygon", "coordinates": rounded}


def _rounded(ring: Iterable[Iterable[float]]) -> list[list[float]]:
    return [[round(float(v), COORDINATE_DECIMALS) for v in position] for position in ring]


def _latlng(lat_text: str | None, lng_text: str | None) -> tuple[float, float] | None:
    """(lat, lng) from two texts, or None when either is missing, unreadable, out of range, or both are 0.

    >>> _latlng("40.1", "-75.3"), _latlng("0", "0"), _latlng("", "1"), _latlng("91", "0")
    ((40.1, -75.3), None, None, None)
    """
    try:
        lat, lng = float(lat_text or ""), float(lng_text or "")
    except ValueError:
        return None
    if not (math.isfinite(lat) and math.isfinite(lng) and -90 <= lat <= 90 and -180 <= lng <= 180) or lat == lng == 0:
        return None
    return lat, lng
