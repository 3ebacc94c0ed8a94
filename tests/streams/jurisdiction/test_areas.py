"""Named areas: any-resolution H3 cells to names, first feature wins an overlap, labels and GeoJSON for the dashboard."""

from __future__ import annotations

import h3
import pytest

from streams.jurisdiction import Areas

WEST = {"type": "Polygon", "coordinates": [[[-75.40, 40.10], [-75.34, 40.10], [-75.34, 40.15], [-75.40, 40.15], [-75.40, 40.10]]]}
# two large neighbours (about 21 x 28 km each): a resolution-6 cell (36 km^2) near their middles is inside
BIG_WEST = {"type": "Polygon", "coordinates": [[[-75.60, 40.00], [-75.35, 40.00], [-75.35, 40.25], [-75.60, 40.25], [-75.60, 40.00]]]}
BIG_EAST = {"type": "Polygon", "coordinates": [[[-75.35, 40.00], [-75.10, 40.00], [-75.10, 40.25], [-75.35, 40.25], [-75.35, 40.00]]]}
# overlaps WEST's eastern half
MIDDLE = {"type": "Polygon", "coordinates": [[[-75.37, 40.10], [-75.31, 40.10], [-75.31, 40.15], [-75.37, 40.15], [-75.37, 40.10]]]}


def collection(*named: tuple[str, dict]) -> dict:
    return {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"name": n}, "geometry": g} for n, g in named]}


@pytest.fixture(scope="module")
def areas() -> Areas:
    return Areas.from_geojson(collection(("West", BIG_WEST), ("East", BIG_EAST)))


@pytest.mark.parametrize("res", [6, 7, 8, 9])
def test_name_of_names_cells_of_resolutions_6_to_9(areas: Areas, res: int) -> None:
    """A point well inside an area is named at every resolution; a point far outside is not."""
    assert areas.name_of(h3.latlng_to_cell(40.125, -75.475, res)) == "West"
    assert areas.name_of(h3.latlng_to_cell(40.125, -75.225, res)) == "East"
    assert areas.name_of(h3.latlng_to_cell(41.0, -75.3, res)) is None


def test_coarser_cells_use_their_centre_child_and_finer_their_parent(areas: Areas) -> None:
    index = areas.cells()
    cell8 = next(iter(index))
    for child in h3.cell_to_children(cell8, 10):
        assert areas.name_of(child) == index[cell8]
    for res in (5, 6, 7):
        parent = h3.cell_to_parent(cell8, res)
        assert areas.name_of(parent) == index.get(h3.cell_to_center_child(parent, 8))


def test_overlapping_areas_go_to_the_first_feature() -> None:
    first = Areas.from_geojson(collection(("West", WEST), ("Middle", MIDDLE)))
    second = Areas.from_geojson(collection(("Middle", MIDDLE), ("West", WEST)))
    shared = h3.latlng_to_cell(40.125, -75.355, 8)  # inside both
    assert first.name_of(shared) == "West" and second.name_of(shared) == "Middle"
    assert first.name_of(h3.latlng_to_cell(40.125, -75.32, 8)) == "Middle"  # only in MIDDLE


def test_an_area_smaller_than_a_cell_still_gets_a_cell() -> None:
    tiny = {"type": "Polygon", "coordinates": [[[-75.3401, 40.1214], [-75.3398, 40.1214], [-75.3398, 40.1216], [-75.3401, 40.1214]]]}
    areas = Areas.from_geojson(collection(("Tiny", tiny)))
    assert len(areas) == 1 and areas.name_of(h3.latlng_to_cell(40.1215, -75.3399, 8)) == "Tiny"


def test_names_of_counts_cells_most_first_ties_by_name(areas: Areas) -> None:
    west = [c for c, n in areas.cells().items() if n == "West"]
    east = [c for c, n in areas.cells().items() if n == "East"]
    outside = h3.latlng_to_cell(41.0, -75.3, 8)
    assert areas.names_of([east[0], west[0], west[1], outside]) == ["West", "East"]
    assert areas.names_of([east[0], west[0]]) == ["East", "West"]
    assert areas.names_of([outside]) == []


def test_label_names_the_area_or_gives_the_bare_id(areas: Areas) -> None:
    inside = h3.latlng_to_cell(40.125, -75.385, 8)
    outside = h3.latlng_to_cell(41.0, -75.3, 8)
    assert areas.label(inside) == f"West ({inside})"
    assert areas.label(outside) == outside


def test_geojson_has_one_named_feature_per_area(areas: Areas) -> None:
    fc = areas.geojson()
    assert fc["type"] == "FeatureCollection"
    assert [(f["properties"]["name"], f["geometry"]) for f in fc["features"]] == [("West", BIG_WEST), ("East", BIG_EAST)]
    from_cells = Areas(areas.cells(), 8).geojson()
    assert sorted(f["properties"]["name"] for f in from_cells["features"]) == ["East", "West"]
    assert {f["geometry"]["type"] for f in from_cells["features"]} <= {"Polygon", "MultiPolygon"}


def test_the_empty_index_names_nothing() -> None:
    empty = Areas()
    assert len(empty) == 0 and empty.name_of("882aac95b3fffff") is None and empty.geojson()["features"] == []
    assert empty.label("882aac95b3fffff") == "882aac95b3fffff"


def test_bad_inputs_say_what_is_wrong(areas: Areas) -> None:
    with pytest.raises(ValueError, match="not an H3 cell: 'Norristown'"):
        areas.name_of("Norristown")
    with pytest.raises(ValueError, match="expected a GeoJSON FeatureCollection"):
        Areas.from_geojson({"type": "Feature"})
    with pytest.raises(ValueError, match="feature 0 \\(A\\): expected a GeoJSON Polygon or MultiPolygon geometry, found 'LineString'"):
        Areas.from_geojson(collection(("A", {"type": "LineString", "coordinates": [[0, 0], [1, 1]]})))
    with pytest.raises(ValueError, match="is not a valid H3 cell of resolution 8"):
        Areas({"892aac95b3fffff": "x"}, 8)


def test_population_is_read_per_area_summing_its_pieces_and_refused_when_missing_or_negative() -> None:
    def feature(name: str, geometry: dict, **props: object) -> dict:
        return {"type": "Feature", "properties": {"name": name, **props}, "geometry": geometry}

    pieces = {"type": "FeatureCollection", "features": [
        feature("West", BIG_WEST, pop=1000), feature("East", BIG_EAST, pop=2500), feature("West", WEST, pop=250.5)]}  # fmt: skip
    assert Areas.from_geojson(pieces, population_property="pop").population() == {"West": 1250.5, "East": 2500.0}
    assert Areas.from_geojson(pieces).population() == {}
    for bad in (None, -3, "many", True):
        broken = {"type": "FeatureCollection", "features": [feature("West", BIG_WEST, pop=1000), feature("East", BIG_EAST, pop=bad)]}
        with pytest.raises(ValueError, match=r"feature 1 \(East\) has no number of residents >= 0 in 'pop'"):
            Areas.from_geojson(broken, population_property="pop")
    with pytest.raises(ValueError, match="population of 'North' must be a number of residents >= 0 of a named area"):
        Areas({h3.latlng_to_cell(40.12, -75.37, 8): "West"}, population={"North": 10})
