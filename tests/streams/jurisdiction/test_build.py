"""The area builder: majority name per cell, cells under --min-calls left out, nothing but the names and outlines written."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import h3
import pytest

from streams.jurisdiction import Areas
from streams.jurisdiction.__main__ import main
from streams.jurisdiction.build import areas_from_column, boundary_from_areas

# three res-8 cells in Norristown, PA, a few km apart
A = (40.1215, -75.3399)
B = (40.1500, -75.3000)
C = (40.1000, -75.2600)


def rows(*groups: tuple[tuple[float, float], str, int]) -> list[dict[str, str]]:
    """``n`` calls at ``point`` named ``name`` for each group, with an address column the builder must never copy."""
    out = []
    for (lat, lng), name, n in groups:
        for i in range(n):
            out.append({"lat": str(lat), "lng": str(lng), "twp": name, "addr": f"{i} SECRET ST", "desc": "caller 555-0100"})
    return out


def test_each_cell_gets_the_name_most_of_its_calls_carry_ties_alphabetical() -> None:
    data = rows((A, "NORRISTOWN", 5), (A, "PLYMOUTH", 2), (B, "WORCESTER", 3), (B, "EAST NORRITON", 3), (C, "PLYMOUTH", 4))
    fc = areas_from_column(data, "twp", "lat", "lng", title_case=True)
    props = [f["properties"] for f in fc["features"]]
    assert props == [
        {"name": "East Norriton", "cells": 1, "calls": 6},
        {"name": "Norristown", "cells": 1, "calls": 7},
        {"name": "Plymouth", "cells": 1, "calls": 4},
    ]
    areas = Areas.from_geojson(fc)
    assert areas.name_of(h3.latlng_to_cell(*A, 8)) == "Norristown"
    assert areas.name_of(h3.latlng_to_cell(*B, 8)) == "East Norriton"
    assert areas.name_of(h3.latlng_to_cell(*C, 8)) == "Plymouth"


def test_cells_with_fewer_than_min_calls_are_left_out() -> None:
    data = rows((A, "NORRISTOWN", 3), (B, "WORCESTER", 2))
    assert [f["properties"]["name"] for f in areas_from_column(data, "twp", "lat", "lng", min_calls=3)["features"]] == ["NORRISTOWN"]
    assert len(areas_from_column(data, "twp", "lat", "lng", min_calls=2)["features"]) == 2
    with pytest.raises(ValueError, match="min_calls must be an integer >= 1, found 0"):
        areas_from_column(data, "twp", "lat", "lng", min_calls=0)


def test_unusable_rows_and_excluded_names_are_not_counted() -> None:
    data = rows((A, "NORRISTOWN", 3), (A, "PHILA COUNTY", 9), (A, "", 9), ((0.0, 0.0), "NORRISTOWN", 9))
    data += [{"lat": "x", "lng": "-75.3", "twp": "NORRISTOWN"}] * 9
    fc = areas_from_column(data, "twp", "lat", "lng", title_case=True, exclude={"Phila County"})
    assert [f["properties"] for f in fc["features"]] == [{"name": "Norristown", "cells": 1, "calls": 3}]


def test_two_cells_of_one_name_make_a_multipolygon_and_the_boundary_keeps_both() -> None:
    fc = areas_from_column(rows((A, "NORRISTOWN", 3), (C, "NORRISTOWN", 3)), "twp", "lat", "lng")
    assert [f["geometry"]["type"] for f in fc["features"]] == ["MultiPolygon"]
    boundary = boundary_from_areas(fc)
    assert boundary["type"] == "MultiPolygon" and len(boundary["coordinates"]) == 2


def test_boundary_fills_holes() -> None:
    """A ring of six cells around an empty one: the areas have a hole, the boundary has none."""
    centre = h3.latlng_to_cell(*A, 8)
    ring = [h3.cell_to_latlng(c) for c in h3.grid_ring(centre, 1)]
    fc = areas_from_column(rows(*((p, "RING", 3) for p in ring)), "twp", "lat", "lng")
    assert len(fc["features"][0]["geometry"]["coordinates"]) == 2  # outer ring and a hole
    boundary = boundary_from_areas(fc)
    assert boundary["type"] == "Polygon" and len(boundary["coordinates"]) == 1


def test_cli_writes_geojson_that_holds_no_other_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "calls.csv"
    data = rows((A, "NORRISTOWN", 4), (B, "WORCESTER", 3))
    with src.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(data[0]))
        writer.writeheader()
        writer.writerows(data)
    assert (
        main(["areas-from-column", str(src), "--name-column", "twp", "--lat", "lat", "--lng", "lng", "--title-case", "--no-progress"]) == 0
    )
    out, err = capsys.readouterr()
    assert "SECRET" not in out and "555" not in out and "caller" not in out
    fc = json.loads(out)
    assert [f["properties"]["name"] for f in fc["features"]] == ["Norristown", "Worcester"]
    assert "2 areas, 2 cells at resolution 8" in err
    areas_file = tmp_path / "areas.geojson"
    areas_file.write_text(out)
    assert main(["boundary-from-areas", str(areas_file)]) == 0
    assert json.loads(capsys.readouterr().out)["type"] == "MultiPolygon"
    assert main(["areas-from-column", str(src), "--name-column", "township", "--lat", "lat", "--lng", "lng"]) == 2
    assert "no column 'township'" in capsys.readouterr().err
