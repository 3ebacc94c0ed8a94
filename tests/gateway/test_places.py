"""The gateway in the jurisdiction's time zone and with its place names: supervisors read names, partners never an area's.

The profile here (written per test, as a city would) is in America/Los_Angeles and names two
areas: one holding the SEPTA Lansdale zone and the cells around it, one around a cell far from
every partner zone. An alert spanning both is published with the worker's ``areas`` and a
``reason`` naming them; the supervisor reads both names, a transit partner of Lansdale reads
neither (nor any other area name) in any frame or API answer, only its own zones' names.
"""

from __future__ import annotations

import json
import time

import h3
import pytest

from gateway.messages import check_narrows
from gateway.places import load_places
from gateway.protocol import ProtocolError
from gateway.zones import Zone
from streams.jurisdiction import ProfileError
from tests.gateway.live import (
    AREA_WORD,
    FAR,
    IN_LANSDALE,
    INSIDE_AREA,
    INSIDE_CELLS,
    LANSDALE,
    OUTSIDE_AREA,
    OUTSIDE_CELLS,
    GatewayProcess,
    drain,
    make_alert,
    publish,
    recv_until,
    token,
    write_profile,
)

# ---------------------------------------------------------------------- pure


def test_places_from_a_profile_name_every_cell_of_an_area_and_nothing_outside(tmp_path):
    places = load_places(write_profile(tmp_path))
    assert places.timezone == "America/Los_Angeles" and places.name == "Test County"
    assert {places.area_of(c) for c in INSIDE_CELLS} == {INSIDE_AREA}
    assert {places.area_of(c) for c in OUTSIDE_CELLS} == {OUTSIDE_AREA}
    between = h3.latlng_to_cell(40.10, -75.40, 8)  # King of Prussia: in neither area
    assert places.area_of(between) is None
    assert places.named([IN_LANSDALE, FAR, between]) == {IN_LANSDALE: INSIDE_AREA, FAR: OUTSIDE_AREA}


def test_places_without_a_profile_are_utc_and_name_nothing():
    places = load_places(None)
    assert places.timezone == "UTC"
    assert places.named([IN_LANSDALE, FAR]) == {}
    assert places.local(1_700_000_047.5) == "2023-11-14 22:14 UTC"


def test_local_times_are_the_profiles_wall_clock_across_a_dst_change(tmp_path):
    places = load_places(write_profile(tmp_path))
    # 2024-03-10 09:59:59 UTC is 01:59:59 PST; one second later it is 03:00:00 PDT
    assert places.local(1_710_064_799.0) == "2024-03-10 01:59 PST"
    assert places.local(1_710_064_800.0) == "2024-03-10 03:00 PDT"
    assert load_places(write_profile(tmp_path, "Asia/Tokyo")).local(1_710_064_800.0) == "2024-03-10 19:00 JST"


def test_a_profile_with_an_unknown_zone_is_refused_naming_it(tmp_path):
    with pytest.raises(ProfileError, match="Mars/Olympus"):
        load_places(write_profile(tmp_path, "Mars/Olympus"))
    with pytest.raises(ProfileError, match="Pacific"):
        load_places(write_profile(tmp_path, "Pacific"))


def test_a_commanders_refusal_states_the_supervisors_end_on_the_jurisdictions_clock(tmp_path):
    places = load_places(write_profile(tmp_path))
    cells = frozenset({IN_LANSDALE})
    before = Zone("parade", "Parade", "event", "NPD", cells, {}, active_from=1_710_050_400.0, active_until=1_710_064_800.0)
    later = Zone("parade", "Parade", "event", "NPD", cells, {}, active_from=1_710_050_400.0, active_until=1_710_068_400.0)
    with pytest.raises(ProtocolError) as exc:
        check_narrows(before, later, places)
    assert exc.value.message == "a commander may not end its zone after 2024-03-10 03:00 PDT (1710064800, the supervisor's end)"


# ---------------------------------------------------------------------- live gateway


def _spanning_alert(alert_id: str) -> dict:
    """An alert on cells inside the Lansdale zone and far outside every zone, named as the worker names it."""
    inside = sorted(LANSDALE.cells)[:2]
    alert = make_alert(alert_id, (*inside, FAR, *sorted(h3.grid_ring(FAR, 1))[:3]), observed=14)
    alert["areas"] = [OUTSIDE_AREA, INSIDE_AREA]
    alert["reason"] = f"14 calls in 15 min in 6 cells around {FAR} ({OUTSIDE_AREA}), 3.0 expected"
    return alert


@pytest.mark.stack
def test_supervisors_read_area_names_and_a_partner_never_reads_one(prefix, r, tmp_path):
    """A transit partner of Lansdale, sent an alert spanning its zone and a named area outside it, reads in no frame and
    no API answer any area's name (neither the outside one, nor the one holding its own zone): only its zones' names.
    The supervisor reads both names in the alert and the map's cell names; every role is told the profile's zone."""
    minute = int(time.time() // 60)
    r.hset(f"{prefix}:b:{minute}", mapping={f"{IN_LANSDALE}|ALL": 9, f"{FAR}|ALL": 6})
    r.set(f"{prefix}:wm:call:0", time.time())
    gw = GatewayProcess(prefix, env_extra={"WF_PROFILE": str(write_profile(tmp_path))}).start(tmp_path)
    try:
        sup_tok = token("supervisor", subject="sup-places")
        partner_tok = token("transit", zones=("septa-lansdale",), subject="septa-places")
        with gw.ws(sup_tok) as sup, gw.ws(partner_tok) as partner:
            recv_until(sup, lambda f: f["type"] == "caught_up")
            recv_until(partner, lambda f: f["type"] == "caught_up")
            publish(r, prefix, _spanning_alert("surge:places:1"))
            got, _ = recv_until(sup, lambda f: f["type"] == "alert")
            assert got["alert"]["areas"] == [OUTSIDE_AREA, INSIDE_AREA]
            assert OUTSIDE_AREA in got["alert"]["reason"]
            shown, frames = recv_until(partner, lambda f: f["type"] == "alert")
            frames += drain(partner, quiet_s=1.2, max_s=3.0)  # and a counts frame or two
            assert shown["alert"]["units"] == ["septa-lansdale"], "the partner is sent the alert, about its own zone"
            assert "areas" not in shown["alert"]
        partner_texts = [json.dumps(f) for f in frames]

        status, me = gw.get_json("/api/me", sup_tok)
        assert status == 200 and me["jurisdiction"] == {"name": "Test County", "timezone": "America/Los_Angeles"}
        status, hot = gw.get_json("/api/hotspots", sup_tok)
        assert status == 200 and {c["cell"]: c["area"] for c in hot["cells"]} == {IN_LANSDALE: INSIDE_AREA, FAR: OUTSIDE_AREA}
        between = h3.latlng_to_cell(40.10, -75.40, 8)
        status, outlines = gw.get_json(f"/api/cells?ids={FAR},{between}", sup_tok)
        assert status == 200 and [(c["cell"], c["area"]) for c in outlines["cells"]] == [(FAR, OUTSIDE_AREA), (between, None)]
        status, alerts = gw.get_json("/api/alerts", sup_tok)
        assert status == 200 and alerts["alerts"][0]["alert"]["areas"] == [OUTSIDE_AREA, INSIDE_AREA]

        own = ",".join(sorted(LANSDALE.cells)[:3])
        for path in ("/api/me", "/api/alerts?state=all", "/api/hotspots", "/api/zones", f"/api/cells?ids={own}", "/api/released"):
            status, body = gw.get(path, partner_tok)
            assert status in (200, 403), (path, status, body[:200])
            partner_texts.append(body.decode())
        status, partner_me = gw.get_json("/api/me", partner_tok)
        assert partner_me["jurisdiction"]["timezone"] == "America/Los_Angeles", "the zone is no secret: partners read times in it too"
        status, partner_cells = gw.get_json(f"/api/cells?ids={own}", partner_tok)
        assert status == 200 and all("area" not in c for c in partner_cells["cells"])
        leaked = [t[:300] for t in partner_texts if AREA_WORD in t or FAR in t]
        assert not leaked, f"a partner read an area name (or the outside cell): {leaked}"
        assert any(LANSDALE.name in t for t in partner_texts), "the partner still reads its own zone's name"
    finally:
        gw.stop()
