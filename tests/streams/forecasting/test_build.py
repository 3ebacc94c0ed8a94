"""The forecast set (streams/forecasting/build.py): its schema, its areas, its hot spots."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import h3
import pytest

from detectors.forecast import ShiftForecaster
from detectors.forecast_monitor import LEVELS
from streams.forecasting.build import HOURLY_WINDOWS, Places, area_keys, build_set, forecast_cells, monitored
from streams.ingest.schema import CATEGORIES
from streams.jurisdiction import Areas, load_profile
from tests.detectors.conftest import CENTRE, MONDAY, TOWN, background, burst, merged

ROOT = Path(__file__).resolve().parents[3]
BUSY = TOWN[0]


@pytest.fixture(scope="module")
def trained() -> tuple[ShiftForecaster, float, list[str]]:
    """A forecaster that learnt five days of a small town, a busy cell above all; the next quarter hour; its res-7 cells."""
    f = ShiftForecaster("America/New_York", warmup_calls=200, warmup_hours=24)
    calls = merged(background(1, days=5), *(burst(d, MONDAY + d * 86400 + 3600 * 12, 40, 600, (BUSY,)) for d in range(5)))
    for x in calls:
        f.learn_one(x)
    assert f.ready()
    issued = math.floor(calls[-1].t / 900) * 900 + 900
    return f, issued, sorted({str(h3.cell_to_parent(x.cell, 7)) for x in calls})


def town_places(grid: frozenset[str] = frozenset()) -> Places:
    north = {c: "North Town" for c in TOWN[:60]}
    south = {c: "South Town" for c in TOWN[60:]}
    areas = Areas({**north, **south})
    from streams.forecasting.build import Place

    keys = area_keys(["North Town", "South Town"])
    places = tuple(Place(keys[n], "area", n, tuple(sorted(c for c, m in {**north, **south}.items() if m == n))) for n in keys)
    return Places("Town County", "America/New_York", places, grid, areas)


def test_the_set_has_the_contract_schema(trained):
    """Version, times, horizons; every area's kind, name, cells and forecasts; hourly and categories where the contract
    says; each forecast's bounds integers around its mean; the whole is JSON."""
    f, issued, cells7 = trained
    s = build_set(f, issued, town_places(), cells7=cells7, seen8=TOWN, monitor={"jurisdiction|1": {"n": 1}}, made=1.5)
    assert json.loads(json.dumps(s)) == s
    assert (s["v"], s["issued"], s["made"], s["timezone"], s["horizons"]) == (1, issued, 1.5, "America/New_York", [1, 8, 24])
    assert s["monitor"] == {"jurisdiction|1": {"n": 1}}
    kinds = {k: e["kind"] for k, e in s["areas"].items()}
    assert kinds["jurisdiction"] == "jurisdiction" and kinds["area:north-town"] == kinds["area:south-town"] == "area"
    assert {k for k, v in kinds.items() if v == "cell7"} == {f"h3:{c}" for c in cells7}
    assert {k for k, v in kinds.items() if v == "cell6"} == {f"h3:{h3.cell_to_parent(c, 6)}" for c in cells7}
    for key, entry in s["areas"].items():
        assert set(entry["by_horizon"]) == {"1", "8", "24"}
        for h, fc in entry["by_horizon"].items():
            assert fc["end"] - fc["start"] == int(h) * 3600 and fc["start"] == issued
            assert all(isinstance(fc[b], int) for b in ("lo80", "hi80", "lo95", "hi95"))
            assert fc["lo95"] <= fc["lo80"] <= fc["mean"] <= fc["hi80"] + 1 and fc["hi80"] <= fc["hi95"]
        assert ("hourly" in entry) == (entry["kind"] != "cell7")
        assert ("categories" in entry) == (entry["kind"] in ("jurisdiction", "area"))
        if "hourly" in entry:
            assert [w["start"] for w in entry["hourly"]] == [issued + 3600 * i for i in range(HOURLY_WINDOWS)]
        if "categories" in entry:
            assert set(entry["categories"]) == set(CATEGORIES)
            eight = sum(c["8"]["mean"] for c in entry["categories"].values())
            assert eight == pytest.approx(entry["by_horizon"]["8"]["mean"], rel=0.01)
        if entry["kind"] in ("cell6", "cell7"):
            assert entry["cells"] == [key.removeprefix("h3:")] and entry["name"].startswith("near ")
    assert s["areas"]["jurisdiction"]["cells"] == [] and s["areas"]["jurisdiction"]["name"] == "Town County"


def test_areas_add_up_to_the_jurisdiction_and_hourly_windows_to_the_shift(trained):
    """The two towns hold every cell called from: their means sum to nearly the jurisdiction's (the rest is the share the
    shrinkage keeps for cells never called from); eight hours add up to the 8-hour window."""
    f, issued, cells7 = trained
    s = build_set(f, issued, town_places(), cells7=cells7, made=0.0)
    areas = s["areas"]
    for h in ("1", "8", "24"):
        towns = areas["area:north-town"]["by_horizon"][h]["mean"] + areas["area:south-town"]["by_horizon"][h]["mean"]
        assert 0.95 * areas["jurisdiction"]["by_horizon"][h]["mean"] <= towns <= areas["jurisdiction"]["by_horizon"][h]["mean"]
    whole = areas["jurisdiction"]
    assert sum(w["mean"] for w in whole["hourly"]) == pytest.approx(whole["by_horizon"]["8"]["mean"], rel=1e-3)


def test_hot_spots_rank_the_grid_by_the_next_shift_and_list_the_top_five_percent(trained):
    """On a boundary grid of 1,000+ cells the busy cell ranks first, the list holds the top 5 % in decreasing order, and
    the flagged counts are those of 0.5 % and 1 % of the grid; without a grid the cells seen are ranked."""
    f, issued, cells7 = trained
    grid = frozenset(str(c) for c in h3.grid_disk(CENTRE, 20))
    s = build_set(f, issued, town_places(grid), cells7=cells7, seen8=TOWN, made=0.0)
    hot = s["hotspots"]
    assert (hot["horizon"], hot["resolution"], hot["area_cells"]) == (8, 8, len(grid))
    assert len(hot["cells"]) == math.floor(0.05 * len(grid))
    assert hot["cells"][0]["cell"] == BUSY and hot["cells"][0]["name"] == "near North Town"
    means = [c["mean"] for c in hot["cells"]]
    assert means == sorted(means, reverse=True) and [c["rank"] for c in hot["cells"]] == list(range(1, len(means) + 1))
    assert hot["flagged"] == {"0.005": math.floor(0.005 * len(grid)), "0.01": math.floor(0.01 * len(grid))}
    seen = build_set(f, issued, town_places(), cells7=cells7, seen8=TOWN, made=0.0)["hotspots"]
    assert seen["area_cells"] == len(TOWN) and seen["cells"][0]["cell"] == BUSY and seen["flagged"] == {"0.005": 1, "0.01": 1}


def test_monitored_windows_are_the_jurisdiction_and_cells_at_every_horizon(trained):
    f, issued, cells7 = trained
    s = build_set(f, issued, town_places(), cells7=cells7, made=0.0)
    windows = list(monitored(s))
    assert {level for level, *_ in windows} == set(LEVELS)
    assert len(windows) == 3 * (1 + len(cells7) + len({h3.cell_to_parent(c, 6) for c in cells7}))
    level, key, horizon, fc = next(w for w in windows if w[0] == "cell7")
    entry = s["areas"][f"h3:{key}"]["by_horizon"][str(horizon)]
    assert (fc.start, fc.end, fc.mean, fc.lo80, fc.hi95) == (entry["start"], entry["end"], entry["mean"], entry["lo80"], entry["hi95"])


def test_the_shipped_profile_gives_named_areas_and_the_boundary_grid():
    """Montgomery's profile: 62 municipalities keyed by name, each with res-8 cells, and the res-8 cells of its boundary."""
    places = Places.from_profile(load_profile(ROOT / "infra/jurisdictions/montgomery-pa/jurisdiction.toml"))
    assert len(places.areas) == 62 and len({p.key for p in places.areas}) == 62
    assert all(p.key.startswith("area:") and p.cells and all(h3.get_resolution(c) == 8 for c in p.cells) for p in places.areas)
    assert 1000 < len(places.grid) < 3000 and all(h3.get_resolution(c) == 8 for c in places.grid)
    norristown = next(p for p in places.areas if p.name == "Norristown")
    assert places.near(norristown.cells[0]) == "near Norristown"


def test_forecast_cells_bring_any_index_resolution_to_one_the_forecaster_takes():
    fine = h3.cell_to_children(CENTRE, 10)[0]
    assert forecast_cells(fine) == {CENTRE}
    assert forecast_cells(CENTRE) == {CENTRE}
    coarse = h3.cell_to_parent(CENTRE, 4)
    assert all(h3.get_resolution(c) == 6 for c in forecast_cells(coarse)) and len(forecast_cells(coarse)) == 49


def test_a_set_of_a_county_builds_in_well_under_a_second(trained):
    """Montgomery's 62 areas and 1,660 grid cells with this forecaster: the build the agent runs in a thread.
    Loose bound (a shared test machine); measured about 0.15 s on a forecaster trained on 9 months of the county's calls."""
    f, issued, cells7 = trained
    places = Places.from_profile(load_profile(ROOT / "infra/jurisdictions/montgomery-pa/jurisdiction.toml"))
    started = time.perf_counter()
    s = build_set(f, issued, places, cells7=cells7, made=0.0)
    assert time.perf_counter() - started < 2.0
    assert len(s["areas"]) >= 63 and s["hotspots"]["area_cells"] == len(places.grid)
