"""``GET /api/places``: the map's base layer. Every role reads the jurisdiction's outline; only supervisors and
commanders read its named areas (a partner's token gets no ``areas``: the shipped areas are drawn from where calls
happened, so they are data, not public geography); no token is refused as on every other route."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from gateway.api import MAX_PLACES_BYTES
from gateway.places import Places, load_places
from tests.gateway.live import AREA_WORD, INSIDE_AREA, OUTSIDE_AREA, ROOT, GatewayProcess, token, write_profile

MONTGOMERY = ROOT / "infra" / "jurisdictions" / "montgomery-pa" / "jurisdiction.toml"
#: the box of the test profile: around both named areas (Lansdale and Pottstown)
BOX = (40.10, -75.75, 40.35, -75.15)


def write_bounded_profile(folder: Path, timezone: str = "America/Los_Angeles") -> Path:
    """The two-area profile of :func:`tests.gateway.live.write_profile`, bounded by :data:`BOX`."""
    path = write_profile(folder, timezone)
    path.write_text(path.read_text() + '\n[boundary]\nbox = "{},{},{},{}"\n'.format(*BOX))
    return path


def decimals(geometry: dict) -> int:
    """The most decimals of any coordinate of a (Multi)Polygon."""
    rings = geometry["coordinates"] if geometry["type"] == "Polygon" else [r for p in geometry["coordinates"] for r in p]
    return max(len(repr(v).partition(".")[2]) for r in rings for pt in r for v in pt)


def test_montgomerys_places_are_its_boundary_and_62_named_areas_rounded_and_bounded():
    places = load_places(MONTGOMERY)
    body, etag = places.answer(True, MAX_PLACES_BYTES)
    got = json.loads(body)
    assert got["name"] == "Montgomery County, PA"
    assert got["outline"]["type"] in ("Polygon", "MultiPolygon") and decimals(got["outline"]) <= 5
    features = got["areas"]["features"]
    assert len(features) == 62 and {"Norristown", "Lower Merion", "Abington"} <= {f["properties"]["name"] for f in features}
    assert all(set(f) == {"type", "properties", "geometry"} and set(f["properties"]) == {"name"} for f in features)
    assert max(decimals(f["geometry"]) for f in features) == 5
    assert 50_000 < len(body) < MAX_PLACES_BYTES, len(body)
    assert places.answer(True, MAX_PLACES_BYTES) == (body, etag), "made once, the same answer and ETag each time"
    public, public_etag = places.answer(False, MAX_PLACES_BYTES)
    assert json.loads(public)["areas"] is None and json.loads(public)["outline"] == got["outline"] and public_etag != etag


def test_areas_too_long_to_send_are_left_out_saying_why():
    body, _ = load_places(MONTGOMERY).answer(True, 30_000)
    got = json.loads(body)
    assert got["areas"] is None and got["outline"] is not None
    assert "more than the 30000" in got["areas_omitted"] and "simplify" in got["areas_omitted"]


def test_without_a_profile_there_is_nothing_to_outline():
    assert json.loads(Places().answer(True, MAX_PLACES_BYTES)[0]) == {"name": "", "outline": None, "areas": None}


@pytest.mark.stack
def test_places_api_gives_partners_the_outline_only_and_refuses_no_token(prefix, tmp_path):
    gw = GatewayProcess(prefix, env_extra={"WF_PROFILE": str(write_bounded_profile(tmp_path))}).start(tmp_path)
    try:
        south, west, north, east = BOX
        box = [[west, south], [east, south], [east, north], [west, north], [west, south]]
        status, body = gw.get_json("/api/places", token("supervisor", subject="sup-places"))
        assert status == 200, body
        assert body["outline"] == {"type": "Polygon", "coordinates": [box]}
        assert [f["properties"]["name"] for f in body["areas"]["features"]] == [INSIDE_AREA, OUTSIDE_AREA]
        for role, zones in (("transit", ("septa-lansdale",)), ("school", ("school-north-penn-hs",))):
            tok = token(role, zones=zones, subject=f"{role}-places")
            status, raw = gw.get("/api/places", tok)
            assert status == 200, raw[:300]
            body = json.loads(raw)
            assert body["outline"]["coordinates"] == [box] and body["areas"] is None, f"a {role} partner reads no area"
            assert AREA_WORD not in raw.decode(), "no area's name anywhere in a partner's answer"
        status, _ = gw.get("/api/places")
        assert status == 401
        status, _ = gw.get("/api/places", "not-a-token")
        assert status == 401
        status, _ = gw.get("/api/places?x=1", token("supervisor", subject="sup-places"))
        assert status == 400, "unknown parameters are refused as on the other routes"
    finally:
        gw.stop()


@pytest.mark.stack
def test_places_api_is_cacheable_per_token(prefix, tmp_path):
    gw = GatewayProcess(prefix, env_extra={"WF_PROFILE": str(write_bounded_profile(tmp_path))}).start(tmp_path)
    try:
        req = urllib.request.Request(gw.base + "/api/places", headers={"Authorization": f"Bearer {token('supervisor', subject='s')}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            headers = r.headers
        assert headers["Cache-Control"] == "private, max-age=3600" and len(headers.get_all("Cache-Control")) == 1
        assert headers["Vary"] == "Authorization", "a browser must not answer a partner's request with a supervisor's areas"
        assert headers["ETag"].startswith('"') and headers["Content-Type"] == "application/json"
    finally:
        gw.stop()
