"""Zones: strict GeoJSON validation, cells that cover even tiny outlines, config files that load where the calls are."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import h3
import pytest

from gateway.zones import Zone, ZoneError, event_zone, load_zone_files, point_cells, polygon_cells
from tests.conftest import data_file

ROOT = Path(__file__).resolve().parents[2]
ZONE_FILES = sorted((ROOT / "infra" / "zones").glob("*.geojson"))
MONTGOMERY = "montgomery-pa-911-2015-12-to-2016-08.csv"


def _box(lng: float, lat: float, d: float) -> list[list[float]]:
    return [[lng - d, lat - d], [lng + d, lat - d], [lng + d, lat + d], [lng - d, lat + d], [lng - d, lat - d]]


def _polygon(*rings) -> dict:
    return {"type": "Polygon", "coordinates": [list(r) for r in rings]}


SMALL = _polygon(_box(-75.2838, 40.2418, 0.0002))  # ~35 m across: far smaller than a res-8 hexagon


# -- polygon_cells --------------------------------------------------------------------


def test_polygon_smaller_than_a_hexagon_maps_to_its_cell():
    """An outline containing no cell centre still gives the cell(s) it lies in, including its centroid's."""
    cells = polygon_cells(SMALL)
    assert h3.latlng_to_cell(40.2418, -75.2838, 8) in cells
    assert 1 <= len(cells) <= 3
    assert all(h3.get_resolution(c) == 8 for c in cells)


def test_polygon_cells_cover_the_polygon():
    """Every vertex and the centre of a larger polygon lie in one of its cells (lng, lat order honoured)."""
    ring = _box(-75.30, 40.15, 0.02)
    cells = polygon_cells(_polygon(ring))
    for lng, lat in ring + [[-75.30, 40.15]]:
        assert h3.latlng_to_cell(lat, lng, 8) in cells
    assert 20 < len(cells) < 60


def test_multipolygon_is_the_union_of_its_parts():
    """A MultiPolygon covers the cells of each of its polygons."""
    a, b = _box(-75.30, 40.15, 0.005), _box(-75.10, 40.10, 0.005)
    multi = {"type": "MultiPolygon", "coordinates": [[a], [b]]}
    assert polygon_cells(multi) == polygon_cells(_polygon(a)) | polygon_cells(_polygon(b))


def test_hole_removes_cells():
    """Cells lying wholly inside a hole are not part of the zone."""
    outer, hole = _box(-75.30, 40.15, 0.03), _box(-75.30, 40.15, 0.015)
    with_hole = polygon_cells(_polygon(outer, hole[::-1]))
    assert h3.latlng_to_cell(40.15, -75.30, 8) not in with_hole
    assert with_hole < polygon_cells(_polygon(outer))


def test_res_parameter():
    """Cells come at the resolution asked for."""
    assert {h3.get_resolution(c) for c in polygon_cells(SMALL, res=9)} == {9}


NAN = float("nan")


@pytest.mark.parametrize(
    ("geometry", "message"),
    [
        ([1, 2], "geometry must be a GeoJSON object, got list"),
        ({"type": "LineString", "coordinates": [[0, 0], [1, 1]]}, "geometry type must be Polygon or MultiPolygon, got 'LineString'"),
        ({"coordinates": [_box(0, 0, 1)]}, "got None"),
        ({"type": "Polygon", "coordinates": []}, "polygon: coordinates must be a non-empty list of linear rings"),
        ({"type": "MultiPolygon", "coordinates": []}, "MultiPolygon coordinates must be a non-empty list"),
        (_polygon(_box(-75.3, 40.1, 0.01)[:-1]), "ring is not closed"),
        (_polygon([[-75.3, 40.1], [-75.2, 40.1], [-75.3, 40.1]]), "needs at least 4 positions .* got 3"),
        (_polygon([[-75.3, 40.1], [-75.2, 40.1], [-75.2, "40.2"], [-75.3, 40.1]]), "coordinates must be finite numbers"),
        (_polygon([[-75.3, 40.1], [-75.2, 40.1], [-75.2, NAN], [-75.3, 40.1]]), "coordinates must be finite numbers"),
        (_polygon([[-75.3, 40.1], [math.inf, 40.1], [-75.2, 40.2], [-75.3, 40.1]]), "coordinates must be finite numbers"),
        (_polygon([[-75.3, 40.1], [-75.2, True], [-75.2, 40.2], [-75.3, 40.1]]), "coordinates must be finite numbers"),
        (_polygon([[40.1, -95.3], [40.2, -95.3], [40.2, -95.2], [40.1, -95.3]]), r"out of range \(GeoJSON puts longitude first\)"),
        (_polygon([[-75.3], [-75.2, 40.1], [-75.2, 40.2], [-75.3]]), r"a position is \[lng, lat\]"),
        ({"type": "MultiPolygon", "coordinates": [[_box(0, 0, 0.001)], "x"]}, "polygon 1: coordinates must be a non-empty list"),
    ],
)
def test_polygon_cells_refuses_invalid_geometry(geometry, message):
    """Invalid GeoJSON is refused with a ZoneError saying what is wrong."""
    with pytest.raises(ZoneError, match=message):
        polygon_cells(geometry)


def test_polygon_with_too_many_vertices_is_refused():
    """More than 2000 positions is refused before any cell is computed."""
    n = 2001
    ring = [[-75.3 + 0.01 * math.cos(2 * math.pi * i / n), 40.1 + 0.01 * math.sin(2 * math.pi * i / n)] for i in range(n)]
    with pytest.raises(ZoneError, match="more than 2000 positions"):
        polygon_cells(_polygon(ring + [ring[0]]))


def test_polygon_with_too_many_cells_is_refused_with_the_count():
    """A polygon covering more than max_cells cells is refused, naming how many it covers."""
    county = _polygon(_box(-75.3, 40.2, 0.15))
    n = len(polygon_cells(county))
    with pytest.raises(ZoneError, match=rf"^polygon covers {n} cells at res 8, more than the {n - 1} allowed$"):
        polygon_cells(county, max_cells=n - 1)


def test_continent_is_refused_quickly():
    """A continent-sized polygon is refused from a coarse lower bound (no millions of cells)."""
    with pytest.raises(ZoneError, match=r"polygon covers at least \d+ cells at res 8, more than the 5000 allowed"):
        polygon_cells(_polygon([[-120, 30], [-80, 30], [-80, 50], [-120, 50], [-120, 30]]))


# -- points ---------------------------------------------------------------------------


def test_point_cells_radius():
    """A point takes its cell's grid disk with k = ceil(radius / edge length): 300 m -> 7 cells, 1200 m -> 37."""
    centre = h3.latlng_to_cell(40.1128, -75.3443, 8)
    assert point_cells(-75.3443, 40.1128, 300) == frozenset(h3.grid_disk(centre, 1))
    assert len(point_cells(-75.3443, 40.1128, 1200)) == 37


@pytest.mark.parametrize("radius", [0, -5, 50_000, "300", True])
def test_point_cells_refuses_bad_radius(radius):
    """The radius must be a positive number of metres up to 5 km."""
    with pytest.raises(ZoneError, match="radius_m must be a number"):
        point_cells(-75.3, 40.1, radius)


# -- event zones ----------------------------------------------------------------------


def test_event_zone_is_active_in_its_window_only():
    """An event zone is active from starts_at (inclusive) until ends_at (exclusive)."""
    z = event_zone(id="parade", name="Parade", polygon=SMALL, starts_at=1000.0, ends_at=2000.0, agency="NPD", threshold=4.0)
    assert (z.kind, z.threshold, z.cells) == ("event", 4.0, polygon_cells(SMALL))
    assert [z.active(t) for t in (999.9, 1000.0, 1999.9, 2000.0)] == [False, True, True, False]


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"ends_at": 1000.0}, r"ends_at \(1000.0\) must be after starts_at \(1000.0\)"),
        ({"ends_at": 500.0}, "must be after starts_at"),
        ({"ends_at": 1000.0 + 15 * 86400}, "lasts 15.0 days, at most 14 are allowed"),
        ({"starts_at": math.nan}, "starts_at must be a finite number"),
        ({"threshold": 0}, "threshold must be a positive score"),
        ({"polygon": {"type": "Point", "coordinates": [0, 0]}}, "event zone 'parade': geometry type must be Polygon"),
        ({"id": ""}, "event zone id must be a non-empty printable string"),
    ],
)
def test_event_zone_refuses(kw, message):
    """Event zones must end after they start, last at most 14 days and have a valid polygon."""
    args = {"id": "parade", "name": "Parade", "polygon": SMALL, "starts_at": 1000.0, "ends_at": 5000.0, "agency": "NPD"}
    args.update(kw)
    with pytest.raises(ZoneError, match=message):
        event_zone(**args)


def test_zone_json_round_trip():
    """to_json is JSON-serializable with sorted cells, and from_json gives the same zone back."""
    z = event_zone(id="parade", name="Parade", polygon=_polygon(_box(-75.3, 40.1, 0.01)), starts_at=1.0, ends_at=2.0, agency="NPD")
    data = json.loads(json.dumps(z.to_json()))
    assert data["cells"] == sorted(z.cells)
    assert Zone.from_json(data) == z


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"cells": []}, "cells must be a non-empty list"),
        ({"cells": ["872aac959ffffff"]}, "cells must be a non-empty list of H3 res-8"),
        ({"cells": ["not-a-cell"]}, "H3 res-8"),
        ({"kind": "palace"}, "kind must be one of"),
        ({"active_from": "noon"}, "active_from must be a finite number"),
        ({"id": None}, "zone id must be"),
    ],
)
def test_zone_from_json_refuses(change, message):
    """from_json names the bad field of stored zone JSON."""
    data = event_zone(id="parade", name="P", polygon=SMALL, starts_at=1.0, ends_at=2.0, agency="NPD").to_json()
    data.update(change)
    with pytest.raises(ZoneError, match=message):
        Zone.from_json(data)


# -- zone files -----------------------------------------------------------------------


def test_config_files_load_and_every_zone_has_cells():
    """The shipped zone files load: six SEPTA stations and four schools, each with res-8 cells."""
    zones = load_zone_files(ZONE_FILES)
    kinds = {}
    for z in zones.values():
        kinds[z.kind] = kinds.get(z.kind, 0) + 1
        assert z.cells and all(h3.get_resolution(c) == 8 for c in z.cells), z.id
        assert z.active(0.0) and z.active(4e9), z.id
        json.dumps(z.to_json())
    assert kinds == {"station": 6, "school": 4}
    assert {z.agency for z in zones.values() if z.kind == "station"} == {"SEPTA"}
    assert "septa-norristown-tc" in zones and "septa-lansdale" in zones
    for path in ZONE_FILES:
        assert "approximate" in json.loads(path.read_text())["description"]


def test_config_zones_lie_in_montgomery_county():
    """Every zone cell's centre lies inside Montgomery County's bounding box."""
    for z in load_zone_files(ZONE_FILES).values():
        for c in z.cells:
            lat, lng = h3.cell_to_latlng(c)
            assert 39.95 < lat < 40.45 and -75.70 < lng < -75.00, (z.id, c)


def test_config_zones_contain_real_calls():
    """Each shipped zone's cells contain calls of the Montgomery dataset (the outlines are where the calls are)."""
    path = data_file(MONTGOMERY)
    if path is None:
        pytest.skip(f"{MONTGOMERY} is not in ../shared/data (the bounding-box test still runs)")
    zones = load_zone_files(ZONE_FILES)
    by_cell: dict[str, list[str]] = {}
    for z in zones.values():
        for c in z.cells:
            by_cell.setdefault(c, []).append(z.id)
    hits = dict.fromkeys(zones, 0)
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            try:
                cell = h3.latlng_to_cell(float(row["lat"]), float(row["lng"]), 8)
            except (ValueError, h3.H3BaseException):
                continue
            for zid in by_cell.get(cell, ()):
                hits[zid] += 1
    assert all(n >= 50 for n in hits.values()), hits


def _write(tmp_path: Path, name: str, features: list, **extra) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features, **extra}))
    return path


def _feature(geometry: dict | None = None, **props) -> dict:
    p = {"id": "z1", "name": "Zone one", "kind": "station", "agency": "SEPTA"}
    p.update(props)
    return {"type": "Feature", "properties": {k: v for k, v in p.items() if v is not None}, "geometry": geometry or SMALL}


def test_point_feature_uses_radius_and_draws_its_cells(tmp_path):
    """A Point feature takes the cells within radius_m (default 300 m) and keeps their outline for drawing."""
    point = {"type": "Point", "coordinates": [-75.3443, 40.1128]}
    zones = load_zone_files([_write(tmp_path, "a.geojson", [_feature(point), _feature(point, id="z2", radius_m=1200)])])
    assert zones["z1"].cells == point_cells(-75.3443, 40.1128, 300)
    assert len(zones["z2"].cells) == 37
    assert zones["z1"].polygon["type"] in ("Polygon", "MultiPolygon")
    assert polygon_cells(zones["z1"].polygon) >= zones["z1"].cells


def test_duplicate_ids_across_files_are_an_error(tmp_path):
    """The same zone id in two files is refused, naming both places."""
    a = _write(tmp_path, "a.geojson", [_feature()])
    b = _write(tmp_path, "b.geojson", [_feature(id="z0"), _feature()])
    with pytest.raises(ZoneError, match=r"b\.geojson: feature 1: zone id 'z1' is already defined in .*a\.geojson feature 0"):
        load_zone_files([a, b])


@pytest.mark.parametrize("missing", ["id", "name", "kind", "agency"])
def test_missing_property_names_file_feature_and_property(tmp_path, missing):
    """A feature without a required property is refused, naming the file, the feature index and the property."""
    path = _write(tmp_path, "p.geojson", [_feature(id="ok"), _feature(**{missing: None})])
    with pytest.raises(ZoneError, match=rf"p\.geojson: feature 1: missing property '{missing}'"):
        load_zone_files([path])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "cannot read a GeoJSON file"),
        (json.dumps({"type": "Feature"}), "expected a GeoJSON FeatureCollection"),
        (
            json.dumps({"type": "FeatureCollection", "features": [_feature(kind="event")]}),
            r"feature 0 \(z1\): property 'kind' must be one of",
        ),
        (json.dumps({"type": "FeatureCollection", "features": [_feature(_polygon(_box(-75.3, 40.1, 0.01)[:-1]))]}), "ring is not closed"),
        (
            json.dumps({"type": "FeatureCollection", "features": [_feature({"type": "LineString", "coordinates": [[0, 0], [1, 1]]})]}),
            "LineString",
        ),
        (
            json.dumps({"type": "FeatureCollection", "features": [_feature({"type": "Point", "coordinates": [-75.3, 40.1]}, radius_m=0)]}),
            "radius_m",
        ),
        (json.dumps({"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": SMALL}]}), "has no properties"),
    ],
)
def test_bad_files_are_refused(tmp_path, content, message):
    """Unreadable files, wrong GeoJSON types, event kinds and bad geometries are refused with the file named."""
    path = tmp_path / "bad.geojson"
    path.write_text(content)
    with pytest.raises(ZoneError, match=message) as info:
        load_zone_files([path])
    assert "bad.geojson" in str(info.value)


def test_an_event_zones_expected_load_reaches_the_record_the_worker_reads():
    """The organisers' expected extra calls an hour travel from the create_zone frame to the zone's JSON, and the
    worker's zone parser hands them to the forecaster with the zone's window; a bad value is refused by name."""
    from gateway.protocol import ProtocolError, parse_client_message
    from streams.detection.runner import parse_event_loads

    frame = {"type": "create_zone", "id": "parade", "name": "Parade", "polygon": SMALL, "starts_at": 1.0, "ends_at": 7201.0}
    msg = parse_client_message(json.dumps({**frame, "expected_calls_per_hour": 4}))
    z = event_zone(id=msg.id, name=msg.name, polygon=msg.polygon, starts_at=msg.starts_at, ends_at=msg.ends_at, agency="NPD",
                   expected_calls_per_hour=msg.expected_calls_per_hour)  # fmt: skip
    data = json.loads(json.dumps(z.to_json()))
    assert data["expected_calls_per_hour"] == 4.0 and Zone.from_json(data) == z
    [load] = parse_event_loads([data])
    assert (load.id, load.start, load.end, load.cells, load.per_hour) == ("parade", 1.0, 7201.0, z.cells, 4.0)
    assert parse_client_message(json.dumps(frame)).expected_calls_per_hour is None
    for bad in (-1, 1e6, "many", True):
        with pytest.raises(ProtocolError, match="expected_calls_per_hour must be a number of calls from 0 to 1000"):
            parse_client_message(json.dumps({**frame, "expected_calls_per_hour": bad}))
    with pytest.raises(ZoneError, match="expected_calls_per_hour must be 0 or more"):
        event_zone(id="p", name="P", polygon=SMALL, starts_at=1.0, ends_at=2.0, agency="NPD", expected_calls_per_hour=-2)
