"""``GET /api/overview``: calls now against the usual at the worker's watermark, for supervisors and commanders.

Calls are planted as the worker writes them (minute buckets ``P:b:{minute}`` with ``{cell}|{category}`` and
``{cell}|ALL`` fields at res 8 and a coarser parent, ``P:buckets``, ``P:open``, ``P:rt:{hour}``) at known minutes
of today and of previous days, under a fixed watermark in the past (event time, not the wall clock).
"""

from __future__ import annotations

import asyncio
import json

import h3
import pytest

from gateway import overview as ov
from gateway import store as store_mod
from gateway.store import Store
from streams.counting.rolling import hour_of, minute_of
from tests.gateway.live import FAR, IN_LANSDALE, INSIDE_AREA, LANSDALE, REDIS_URL, GatewayProcess, token, write_profile

pytestmark = pytest.mark.stack

WM = 1_700_000_020.0
END = minute_of(WM)
FIRST = END - 1439
DAY = 1440
COARSE = h3.cell_to_parent(IN_LANSDALE, 6)


def plant(r, prefix: str, minute: int, cell: str, category: str, n: int) -> None:
    """``n`` calls of ``category`` in ``cell`` at ``minute``, as the worker counts them (res 8 and its res-7 parent)."""
    key = f"{prefix}:b:{minute}"
    for c in (cell, h3.cell_to_parent(cell, 7)):
        r.hincrby(key, f"{c}|{category}", n)
        r.hincrby(key, f"{c}|ALL", n)
    r.zadd(f"{prefix}:buckets", {str(minute): minute})


def plant_scenario(r, prefix: str) -> None:
    """Today 7 calls (4 EMS in Lansdale in the last minute, 2 FIRE far off 20 min before, 1 TRAFFIC 10 h before);
    the day before 5 (2 EMS in Lansdale, 3 FIRE far off 30 min earlier), two days before 6 EMS in Lansdale, three
    days before none, and nothing counted before that day (its first minute is the oldest bucket)."""
    plant(r, prefix, END, IN_LANSDALE, "EMS", 4)
    plant(r, prefix, END - 20, FAR, "FIRE", 2)
    plant(r, prefix, END - 600, FAR, "TRAFFIC", 1)
    plant(r, prefix, END - DAY, IN_LANSDALE, "EMS", 2)
    plant(r, prefix, END - DAY - 30, FAR, "FIRE", 3)
    plant(r, prefix, END - 2 * DAY, IN_LANSDALE, "EMS", 6)
    r.zadd(f"{prefix}:buckets", {str(FIRST - 3 * DAY): FIRST - 3 * DAY})
    r.hset(f"{prefix}:open", mapping={IN_LANSDALE: 2, FAR: 1, h3.cell_to_parent(IN_LANSDALE, 7): 2, COARSE: 2})
    hour = hour_of(WM)
    r.hset(f"{prefix}:rt:{hour}", mapping={f"dispatch|{COARSE}|n": 4, f"dispatch|{COARSE}|sum": 900, f"dispatch|{COARSE}|le60": 1})
    r.hset(f"{prefix}:rt:{hour - 1}", mapping={f"dispatch|{COARSE}|le300": 2, f"dispatch|{COARSE}|inf": 1})
    r.hset(f"{prefix}:rt:{hour - 30}", mapping={f"dispatch|{COARSE}|n": 100, f"dispatch|{COARSE}|le60": 100})  # over 24 h ago
    r.set(f"{prefix}:wm:call:0", WM)


@pytest.fixture
def ogw(prefix, r, tmp_path):
    """A gateway in UTC (a day is 1,440 minutes) naming the tests' two areas, with an event zone on Lansdale."""
    zone = {
        "id": "overview-event",
        "name": "Overview event",
        "kind": "event",
        "agency": "Event command",
        "cells": sorted(LANSDALE.cells),
        "polygon": h3.cells_to_h3shape(sorted(LANSDALE.cells)).__geo_interface__,
        "active_from": WM - 3600,  # an hour before the watermark
        "active_until": None,
    }
    r.hset(f"{prefix}:zones", zone["id"], json.dumps(zone))
    r.incr(f"{prefix}:zones:version")
    g = GatewayProcess(prefix, env_extra={"WF_PROFILE": str(write_profile(tmp_path, "UTC"))}).start(tmp_path)
    yield g
    g.stop()


def get(g: GatewayProcess, query: str = "", who: str = "supervisor") -> tuple[int, dict]:
    tok = token("commander", zones=("overview-event",), agency="Event command") if who == "commander" else token(who)
    return g.get_json(f"/api/overview{query}", tok)


def tile(body: dict, window: int) -> dict:
    return next(t for t in body["tiles"] if t["window_min"] == window)


def test_supervisor_sees_tiles_series_and_usual_over_the_retained_days_at_the_watermark(ogw, prefix, r):
    """Tiles, the 96 bins and usual/low/high are exact over the 3 previous days counted; open incidents count res-8
    cells only; response medians come from the 24 hourly histograms ending with the watermark's."""
    plant_scenario(r, prefix)
    status, body = get(ogw)
    assert status == 200, body
    assert (body["at"], body["category"], body["area"], body["since"], body["usual_days"]) == (WM, None, None, None, 3)
    assert body["tiles"] == [
        {"window_min": 15, "calls": 4, "usual": 2.67, "low": 0, "high": 6},
        {"window_min": 60, "calls": 6, "usual": 3.67, "low": 0, "high": 6},
        {"window_min": 1440, "calls": 7, "usual": 3.67, "low": 0, "high": 6},
    ]
    bins = body["series"]["bins"]
    assert body["series"]["step_min"] == 15 and len(bins) == 96
    assert [b["start"] for b in bins] == [(FIRST + 15 * i) * 60 for i in range(96)] and bins[-1]["start"] + 15 * 60 == (END + 1) * 60
    assert bins[95] == {"start": (END - 14) * 60, "calls": 4, "usual": 2.67, "low": 0, "high": 6}
    assert bins[94] == {"start": (END - 29) * 60, "calls": 2, "usual": 0.0, "low": 0, "high": 0}
    assert bins[93] == {"start": (END - 44) * 60, "calls": 0, "usual": 1.0, "low": 0, "high": 3}  # the day before, 30 min earlier
    assert sum(b["calls"] for b in bins) == 7 and bins[(1439 - 600) // 15]["calls"] == 1
    assert body["open_incidents"] == 3
    assert body["response"] == {"dispatch": {"n": 4, "median": "<= 300 s"}, "travel": {"n": 0, "median": None}}
    # and per area (the worker's res-6 cell), named by the area holding its centre
    assert body["response_areas"] == [{"cell": COARSE, "name": INSIDE_AREA, **body["response"]}], body["response_areas"]


def test_category_and_area_narrow_the_calls_and_say_what_they_cannot(ogw, prefix, r):
    """category counts that category's fields; area only its res-8 cells (named case-insensitively); open incidents
    are null with a category (not kept per category); response times are null for anything but everything."""
    plant_scenario(r, prefix)
    _, ems = get(ogw, "?category=EMS")
    assert (ems["category"], ems["usual_days"]) == ("EMS", 3)
    assert [(t["calls"], t["usual"], t["low"], t["high"]) for t in ems["tiles"]] == [(4, 2.67, 0, 6)] * 3
    assert (ems["open_incidents"], ems["response"], ems["response_areas"]) == (None, None, None)
    _, fire = get(ogw, "?category=FIRE")
    assert [(t["calls"], t["usual"], t["high"]) for t in fire["tiles"]] == [(0, 0.0, 0), (2, 1.0, 3), (2, 1.0, 3)]
    _, area = get(ogw, "?area=lansdale%20BOROUGH")
    assert (area["area"], area["open_incidents"], area["response"], area["response_areas"]) == (INSIDE_AREA, 2, None, None)
    assert [(t["calls"], t["usual"]) for t in area["tiles"]] == [(4, 2.67)] * 3
    _, both = get(ogw, "?area=Pottstown%20Borough&category=FIRE")
    assert [(t["calls"], t["usual"]) for t in both["tiles"]] == [(0, 0.0), (2, 1.0), (2, 1.0)]


def test_commander_sees_only_its_cells_from_its_zones_start(ogw, prefix, r):
    """A commander's overview sums its zone's cells only and nothing before the zone's start: earlier bins and
    tiles have calls null, and no previous day (all before the start) makes a usual."""
    plant_scenario(r, prefix)
    status, body = get(ogw, who="commander")
    assert status == 200, body
    assert (body["since"], body["usual_days"], body["response"], body["open_incidents"]) == (WM - 3600, 0, None, 2)
    assert body["tiles"] == [
        {"window_min": 15, "calls": 4, "usual": None, "low": None, "high": None},
        {"window_min": 60, "calls": 4, "usual": None, "low": None, "high": None},  # the far-off FIRE is not its
        {"window_min": 1440, "calls": None, "usual": None, "low": None, "high": None},
    ]
    bins = body["series"]["bins"]
    assert [b["calls"] for b in bins[92:]] == [0, 0, 0, 4] and all(b["calls"] is None for b in bins[:92])
    _, other = get(ogw, "?area=Pottstown%20Borough", who="commander")
    assert [t["calls"] for t in other["tiles"][:2]] == [0, 0] and other["open_incidents"] == 0


def test_fewer_days_are_usual_when_the_horizon_has_expired_the_older_ones(ogw, prefix, r):
    """With the retention horizon at the first minute of two days before, the usual is read from 2 days only."""
    plant_scenario(r, prefix)
    r.set(f"{prefix}:horizon", FIRST - 2 * DAY)
    _, body = get(ogw)
    assert body["usual_days"] == 2
    assert tile(body, 15) == {"window_min": 15, "calls": 4, "usual": 4.0, "low": 2, "high": 6}
    assert tile(body, 1440) == {"window_min": 1440, "calls": 7, "usual": 5.5, "low": 5, "high": 6}


def test_no_previous_day_and_no_watermark(ogw, prefix, r):
    """Before any previous day is counted the usual is null and usual_days 0; before any watermark every figure is null."""
    _, empty = get(ogw)
    assert (empty["at"], empty["usual_days"], empty["series"]["bins"], empty["open_incidents"], empty["response"]) == (
        None,
        0,
        [],
        None,
        None,
    )
    assert [t["calls"] for t in empty["tiles"]] == [None, None, None]
    plant(r, prefix, END, FAR, "POLICE", 1)
    r.set(f"{prefix}:wm:call:0", WM)
    _, body = get(ogw)
    assert body["usual_days"] == 0 and tile(body, 15) == {"window_min": 15, "calls": 1, "usual": None, "low": None, "high": None}
    assert all(b["usual"] is None for b in body["series"]["bins"])


def test_partners_are_refused_and_bad_parameters_named(ogw):
    """Partners get the 403 of every precise-only route; a bad category, an unknown area or parameter get a 400 saying so."""
    for partner in (token("transit", zones=("septa-lansdale",)),):
        status, body = ogw.get_json("/api/overview", partner)
        assert (status, body["error"]) == (403, "forbidden"), body
    cases = {
        "?category=ems": ("bad_category", "EMS, FIRE, TRAFFIC, POLICE, OTHER"),
        "?category=EMS&category=FIRE": ("bad_category", "given 2 times"),
        "?area=Atlantis": ("bad_area", "'Atlantis'"),
        "?area=": ("bad_area", "''"),
        "?window=15": ("unknown_parameter", "allowed: area, category"),
    }
    for query, (code, said) in cases.items():
        status, body = get(ogw, query)
        assert (status, body["error"]) == (400, code) and said in body["message"], (query, body)


def test_without_named_areas_an_area_is_refused_saying_so(gw):
    status, body = get(gw, "?area=Norristown")
    assert (status, body["error"]) == (400, "bad_area") and "names no areas" in body["message"]


def test_many_readers_of_one_overview_share_one_read(prefix, r, monkeypatch):
    """Concurrent readers of the same overview (scope, category, watermark minute) cost one read; another scope its own;
    cells asked by name (HMGET) or picked from whole buckets (HGETALL, for many cells) sum the same."""
    plant_scenario(r, prefix)

    async def go():
        st = Store.from_url(REDIS_URL, prefix, 4)
        calls = 0
        real = st._read_overview

        async def counted(*a, **k):
            nonlocal calls
            calls += 1
            return await real(*a, **k)

        st._read_overview = counted  # type: ignore[method-assign]
        try:
            shifts = [DAY * d for d in range(1, 8)]
            got = await asyncio.gather(*(st.overview_reads(END, shifts, None) for _ in range(20)))
            assert calls == 1 and all(g is got[0] for g in got) and got[0].shifts == (DAY, 2 * DAY, 3 * DAY)
            mine = await st.overview_reads(END, shifts, frozenset({IN_LANSDALE}))
            assert calls == 2 and sum(mine.counts.values()) == 4 + 2 + 6
            both = frozenset({IN_LANSDALE, FAR})
            by_name = await st.overview_reads(END, shifts, both, "FIRE")
            monkeypatch.setattr(store_mod, "OVERVIEW_HMGET_CELLS", 1)
            picked = await st.overview_reads(END, shifts, both, "FIRE", open_incidents=False)  # another key: read again
            assert dict(by_name.counts) == dict(picked.counts) == {END - 20: 2, END - DAY - 30: 3}
        finally:
            await st.close()

    asyncio.run(go())


def test_figures_of_sparse_minutes():
    """The pure core: a tile's usual is the mean over the shifted days, a bin before ``since`` has no calls."""
    counts = {100: 1, 100 - 1440: 3, 100 - 2880: 0}
    f = ov.figures(counts, 100, [1440, 2880], since=99)
    assert f["tiles"][0] == {"window_min": 15, "calls": None, "usual": 1.5, "low": 0, "high": 3}
    assert f["series"]["bins"][-1]["calls"] is None and f["series"]["bins"][-1]["usual"] == 1.5
    assert ov.figures(counts, 100, [1440, 2880], since=86)["tiles"][0]["calls"] == 1


def test_hot_spots_carry_each_cells_usual_for_the_short_windows_only_and_not_before_a_commanders_zone(ogw, prefix, r):
    """/api/hotspots: each cell's usual is its mean in the same window on the previous days retained (the map colours
    cells against it); none for the 3 h and 24 h windows, and none for a commander whose zone began an hour ago."""
    plant_scenario(r, prefix)  # Lansdale: 4 now, 2 a day before, 6 two days before, none three days before
    status, body = ogw.get_json("/api/hotspots?window=15", token("supervisor"))
    assert status == 200, body
    lansdale = next(c for c in body["cells"] if c["cell"] == IN_LANSDALE)
    assert (body["usual_days"], lansdale["count"], lansdale["usual"]) == (3, 4, 2.67), body
    _, hour = ogw.get_json("/api/hotspots?window=60", token("supervisor"))
    far = next(c for c in hour["cells"] if c["cell"] == FAR)
    assert (hour["usual_days"], far["count"], far["usual"]) == (3, 2, 1.0), hour  # 3 FIRE 30 min before, a day before
    _, long = ogw.get_json("/api/hotspots?window=180", token("supervisor"))
    assert long["usual_days"] == 0 and all(c["usual"] is None for c in long["cells"]), long
    _, cmd = ogw.get_json("/api/hotspots?window=15", token("commander", zones=("overview-event",), agency="Event command"))
    assert cmd["usual_days"] == 0 and [c["usual"] for c in cmd["cells"]] == [None], cmd


def test_hot_spots_of_one_category_and_its_usual(ogw, prefix, r):
    """/api/hotspots?category=: the cells' calls and usual of that category only; a bad one is named."""
    plant_scenario(r, prefix)
    _, fire = ogw.get_json("/api/hotspots?window=60&category=FIRE", token("supervisor"))
    assert fire["category"] == "FIRE" and [(c["cell"], c["count"], c["usual"]) for c in fire["cells"]] == [(FAR, 2, 1.0)], fire
    _, ems = ogw.get_json("/api/hotspots?window=15&category=EMS", token("supervisor"))
    assert [(c["cell"], c["count"], c["usual"]) for c in ems["cells"]] == [(IN_LANSDALE, 4, 2.67)], ems
    status, bad = ogw.get_json("/api/hotspots?category=ems", token("supervisor"))
    assert (status, bad["error"]) == (400, "bad_category") and "EMS" in bad["message"], bad
