"""Where the worker accepts calls: the jurisdiction profile's boundary, else WF_JURISDICTION's box."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streams.counting.state import RedisState, jurisdiction_extent
from streams.ingest.schema import InvalidRecord, Jurisdiction, Reason, parse_event
from streams.runtime.settings import SettingsError, load_settings

MONTGOMERY = Path(__file__).resolve().parents[3] / "infra" / "jurisdictions" / "montgomery-pa" / "jurisdiction.toml"
NOW = 1_453_600_000.0


def _call(lat: float, lng: float) -> bytes:
    return json.dumps(
        {"type": "call", "v": 1, "id": "c1", "received_at": "2016-01-23T16:02:11Z", "category": "EMS", "call_type": "FALL",
         "priority": None, "lat": lat, "lng": lng, "agency": "a", "source": "s"}
    ).encode()  # fmt: skip


def test_the_profiles_boundary_decides_and_the_dead_letter_names_the_jurisdiction() -> None:
    settings = load_settings({"WF_PROFILE": str(MONTGOMERY)})
    extent = RedisState.from_settings(settings).config.jurisdiction
    assert extent is not None and extent is jurisdiction_extent(settings), "read once per process"
    parse_event(_call(40.1215, -75.3399), now=NOW, jurisdiction=extent)  # Norristown
    # Center City Philadelphia: inside the county's bounding box's longitudes, outside its boundary
    with pytest.raises(InvalidRecord) as refused:
        parse_event(_call(39.9526, -75.1652), now=NOW, jurisdiction=extent)
    assert refused.value.reason is Reason.OUTSIDE_JURISDICTION
    assert refused.value.detail.endswith("outside the configured jurisdiction Montgomery County, PA")
    # the profile's box alone would have let a point in the box's corner through, the boundary does not
    assert extent.box is not None and extent.box.contains(40.45, -75.05) and not extent.contains(40.45, -75.05)


def test_without_a_profile_the_box_decides_and_both_at_once_are_refused() -> None:
    box = "39.9,-75.7,40.5,-75.0"
    assert jurisdiction_extent(load_settings({"WF_JURISDICTION": box})) == Jurisdiction.parse(box)
    assert jurisdiction_extent(load_settings({})) is None
    with pytest.raises(SettingsError, match="WF_JURISDICTION"):
        jurisdiction_extent(load_settings({"WF_PROFILE": str(MONTGOMERY), "WF_JURISDICTION": box}))
