"""The profile loader: every key validated with a message naming the file, the key, the value and what is expected."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest

from streams.ingest.schema import Jurisdiction
from streams.jurisdiction import Profile, ProfileError, SpecialDay, default_profile, load_profile

# A small square around Norristown, PA (lng, lat), about 4 x 3 km.
SQUARE = {"type": "Polygon", "coordinates": [[[-75.36, 40.11], [-75.32, 40.11], [-75.32, 40.14], [-75.36, 40.14], [-75.36, 40.11]]]}


def write(tmp_path: Path, text: str, **files: object) -> Path:
    """A profile TOML (and the GeoJSON files it names) in tmp_path; the TOML's path."""
    for name, data in files.items():
        (tmp_path / f"{name}.geojson").write_text(json.dumps(data))
    path = tmp_path / "jurisdiction.toml"
    path.write_text(text)
    return path


MINIMAL = 'id = "town"\ntimezone = "America/Chicago"\n'


def error_of(tmp_path: Path, text: str, **files: object) -> str:
    with pytest.raises(ProfileError) as exc:
        load_profile(write(tmp_path, text, **files))
    return str(exc.value)


def test_a_minimal_profile_takes_the_defaults(tmp_path: Path) -> None:
    """id and timezone alone: the name is the id, no boundary (contains everything), no areas, 1 false alert a day."""
    p = load_profile(write(tmp_path, MINIMAL))
    assert (p.id, p.name, p.timezone, p.boundary, p.box, p.zones_dir, p.basemap) == (
        "town",
        "town",
        "America/Chicago",
        None,
        None,
        None,
        None,
    )
    assert p.tz.key == "America/Chicago"
    assert p.contains(-33.9, 151.2) and len(p.areas) == 0 and p.special_days == () and p.false_alerts_per_day == 1.0
    assert p.path == (tmp_path / "jurisdiction.toml").resolve()


def test_default_profile_is_utc_and_empty() -> None:
    p = default_profile()
    assert (p.id, p.timezone, p.boundary, p.box, len(p.areas), p.special_days, p.false_alerts_per_day) == (
        "unnamed",
        "UTC",
        None,
        None,
        0,
        (),
        1.0,
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            'id = "x"\ntimezone = "UTC"\ntimezon = "UTC"\n',
            "unknown key 'timezon'; the keys allowed at the top level are id, name, timezone",
        ),
        (
            MINIMAL + "[areas]\ngeojson = 'a.geojson'\nname_prop = 'n'\n",
            "[areas] unknown key 'name_prop'; the keys allowed in [areas] are geojson, name_property, resolution",
        ),
        ('timezone = "UTC"\n', "id is missing: expected a non-empty string"),
        ('id = "Town A"\ntimezone = "UTC"\n', "id = 'Town A': expected lower-case letters, digits"),
        ('id = "x"\n', "timezone is missing: expected a non-empty string"),
        ('id = "x"\ntimezone = "America/Philly"\n', "timezone = 'America/Philly': expected an IANA time zone name"),
        ('id = "x"\ntimezone = "EST+5"\n', "timezone = 'EST+5': expected an IANA time zone name"),
        ('id = "x"\ntimezone = "Pacific"\n', "timezone = 'Pacific': expected an IANA time zone name"),  # a folder of the database
        ('id = "x"\ntimezone = 5\n', "timezone = 5: expected a non-empty string"),
        (MINIMAL + "boundary = 'b.geojson'\n", "boundary = 'b.geojson': expected a table [boundary]"),
        (MINIMAL + "[boundary]\n", "[boundary] needs exactly one of geojson"),
        (
            MINIMAL + "[boundary]\nbox = '40.5,-75.0,39.9,-75.7'\n",
            "[boundary] box = '40.5,-75.0,39.9,-75.7': expected 'min_lat,min_lng,max_lat,max_lng'",
        ),
        (
            MINIMAL + "[boundary]\ngeojson = 'missing.geojson'\n",
            "[boundary] geojson = 'missing.geojson': expected an existing file, relative to the profile's folder",
        ),
        (
            MINIMAL + "[areas]\ngeojson = 'areas.geojson'\nresolution = 16\n",
            "[areas] resolution = 16: expected an integer H3 resolution 0..15",
        ),
        (MINIMAL + "[zones]\nfolder = 'nowhere'\n", "[zones] folder = 'nowhere': expected an existing folder"),
        (MINIMAL + "[detection]\nfalse_alerts_per_day = 0\n", "[detection] false_alerts_per_day = 0: expected a number > 0"),
        (MINIMAL + "[detection]\nrecurrence_days = 'weekly'\n", "[detection] recurrence_days = 'weekly': expected a number > 0"),
        (
            MINIMAL + "[detection]\nfalse_alerts_per_day = 1\nrecurrence_days = 2\n",
            "[detection] states both false_alerts_per_day and recurrence_days",
        ),
        (
            MINIMAL + "[basemap]\ntiles = 'ftp://x/{z}/{x}/{y}.pbf'\n",
            "[basemap] tiles = 'ftp://x/{z}/{x}/{y}.pbf': expected an http(s) URL template",
        ),
        (MINIMAL + "[basemap]\ntiles = 'https://a'\npmtiles = 'b.pmtiles'\n", "[basemap] needs exactly one of tiles"),
        (
            MINIMAL + "[[special_days]]\ndate = '2016-01-01'\nname = 'New Year'\n",
            "[special_days[0]] date = '2016-01-01': expected a bare TOML local date",
        ),
        (
            MINIMAL + "[[special_days]]\ndate = 2016-01-01T00:00:00\nname = 'New Year'\n",
            "[special_days[0]] date = datetime.datetime(2016, 1, 1, 0, 0): expected a bare TOML local date",
        ),
        (MINIMAL + "[[special_days]]\ndate = 2016-01-01\n", "[special_days[0]] name is missing: expected a non-empty string"),
        (
            MINIMAL + "[[special_days]]\ndate = 2016-01-01\nname = 'x'\nkind = 'party'\n",
            "[special_days[0]] kind = 'party': expected one of 'holiday', 'event'",
        ),
        (MINIMAL + "[[special_days]]\ndate = 2016-01-01\nname = 'x'\nwhen = 'night'\n", "special_days[0]] unknown key 'when'"),
        ('id = "x"\ntimezone = "UTC\n', "not valid TOML"),
    ],
)
def test_each_bad_key_gives_its_precise_message(tmp_path: Path, text: str, expected: str) -> None:
    message = error_of(tmp_path, text)
    assert message.startswith(f"{tmp_path / 'jurisdiction.toml'}: ")
    assert message.count("jurisdiction.toml:") == 1  # named once, not wrapped twice
    assert expected in message


def test_a_missing_profile_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"nope\.toml: cannot read the jurisdiction profile"):
        load_profile(tmp_path / "nope.toml")


def test_bad_geojson_names_the_key_and_the_problem(tmp_path: Path) -> None:
    point = {"type": "Point", "coordinates": [-75.3, 40.1]}
    assert "[boundary] geojson = 'b.geojson': expected a GeoJSON (Multi)Polygon" in error_of(
        tmp_path, MINIMAL + "[boundary]\ngeojson = 'b.geojson'\n", b=point
    )
    # Seattle written (lat, lng): caught where a longitude beyond 90 lands in the latitude (in Pennsylvania it would not be)
    seattle = [[47.60, -122.34], [47.60, -122.30], [47.62, -122.30], [47.60, -122.34]]
    msg = error_of(tmp_path, MINIMAL + "[boundary]\ngeojson = 'b.geojson'\n", b={"type": "Polygon", "coordinates": [seattle]})
    assert "latitude -122.34 is outside [-90, 90]; GeoJSON positions are [longitude, latitude]" in msg
    unnamed = {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"NAME": "A"}, "geometry": SQUARE}]}
    msg = error_of(tmp_path, MINIMAL + "[areas]\ngeojson = 'a.geojson'\n", a=unnamed)
    assert "[areas] geojson = 'a.geojson'" in msg and "feature 0 has no non-empty text property 'name' (its properties: ['NAME'])" in msg
    (tmp_path / "broken.geojson").write_text("{")
    assert "expected a readable GeoJSON file" in error_of(tmp_path, MINIMAL + "[areas]\ngeojson = 'broken.geojson'\n")


def test_a_full_profile_reads_every_key_relative_to_its_folder(tmp_path: Path) -> None:
    (tmp_path / "zones").mkdir()
    (tmp_path / "county.pmtiles").write_bytes(b"PMTiles")
    areas = {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"district": "Norristown"}, "geometry": SQUARE}]}
    text = (
        MINIMAL
        + 'name = "Town, ST"\n[boundary]\ngeojson = "boundary.geojson"\n'
        + '[areas]\ngeojson = "areas.geojson"\nname_property = "district"\nresolution = 9\n'
        + '[zones]\nfolder = "zones"\n[detection]\nrecurrence_days = 4\n[basemap]\npmtiles = "county.pmtiles"\n'
        + '[[special_days]]\ndate = 2016-01-01\nname = "New Year\'s Day"\n'
        + '[[special_days]]\ndate = 2016-11-20\nname = "Marathon"\nkind = "event"\n'
    )
    p = load_profile(write(tmp_path, text, boundary=SQUARE, areas=areas))
    assert p.name == "Town, ST" and p.boundary == SQUARE and p.box == Jurisdiction(40.11, -75.36, 40.14, -75.32)
    assert p.zones_dir == (tmp_path / "zones").resolve() and p.basemap == {"pmtiles": str((tmp_path / "county.pmtiles").resolve())}
    assert p.false_alerts_per_day == 0.25
    assert p.areas.resolution == 9 and p.areas.names() == ("Norristown",)
    assert p.special_day(datetime.date(2016, 11, 20)) == SpecialDay(datetime.date(2016, 11, 20), "Marathon", "event")
    assert p.special_day(datetime.date(2016, 1, 1)) == SpecialDay(datetime.date(2016, 1, 1), "New Year's Day", "holiday")
    assert p.special_day(datetime.date(2016, 1, 2)) is None


def test_the_boundary_contains_points_inside_and_not_outside(tmp_path: Path) -> None:
    """Inside the polygon but outside a box test would fail (an L shape); points beyond its edges are outside."""
    l_shape = {
        "type": "Polygon",
        "coordinates": [
            [[-75.40, 40.10], [-75.30, 40.10], [-75.30, 40.12], [-75.38, 40.12], [-75.38, 40.20], [-75.40, 40.20], [-75.40, 40.10]]
        ],
    }
    p = load_profile(write(tmp_path, MINIMAL + "[boundary]\ngeojson = 'b.geojson'\n", b=l_shape))
    assert p.contains(40.11, -75.32) and p.contains(40.18, -75.39)  # both arms
    assert not p.contains(40.18, -75.32)  # in the box, outside the L
    assert p.box is not None and p.box.contains(40.18, -75.32)
    assert not p.contains(40.25, -75.39) and not p.contains(40.11, -75.25)


def test_a_box_boundary_is_a_box(tmp_path: Path) -> None:
    p = load_profile(write(tmp_path, MINIMAL + "[boundary]\nbox = '39.95,-75.70,40.50,-75.00'\n"))
    assert p.boundary is None and p.box == Jurisdiction(39.95, -75.70, 40.50, -75.00)
    assert p.contains(40.2, -75.3) and not p.contains(40.6, -75.3)


def test_profile_in_code_validates_its_zone_and_budget() -> None:
    with pytest.raises(ValueError, match="timezone must be an IANA zone name"):
        Profile(id="x", name="x", timezone="Nowhere/Land")
    with pytest.raises(ValueError, match="false_alerts_per_day must be a number > 0"):
        Profile(id="x", name="x", timezone="UTC", false_alerts_per_day=-1)
    with pytest.raises(ValueError, match="kind must be one of holiday, event"):
        SpecialDay(datetime.date(2020, 1, 1), "x", "feast")


def test_areas_population_property_gives_each_areas_residents(tmp_path: Path) -> None:
    areas = {
        "type": "FeatureCollection",
        "features": [{"type": "Feature", "properties": {"name": "Norristown", "POP": 35_000}, "geometry": SQUARE}],
    }
    text = MINIMAL + '\n[areas]\ngeojson = "areas.geojson"\npopulation_property = "POP"\n'
    assert load_profile(write(tmp_path, text, areas=areas)).areas.population() == {"Norristown": 35_000.0}
    message = error_of(tmp_path, MINIMAL + '\n[areas]\ngeojson = "areas.geojson"\npopulation_property = "RESIDENTS"\n', areas=areas)
    assert "[areas] geojson" in message and "has no number of residents >= 0 in 'RESIDENTS'" in message
    assert "a non-empty string" in error_of(
        tmp_path, MINIMAL + '\n[areas]\ngeojson = "areas.geojson"\npopulation_property = ""\n', areas=areas
    )
