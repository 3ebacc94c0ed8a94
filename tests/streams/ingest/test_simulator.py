"""Tests of the seeded 911 simulator (streams/ingest/simulator.py)."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from datetime import datetime
from zoneinfo import ZoneInfo

import h3
import numpy as np
import pytest

from streams.ingest.schema import Category
from streams.ingest.simulator import (
    CALL_TYPES,
    CATEGORY_SHARES,
    EN_ROUTE_DELAY_S,
    HOUR_OF_DAY_SHARES,
    ON_SCENE_DURATION_S,
    WATCHFLOOR_HEADER,
    Injection,
    SimCall,
    Simulator,
    main,
    write_csv,
)

NEW_YORK = ZoneInfo("America/New_York")
START = datetime(2024, 1, 1, tzinfo=NEW_YORK)
START_S = int(START.timestamp())


def csv_bytes(sim: Simulator) -> bytes:
    buf = io.StringIO()
    write_csv(sim.calls(), buf)
    return buf.getvalue().encode()


@pytest.fixture(scope="module")
def four_weeks() -> list[SimCall]:
    """28 default days (~10,800 calls), shared by the statistical tests."""
    return list(Simulator(seed=11, days=28).calls())


def content(call: SimCall) -> tuple:
    """A call without its id (ids shift when injected calls are interleaved)."""
    c = call.call
    return (
        c.received_at, c.category, c.call_type, c.priority, c.lat, c.lng, c.agency, c.source,
        call.dispatched_at, call.en_route_at, call.on_scene_at, call.closed_at, call.unit,
    )  # fmt: skip


def test_same_seed_and_config_give_byte_identical_csv() -> None:
    """Two runs with the same seed and configuration write the same bytes, injections included."""
    inj = Injection(START_S + 30_000, 3600, 25, 40.12, -75.34, 1)
    assert csv_bytes(Simulator(seed=5, days=2, injections=[inj])) == csv_bytes(Simulator(seed=5, days=2, injections=[inj]))


def test_different_seeds_give_different_csv() -> None:
    """Changing only the seed changes the output."""
    assert csv_bytes(Simulator(seed=5, days=1)) != csv_bytes(Simulator(seed=6, days=1))


def test_csv_has_the_watchfloor_header_sorted_rows_and_utc_times() -> None:
    """The CSV has the exact watchfloor header, ids SIM-{seed}-{n:07d} in order, rows sorted by received_at, times in UTC with Z."""
    text = csv_bytes(Simulator(seed=3, days=1)).decode()
    assert text.splitlines()[0] == ",".join(WATCHFLOOR_HEADER)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows
    assert [r["id"] for r in rows] == [f"SIM-3-{n:07d}" for n in range(1, len(rows) + 1)]
    received = [r["received_at"] for r in rows]
    assert received == sorted(received)
    for r in rows[:50]:
        for column in ("received_at", "dispatched_at", "en_route_at", "on_scene_at", "closed_at"):
            assert r[column].endswith("Z") and len(r[column]) == 20, r[column]
        assert r["agency"] == "sim-911" and r["unit"] and r["priority"] in {"1", "2", "3"}


def test_daily_volume_is_close_to_calls_per_day_over_28_days() -> None:
    """Over 28 days the mean daily count is within 8% of the configured calls_per_day."""
    calls = list(Simulator(seed=2, days=28, calls_per_day=150).calls())
    assert abs(len(calls) / 28 - 150) / 150 < 0.08


def test_daily_counts_are_overdispersed_unless_disabled() -> None:
    """With the calibrated gamma multiplier daily counts vary well beyond Poisson; with daily_rate_shape=None they do not."""

    def var_over_mean(shape: float | None) -> float:
        calls = Simulator(seed=4, days=56, daily_rate_shape=shape).calls()
        per_day = Counter(datetime.fromtimestamp(c.call.received_at, NEW_YORK).date() for c in calls)
        n = np.array(list(per_day.values()), dtype=float)
        return float(n.var(ddof=1) / n.mean())

    assert var_over_mean(53.1) > 3.0
    # Only the day-of-week rhythm is left: roughly 1 + 386 * 0.0056.
    assert var_over_mean(None) < 4.0


def test_hour_of_day_profile_follows_the_calibrated_one(four_weeks: list[SimCall]) -> None:
    """Local hourly counts correlate with the calibrated profile, and 16-17 h is much busier than 03-05 h."""
    hours = np.zeros(24)
    for call in four_weeks:
        hours[datetime.fromtimestamp(call.call.received_at, NEW_YORK).hour] += 1
    assert np.corrcoef(hours, HOUR_OF_DAY_SHARES)[0, 1] > 0.97
    assert hours[16:18].mean() > 3 * hours[3:5].mean()


def test_category_shares_are_near_calibrated(four_weeks: list[SimCall]) -> None:
    """Each category's share is within 2 percentage points of the calibrated mix, and no POLICE call is made up."""
    counts = Counter(call.call.category for call in four_weeks)
    for category, share in CATEGORY_SHARES.items():
        assert abs(counts[category] / len(four_weeks) - share) < 0.02, category
    assert counts[Category.POLICE] == 0


def test_call_types_and_priorities_come_from_the_category_lists(four_weeks: list[SimCall]) -> None:
    """Every call's type and priority is an entry of its category's list."""
    allowed = {cat: {(t, p) for t, _, p in types} for cat, types in CALL_TYPES.items()}
    assert all((c.call.call_type, c.call.priority) in allowed[c.call.category] for c in four_weeks)


def test_lifecycle_times_are_ordered_and_within_their_ranges(four_weeks: list[SimCall]) -> None:
    """received <= dispatched <= en_route <= on_scene <= closed, with turnout 30-120 s and 20-60 min on scene."""
    for c in four_weeks:
        assert c.call.received_at <= c.dispatched_at <= c.en_route_at <= c.on_scene_at <= c.closed_at
        assert EN_ROUTE_DELAY_S[0] - 1 <= c.en_route_at - c.dispatched_at <= EN_ROUTE_DELAY_S[1] + 1
        assert ON_SCENE_DURATION_S[0] - 1 <= c.closed_at - c.on_scene_at <= ON_SCENE_DURATION_S[1] + 1
    delays = np.array([c.dispatched_at - c.call.received_at for c in four_weeks])
    assert 190 < np.median(delays) < 235  # calibrated median 211 s


def test_locations_stay_in_the_jurisdiction_and_concentrate_in_hot_spots(four_weeks: list[SimCall]) -> None:
    """Every call lies within the radius; the 100 busiest H3 cells hold far more than a uniform share."""
    lat = np.array([c.call.lat for c in four_weeks])
    lng = np.array([c.call.lng for c in four_weeks])
    dy = (lat - 40.15) * 111.195
    dx = (lng + 75.30) * 111.195 * np.cos(np.radians(40.15))
    assert np.hypot(dx, dy).max() <= 20.0 + 1e-3
    cells = Counter(h3.latlng_to_cell(a, b, 8) for a, b in zip(lat.tolist(), lng.tolist(), strict=True))
    top100 = sum(n for _, n in cells.most_common(100)) / len(four_weeks)
    assert 0.25 < top100 < 0.6  # measured 0.376; uniform over ~1,700 cells would give ~0.06


@pytest.mark.parametrize("spread", [0, 1])
def test_injection_adds_exactly_extra_calls_in_its_cells_and_window(spread: int) -> None:
    """An injection adds exactly extra_calls calls inside its cell (or cell + neighbours) and window; the background is unchanged."""
    inj = Injection(START_S + 86_400 + 17 * 3600, 5400, 37, 40.1213, -75.3399, spread_cells=spread, category="FIRE")
    base = list(Simulator(seed=9, days=3).calls())
    with_inj = list(Simulator(seed=9, days=3, injections=[inj]).calls())

    injected = [c for c in with_inj if c.injection == 0]
    assert len(with_inj) - len(base) == len(injected) == 37
    assert [content(c) for c in with_inj if c.injection is None] == [content(c) for c in base]

    cells = set(inj.cells())
    assert len(cells) == (7 if spread else 1)

    def in_incident(calls: list[SimCall]) -> int:
        return sum(inj.start_s <= c.call.received_at < inj.end_s and h3.latlng_to_cell(c.call.lat, c.call.lng, 8) in cells for c in calls)

    assert in_incident(with_inj) - in_incident(base) == 37
    assert all(c.call.category is Category.FIRE for c in injected)
    if spread:
        assert len({h3.latlng_to_cell(c.call.lat, c.call.lng, 8) for c in injected}) > 1


def test_injected_calls_are_unlabelled_in_the_csv_and_listed_in_the_sidecar(tmp_path, capsys) -> None:
    """The CLI writes no label into the CSV and the injected call ids, cells and window to <out>.injections.json."""
    out = tmp_path / "sim.csv"
    argv = ["--out", str(out), "--days", "2", "--seed", "4", "--no-progress", "--inject", "2024-01-01T18:00,60,20,40.12,-75.34,1"]
    assert main(argv) == 0
    assert capsys.readouterr().out.startswith("wrote ")
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert list(rows[0]) == list(WATCHFLOOR_HEADER)
    truth = json.loads((tmp_path / "sim.csv.injections.json").read_text())
    [inj] = truth["injections"]
    assert inj["start"] == "2024-01-01T23:00:00Z" and inj["end"] == "2024-01-02T00:00:00Z"
    assert len(inj["call_ids"]) == 20 and len(inj["cells"]) == 7
    by_id = {r["id"]: r for r in rows}
    for call_id in inj["call_ids"]:
        row = by_id[call_id]
        assert h3.latlng_to_cell(float(row["lat"]), float(row["lng"]), 8) in inj["cells"]
        assert inj["start"] <= row["received_at"] < inj["end"]


def test_cli_rejects_bad_arguments_with_a_clear_message(tmp_path, capsys) -> None:
    """A malformed --inject or --days exits with status 2 and names the problem."""
    out = str(tmp_path / "x.csv")
    with pytest.raises(SystemExit) as exc:
        main(["--out", out, "--inject", "2024-01-01T18:00,60,twenty,40.12,-75.34"])
    assert exc.value.code == 2
    assert "--inject EXTRA must be an integer" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--out", out, "--days", "-1"])
    assert "days must be a finite number > 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--out", out, "--days", "1", "--inject", "2024-03-01T18:00,60,5,40.12,-75.34"])
    assert "outside the simulation" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"days": 0}, "days"),
        ({"calls_per_day": float("nan")}, "calls_per_day"),
        ({"centre_lat": 91}, "centre_lat"),
        ({"centre_lng": -181}, "centre_lng"),
        ({"radius_km": 0}, "radius_km"),
        ({"hot_spots": -2}, "hot_spots"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"daily_rate_shape": 0}, "daily_rate_shape"),
        ({"start": datetime(2024, 1, 1)}, "start"),
        ({"injections": ["not an injection"]}, r"injections\[0\]"),
        ({"days": 1, "injections": [Injection(START_S + 80_000, 7200, 3, 40.1, -75.3)]}, r"injections\[0\]"),
    ],
)
def test_bad_constructor_values_raise_value_error_naming_the_parameter(kwargs: dict, name: str) -> None:
    """Each invalid Simulator argument raises ValueError whose message names that argument."""
    with pytest.raises(ValueError, match=name):
        Simulator(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"duration_s": -5}, "duration_s"),
        ({"extra_calls": -1}, "extra_calls"),
        ({"lat": 95}, "lat"),
        ({"spread_cells": 2}, "spread_cells"),
        ({"category": "ARSON"}, "category"),
        ({"category": "POLICE"}, "category"),
        ({"start": datetime(2024, 1, 1)}, "start"),
    ],
)
def test_bad_injection_values_raise_value_error_naming_the_parameter(kwargs: dict, name: str) -> None:
    """Each invalid Injection argument raises ValueError whose message names that argument."""
    args = {"start": START_S, "duration_s": 600, "extra_calls": 5, "lat": 40.1, "lng": -75.3} | kwargs
    with pytest.raises(ValueError, match=name):
        Injection(**args)
