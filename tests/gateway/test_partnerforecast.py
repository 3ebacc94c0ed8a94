"""The partner's forecast (gateway/partnerforecast.py): a function of its released windows, said in whole calls."""

from __future__ import annotations

import datetime
import json
import random
import re
from zoneinfo import ZoneInfo

import pytest

from gateway.disclosure import Plan, release_window, units_for
from gateway.partnerforecast import partner_forecast
from tests.gateway.live import ZONES

UTC = datetime.UTC
DAY = 1_700_006_400.0  # Wed 2023-11-15 00:00 UTC
UNITS = [{"id": "a", "name": "Station A"}, {"id": "b", "name": "Station B"}]


def table(days: int, value, *, window_min: int = 60, units=("a", "b"), first: float = DAY) -> list[dict]:
    """``days`` days of released windows from ``first``; ``value(day, start, unit)`` gives each unit's groups."""
    size = window_min * 60
    return [
        {"start": first + i * size, "minutes": window_min, "values": {u: value(i * size // 86400, first + i * size, u) for u in units}}
        for i in range(days * 86400 // size)
    ]


def test_a_window_is_the_mean_of_the_same_hour_on_the_previous_days_in_whole_calls():
    """Three days at 02:00 with 3, 4 and 6 calls: usually 4-5 calls (mean 4.33), least 3, most 6, from the three days."""
    at_two = {0: 3, 1: 4, 2: 6}
    windows = table(3, lambda d, s, u: {"all": at_two[d] if (s % 86400) == 7200 else 10})
    f = partner_forecast(windows, UNITS, window_min=60, k=3, tz=UTC)
    assert f["after"] == DAY + 3 * 86400 and f["horizon_h"] == 8 and not f["same_weekday"]
    two = f["units"][0]["windows"][2]
    assert (two["start"], two["end"]) == (DAY + 3 * 86400 + 7200, DAY + 3 * 86400 + 10800)
    assert (two["low"], two["high"], two["least"], two["most"]) == (4, 5, 3, 6)
    assert two["days"] == ["2023-11-15", "2023-11-16", "2023-11-17"]
    assert two["text"] == "usually 4-5 calls between 02:00 and 03:00, from the counts released to you on the previous 3 days"
    assert f["units"][0]["windows"][0]["text"].startswith("usually 10 calls between 00:00 and 01:00")
    assert f["days"] == ["2023-11-15", "2023-11-16", "2023-11-17"]
    assert "2023-11-15 to 2023-11-17" in f["text"]


def test_a_withheld_value_counts_as_anything_from_0_to_k_minus_1_in_each_group():
    """Groups: EMS 5 shown and OTHER withheld give 5-8 with k = 4 on each day; all withheld: fewer than k."""
    windows = table(2, lambda d, s, u: {"EMS": 5, "OTHER": None} if u == "a" else {"EMS": None, "OTHER": None})
    f = partner_forecast(windows, UNITS, window_min=60, k=4, tz=UTC)
    a, b = (u["windows"][0] for u in f["units"])
    assert (a["low"], a["high"], a["least"], a["most"]) == (5, 8, 5, 8)
    assert a["text"].startswith("usually 5-8 calls")
    assert (b["low"], b["high"], b["least"], b["most"]) == (0, 6, 0, 6)  # two groups below 4: 0..3 each
    assert b["text"].startswith("usually 0-6 calls")
    c = partner_forecast(table(2, lambda d, s, u: {"all": None}), UNITS, window_min=60, k=4, tz=UTC)["units"][0]["windows"][0]
    assert (c["low"], c["high"]) == (0, 3) and c["text"].startswith("usually fewer than 4 calls")


def test_the_forecast_is_a_function_of_the_released_table_whatever_the_calls_behind_it():
    """Two different weeks of calls whose released tables are the same (they differ only below k and in cells beside the
    zones) give the same forecast, byte for byte; the released table's order does not matter either."""
    zones = [ZONES["septa-lansdale"], ZONES["septa-ambler"]]
    plan = Plan("p", units_for(zones), window_min=60, k=3, history_h=168)
    busy, quiet = (sorted(u.cells) for u in plan.units)
    outside = "882aac941dfffff"
    assert outside not in plan.cells
    rng = random.Random(5)
    one, two = [], []
    for h in range(7 * 24):
        counts = {(rng.choice(busy), "EMS"): rng.choice([0, 1, 3, 4, 7]) for _ in range(3)}
        # the quiet unit: 1 call in one week, 2 in the other (withheld both times); calls beside the zones differ too
        one.append(release_window(plan, DAY + h * 3600, {**counts, (quiet[0], "POLICE"): 1, (outside, "EMS"): 9}).to_json())
        two.append(release_window(plan, DAY + h * 3600, {**counts, (quiet[1], "FIRE"): 2, (outside, "EMS"): 40}).to_json())
    assert one == two  # the same released table
    assert all(w["values"][plan.units[1].id]["all"] is None for w in one)
    units = [{"id": u.id, "name": u.name} for u in plan.units]
    tz = ZoneInfo("America/New_York")
    f1 = partner_forecast(one, units, window_min=60, k=3, tz=tz)
    f2 = partner_forecast(list(reversed(two)), units, window_min=60, k=3, tz=tz)
    assert json.dumps(f1) == json.dumps(f2)
    assert f1["units"][0]["windows"] and all(w["days"] for u in f1["units"] for w in u["windows"])


def test_only_units_of_the_answer_appear_and_no_cell_or_group_is_named():
    """The answer's places are the units given (their ids, names and zones), never a cell or a category group."""
    windows = table(2, lambda d, s, u: {"Traffic": 4, "Other": None})
    f = partner_forecast(windows, [{"id": "a", "name": "Station A", "zones": ["z1"]}], window_min=60, k=3, tz=UTC)
    assert [(u["id"], u["name"], u["zones"]) for u in f["units"]] == [("a", "Station A", ["z1"])]
    text = json.dumps(f)
    assert not re.search(r"8[0-9a-f]{14}", text) and "Traffic" not in text and '"b"' not in text
    assert set(f["units"][0]["windows"][0]) == {"start", "end", "low", "high", "least", "most", "days", "text"}


def test_the_same_weekday_is_used_once_three_weeks_are_released():
    """With 22 days of history every target has three same-weekday days: only those are used (Wednesdays here)."""
    windows = table(22, lambda d, s, u: {"all": 20 if d % 7 == 1 else 3})  # day 0 is a Wednesday; after is day 22, a Thursday
    f = partner_forecast(windows, UNITS, window_min=60, k=3, tz=UTC)
    w = f["units"][0]["windows"][0]
    assert f["same_weekday"] and (w["low"], w["high"]) == (20, 20)
    assert w["days"] == ["2023-11-16", "2023-11-23", "2023-11-30"]
    assert w["text"].endswith("from the counts released to you on the previous 3 Thursdays")
    assert "the same weekday on previous weeks" in f["text"]
    # two weeks only: every previous day
    g = partner_forecast(windows[-14 * 24 :], UNITS, window_min=60, k=3, tz=UTC)
    assert not g["same_weekday"] and len(g["units"][0]["windows"][0]["days"]) == 14


def test_days_without_a_released_window_are_left_out_and_said():
    """A day whose window is not in the table (not yet released under this layout, expired) is not used, and the text
    says how many of the previous days were."""
    windows = [w for w in table(7, lambda d, s, u: {"all": 5}) if not DAY + 2 * 86400 <= w["start"] < DAY + 4 * 86400]
    f = partner_forecast(windows, UNITS, window_min=60, k=3, tz=UTC)
    w = f["units"][0]["windows"][0]
    assert len(w["days"]) == 5 and w["text"].endswith("on 5 of the previous 7 days")


def test_local_time_of_day_holds_across_a_daylight_saving_change():
    """In New York across 2024-03-10 (spring forward), 08:00 EDT is compared with 08:00 EST on the days before, which are
    13:00 UTC windows, not the 12:00 UTC ones."""
    tz = ZoneInfo("America/New_York")
    first = 1709874000.0  # 2024-03-08 05:00 UTC, midnight EST
    windows = table(3, lambda d, s, u: {"all": 9 if datetime.datetime.fromtimestamp(s, tz).hour == 8 else None}, first=first)
    after = first + 3 * 86400  # 2024-03-11 05:00 UTC = 01:00 EDT
    f = partner_forecast(windows, UNITS, window_min=60, k=3, tz=tz, horizon_h=8)
    assert f["after"] == after
    eight = next(w for w in f["units"][0]["windows"] if datetime.datetime.fromtimestamp(w["start"], tz).hour == 8)
    assert (eight["low"], eight["high"]) == (9, 9) and eight["text"].startswith("usually 9 calls between 08:00 and 09:00")
    assert eight["days"] == ["2024-03-08", "2024-03-09", "2024-03-10"]


@pytest.mark.parametrize(("window_min", "horizon_h", "n"), [(60, 1, 1), (60, 8, 8), (60, 24, 24), (15, 8, 32), (1440, 8, 1), (180, 8, 3)])
def test_the_targets_are_the_agreements_windows_after_the_newest_released_one(window_min, horizon_h, n):
    """The next ``horizon_h`` hours in windows of the agreement's size, from the end of the newest released window; a
    day-long window is named by its day."""
    windows = table(3, lambda d, s, u: {"all": 4}, window_min=window_min)
    f = partner_forecast(windows, UNITS, window_min=window_min, k=3, tz=UTC, horizon_h=horizon_h)
    ws = f["units"][1]["windows"]
    assert len(ws) == n and ws[0]["start"] == DAY + 3 * 86400
    assert all(b["start"] == a["end"] for a, b in zip(ws, ws[1:], strict=False))
    assert all(w["end"] - w["start"] == window_min * 60 for w in ws)
    if window_min == 1440:
        assert ws[0]["text"] == "usually 4 calls on Sat 18 Nov, from the counts released to you on the previous 3 days"


def test_no_released_windows_no_forecast_and_bad_parameters_are_refused():
    f = partner_forecast([], UNITS, window_min=60, k=3, tz=UTC)
    assert f["after"] is None and f["units"][0]["windows"] == [] and "nothing to base a forecast on" in f["text"]
    with pytest.raises(ValueError, match="horizon_h must be one of 1, 8, 24, got 5"):
        partner_forecast([], UNITS, window_min=60, k=3, tz=UTC, horizon_h=5)
    with pytest.raises(ValueError, match="k must be an integer >= 2"):
        partner_forecast([], UNITS, window_min=60, k=1, tz=UTC)
