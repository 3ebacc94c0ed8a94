"""``GET /api/forecast``, ``GET``/``POST /api/allocation`` and the ``forecast`` frame, against a real gateway and Redis.

The worker's forecast set is planted as it writes it (``P:forecast``, JSON version 1, and ``P:forecast:version``:
the issue 22 contract), over the tests' profile (tests/gateway/live.py: Lansdale Borough holding the Lansdale event
zone, Pottstown Borough far off) and the event zone of tests/gateway/test_overview.py's ``ogw``.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import h3
import pytest

from tests.gateway import test_overview
from tests.gateway.live import (
    FAR,
    IN_LANSDALE,
    INSIDE_AREA,
    LANSDALE,
    OUTSIDE_AREA,
    OUTSIDE_CELLS,
    GatewayProcess,
    recv_until,
    token,
    write_profile,
)

pytestmark = pytest.mark.stack
ogw = test_overview.ogw

ISSUED = 1_700_000_100.0
COMMANDER = {"zones": ("overview-event",), "agency": "Event command"}


def interval(start: float, hours: int, mean: float) -> dict:
    """A forecast F of the contract: mean, 80 % and 95 % intervals around it (wider for the 95 %)."""
    spread = max(1.0, mean**0.5)
    return {
        "start": start,
        "end": start + hours * 3600,
        "mean": mean,
        "lo80": max(0, round(mean - 1.3 * spread)),
        "hi80": round(mean + 1.3 * spread),
        "lo95": max(0, round(mean - 2 * spread)),
        "hi95": round(mean + 2 * spread),
    }


def entry(kind: str, name: str, cells: list[str], per_hour: float, issued: float = ISSUED) -> dict:
    hourly = [interval(issued + h * 3600, 1, per_hour * (1 + 0.1 * h)) for h in range(8)]
    return {
        "kind": kind,
        "name": name,
        "cells": cells,
        "by_horizon": {str(h): interval(issued, h, per_hour * h) for h in (1, 8, 24)},
        "hourly": hourly,
        "categories": {"EMS": {"8": interval(issued, 8, per_hour * 4)}},
    }


def forecast_set(issued: float = ISSUED) -> dict:
    """The jurisdiction (15 calls an hour), Lansdale (3 an hour, the event zone's cells), Pottstown (1 an hour), one
    res-7 cell far off; hot spots in Lansdale (rank 1) and far off (rank 2); the monitor's figures."""
    far7 = h3.cell_to_parent(FAR, 7)
    return {
        "v": 1,
        "issued": issued,
        "made": issued + 3.2,
        "timezone": "UTC",
        "horizons": [1, 8, 24],
        "areas": {
            "jurisdiction": entry("jurisdiction", "Test County", [], 15.0, issued),
            f"area:{INSIDE_AREA}": entry("area", INSIDE_AREA, sorted(LANSDALE.cells), 3.0, issued),
            f"area:{OUTSIDE_AREA}": entry("area", OUTSIDE_AREA, sorted(OUTSIDE_CELLS), 1.0, issued),
            f"h3:{far7}": {"kind": "cell7", "name": f"near {OUTSIDE_AREA}", "cells": [far7], "by_horizon": {"8": interval(issued, 8, 6.0)}},
        },
        "hotspots": {
            "horizon": 8,
            "resolution": 8,
            "area_cells": 400,
            "cells": [
                {"cell": IN_LANSDALE, "mean": 2.3, "rank": 1, "name": f"near {INSIDE_AREA}"},
                {"cell": FAR, "mean": 1.9, "rank": 2, "name": f"near {OUTSIDE_AREA}"},
            ],
            "flagged": {"0.005": 1, "0.01": 2},
        },
        "monitor": {
            "jurisdiction|8": {"n": 12, "mae": 14.1, "coverage80": 0.83, "coverage95": 0.95, "bias": -1.2, "drift": 0},
            "cell6|8": {"n": 12, "mae": 2.2, "coverage80": 0.79, "coverage95": 0.94, "bias": 0.1, "drift": 0},
        },
    }


def plant_forecast(r, prefix: str, fs: dict | None = None) -> int:
    """Write a set as the worker does (the set, then the version INCR'd); returns the new version."""
    r.set(f"{prefix}:forecast", json.dumps(fs or forecast_set()))
    return int(r.incr(f"{prefix}:forecast:version"))


def get(g, path: str, who: str = "supervisor") -> tuple[int, dict]:
    tok = token("commander", **COMMANDER) if who == "commander" else token(who)
    return g.get_json(path, tok)


def post(g, path: str, who: str = "supervisor") -> tuple[int, dict]:
    tok = token("commander", **COMMANDER) if who == "commander" else token(who, subject="sup-adopter")
    req = urllib.request.Request(g.base + path, method="POST", headers={"Authorization": f"Bearer {tok}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_before_any_forecast_the_answer_says_why_and_an_allocation_is_refused_with_503(ogw, prefix, r):
    status, body = get(ogw, "/api/forecast")
    assert (status, body["ready"], body["areas"]) == (200, False, {}) and body["message"].startswith("no forecast yet"), body
    plant_forecast(r, prefix, {"v": 1, "areas": {}, "needs_days": 4})
    status, body = get(ogw, "/api/forecast")
    assert (status, body["version"], body["message"]) == (200, 1, "no forecast yet: the forecaster needs 4 more days of calls"), body
    status, body = get(ogw, "/api/allocation?units=4")
    assert (status, body["error"]) == (503, "no_forecast"), body


def test_supervisor_reads_the_whole_set_and_narrows_it_by_area_and_horizon_with_precise_refusals(ogw, prefix, r):
    version = plant_forecast(r, prefix)
    status, body = get(ogw, "/api/forecast")
    assert status == 200, body
    assert body["version"] == version and body["ready"] and body["issued"] == ISSUED and body["horizon"] is None
    assert set(body["areas"]) == set(forecast_set()["areas"])
    assert [(c["cell"], c["flagged"]) for c in body["hotspots"]["cells"]] == [(IN_LANSDALE, ["0.005", "0.01"]), (FAR, ["0.01"])]
    assert body["hotspots"]["area_cells"] == 400 and set(body["monitor"]) == {"jurisdiction|8", "cell6|8"}

    status, body = get(ogw, f"/api/forecast?area={INSIDE_AREA.upper().replace(' ', '%20')}&horizon=8")
    assert status == 200, body
    lansdale = body["areas"][f"area:{INSIDE_AREA}"]
    assert list(body["areas"]) == [f"area:{INSIDE_AREA}"] and list(lansdale["by_horizon"]) == ["8"]
    assert lansdale["by_horizon"]["8"]["mean"] == 24.0 and len(lansdale["hourly"]) == 8

    assert get(ogw, "/api/forecast?area=jurisdiction")[1]["areas"]["jurisdiction"]["name"] == "Test County"
    status, body = get(ogw, "/api/forecast?area=Atlantis")
    assert (status, body["error"]) == (400, "bad_area") and "give 'jurisdiction', an area's name or key" in body["message"], body
    status, body = get(ogw, "/api/forecast?horizon=6")
    assert (status, body["error"], body["message"]) == (400, "bad_horizon", "horizon must be one of 1, 8, 24 (hours ahead), got 6")
    status, body = get(ogw, "/api/forecast?horizon=soon")
    assert (status, body["error"]) == (400, "bad_horizon"), body
    status, body = get(ogw, "/api/forecast?cell=1")
    assert (status, body["error"]) == (400, "unknown_parameter"), body


def test_a_commander_reads_only_what_lies_in_its_zones_cells(ogw, prefix, r):
    """Not the jurisdiction, not an area reaching outside its cells, not a hot spot outside them, not the
    jurisdiction's monitor figures; an area outside is refused as an unknown one."""
    plant_forecast(r, prefix)
    status, body = get(ogw, "/api/forecast", "commander")
    assert status == 200, body
    assert list(body["areas"]) == [f"area:{INSIDE_AREA}"]
    assert [c["cell"] for c in body["hotspots"]["cells"]] == [IN_LANSDALE] and "area_cells" not in body["hotspots"]
    assert set(body["monitor"]) == {"cell6|8"}
    for outside in (OUTSIDE_AREA, "jurisdiction"):
        status, refused = get(ogw, f"/api/forecast?area={outside.replace(' ', '%20')}", "commander")
        assert (status, refused["error"]) == (400, "bad_area"), refused
    assert get(ogw, "/api/allocation?units=4", "commander")[0] == 403


def test_partners_never_get_the_workers_set(ogw, prefix, r):
    plant_forecast(r, prefix)
    status, body = ogw.get_json("/api/forecast", token("transit", zones=("septa-lansdale",)))
    assert status in (200, 403, 404), body
    assert "hotspots" not in body and "monitor" not in body and INSIDE_AREA not in json.dumps(body)


def test_allocation_recommends_explains_reports_skew_and_is_adopted_audited_and_then_capped(ogw, prefix, r):
    plant_forecast(r, prefix)
    test_overview.plant_scenario(r, prefix)  # the last 24 h: 4 EMS calls in Lansdale, 3 far off
    status, body = get(ogw, "/api/allocation?units=8")
    assert status == 200, body
    rows = {row["key"]: row for row in body["rows"]}
    assert (body["units"], body["floor"], body["cap"], body["adopted"]) == (8, 1, 0.1, None)
    assert rows[f"area:{INSIDE_AREA}"]["units"] == 6 and rows[f"area:{OUTSIDE_AREA}"]["units"] == 2, rows
    assert rows[f"area:{INSIDE_AREA}"]["explanation"].startswith(f"{INSIDE_AREA}: 6 of 8 units (75 %). Forecast about 24 calls")
    assert body["shift"] == {"start": ISSUED, "end": ISSUED + 8 * 3600}
    skew = {row["key"]: row for row in body["skew"]}
    assert skew[f"area:{INSIDE_AREA}"]["calls_share"] == pytest.approx(4 / 7, abs=1e-4), skew
    assert all(row["population_share"] is None and "population not configured" in row["explanation"] for row in body["skew"])

    for query, code in (("", "bad_units"), ("?units=-1", "bad_units"), ("?units=8&floor=5", "bad_floor"), ("?units=8&cap=0", "bad_cap")):
        status, refused = get(ogw, f"/api/allocation{query}")
        assert (status, refused["error"]) == (400, code), (query, refused)

    status, adopted = post(ogw, "/api/allocation?units=8&cap=20")
    assert status == 200, adopted
    stored = json.loads(r.get(f"{prefix}:allocation"))
    assert stored == adopted["adopted"] and stored["by"] == "sup-adopter" and stored["cap"] == 0.2
    assert stored["units_by_area"] == {f"area:{INSIDE_AREA}": 6, f"area:{OUTSIDE_AREA}": 2}
    _, audit = get(ogw, "/api/audit?action=allocation_adopt")
    assert [(a["actor"], a["detail"]["units"]) for a in audit["records"]] == [("sup-adopter", 8)]
    assert post(ogw, "/api/allocation?units=8", "commander")[0] == 403
    assert post(ogw, "/api/overview")[0] == 405

    # the next recommendation's cap is measured against the adopted shares: Pottstown's demand grows ninefold
    fs = forecast_set(ISSUED + 900)
    fs["areas"][f"area:{OUTSIDE_AREA}"] = entry("area", OUTSIDE_AREA, sorted(OUTSIDE_CELLS), 9.0, ISSUED + 900)
    plant_forecast(r, prefix, fs)
    status, body = get(ogw, "/api/allocation?units=10")
    rows = {row["key"]: row for row in body["rows"]}
    pott = rows[f"area:{OUTSIDE_AREA}"]
    # at most 25 % + 10 points (not the 75 % of demand): 35 %, 3 whole units of 10
    assert pott["previous_share"] == 0.25 and pott["cap_bound"] and pott["units"] == 3, pott
    assert "held it there" in pott["explanation"] and body["adopted"]["by"] == "sup-adopter"


def test_a_new_set_is_pushed_as_a_forecast_frame_scoped_like_the_rest_api(ogw, prefix, r):
    with ogw.ws(token("supervisor")) as sup, ogw.ws(token("commander", **COMMANDER)) as com:
        for ws in (sup, com):
            recv_until(ws, lambda f: f["type"] == "caught_up")
        version = plant_forecast(r, prefix)
        got, _ = recv_until(sup, lambda f: f["type"] == "forecast")
        assert got["version"] == version and "jurisdiction" in got["forecast"]["areas"]
        assert not any(e["kind"] == "cell7" for e in got["forecast"]["areas"].values()), "res-7 cells: ask the API"
        got, _ = recv_until(com, lambda f: f["type"] == "forecast")
        assert list(got["forecast"]["areas"]) == [f"area:{INSIDE_AREA}"] and set(got["forecast"]["monitor"]) == {"cell6|8"}


def test_the_skew_report_sets_units_against_the_residents_the_profile_gives(prefix, r, tmp_path):
    """With the areas' population in the profile, each row says its share of units against its share of residents."""
    profile = write_profile(tmp_path, "UTC", residents={INSIDE_AREA: 15_000, OUTSIDE_AREA: 45_000})
    g = GatewayProcess(prefix, env_extra={"WF_PROFILE": str(profile)}).start(tmp_path)
    try:
        plant_forecast(r, prefix)
        status, body = get(g, "/api/allocation?units=8")
    finally:
        g.stop()
    assert status == 200 and body["population"] == "configured", body
    skew = {row["key"]: row for row in body["skew"]}
    inside, outside = skew[f"area:{INSIDE_AREA}"], skew[f"area:{OUTSIDE_AREA}"]
    assert (inside["population_share"], outside["population_share"]) == (0.25, 0.75), skew
    assert "75 % of the units" in inside["explanation"] and "25 % of the population (50 points more)" in inside["explanation"]
