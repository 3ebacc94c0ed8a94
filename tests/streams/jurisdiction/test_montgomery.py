"""The shipped Montgomery County profile loads, names its townships and draws its boundary."""

from __future__ import annotations

import csv
import datetime
from pathlib import Path

import h3
import pytest

from streams.jurisdiction import SpecialDay, load_profile
from tests.conftest import ROOT, data_file

PROFILE = ROOT / "infra" / "jurisdictions" / "montgomery-pa" / "jurisdiction.toml"


def test_the_shipped_profile_loads_and_names_norristown() -> None:
    p = load_profile(PROFILE)
    assert (p.id, p.name, p.timezone) == ("montgomery-pa", "Montgomery County, PA", "America/New_York")
    assert len(p.areas) == 62
    for res in (7, 8, 9, 10):
        assert p.areas.name_of(h3.latlng_to_cell(40.1215, -75.3399, res)) == "Norristown"
    assert p.areas.name_of(h3.latlng_to_cell(40.0085, -75.2907, 8)) == "Lower Merion"  # Ardmore
    assert p.areas.label("882aac95d1fffff") == "Norristown (882aac95d1fffff)"
    assert p.areas.label("882aac95b3fffff") == "Upper Merion (882aac95b3fffff)"  # King of Prussia
    assert p.contains(40.1215, -75.3399) and not p.contains(39.9526, -75.1652)  # Philadelphia City Hall is outside
    assert p.zones_dir == (ROOT / "infra" / "zones").resolve()
    assert p.false_alerts_per_day == 1.0 and p.basemap is None
    assert p.special_day(datetime.date(2016, 11, 24)) == SpecialDay(datetime.date(2016, 11, 24), "Thanksgiving Day", "holiday")
    assert p.special_day(datetime.date(2016, 12, 31)) == SpecialDay(datetime.date(2016, 12, 31), "New Year's Eve", "event")
    assert p.special_day(datetime.date(2016, 1, 18)) == SpecialDay(datetime.date(2016, 1, 18), "Martin Luther King Jr. Day", "holiday")
    assert p.special_day(datetime.date(2016, 1, 19)) is None
    assert len(p.special_days) == 27


def test_the_shipped_geojson_stays_small() -> None:
    folder = PROFILE.parent
    assert sum(f.stat().st_size for f in folder.glob("*.geojson")) < 1_000_000


def test_most_real_calls_fall_inside_the_boundary_and_in_a_named_area() -> None:
    """On the real file: the boundary holds 98 % of the calls and the areas name as many (1,366 fall outside on 2026-12-05)."""
    path: Path | None = data_file("montgomery-pa-911-2015-12-to-2016-08.csv")
    if path is None:
        pytest.skip("../shared/data is absent")
    p = load_profile(PROFILE)
    inside = named = total = 0
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            lat, lng = float(row["lat"]), float(row["lng"])
            total += 1
            inside += p.contains(lat, lng)
            named += p.areas.name_of(h3.latlng_to_cell(lat, lng, 8)) is not None
    assert total == 99_492
    assert inside / total > 0.98 and named / total > 0.98
