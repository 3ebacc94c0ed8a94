"""The forecast evaluation: metrics, baselines and hot-spot scores on hand-made numbers, and bench/forecast_eval.py end to end."""

from __future__ import annotations

import importlib.util
import json
import math
import random
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from detectors.evaluation.forecasting import (
    WEEK_H,
    HotspotScores,
    HourlyCounts,
    Scores,
    coverage,
    flagged_cells,
    hour_of_week_mean,
    hourly_counts,
    mae,
    mase,
    mase_scale,
    mean_width,
    medic,
    pai,
    pei,
    poisson_interval,
    rmse,
    seasonal_naive,
    top_cells,
)
from detectors.forecast import Forecast
from tests.conftest import ROOT

CELL = "882aac941dfffff"
#: The synthetic file starts on Monday 2016-01-04 00:00.
MONDAY = datetime(2016, 1, 4)


def weeks_of(values_per_week: list[float]) -> HourlyCounts:
    """One area whose every hour of week ``w`` holds ``values_per_week[w]`` calls."""
    row = np.repeat(np.array(values_per_week, dtype=np.int64), WEEK_H)
    return HourlyCounts(start=0.0, keys=("a",), counts=row.reshape(1, -1))


def test_the_point_metrics_give_the_hand_computed_values() -> None:
    """MAE, RMSE and MASE of three forecasts match a hand computation."""
    actual, forecast = [3, 0, 6], [1, 0, 10]
    assert mae(actual, forecast) == 2.0
    assert rmse(actual, forecast) == pytest.approx(math.sqrt((4 + 0 + 16) / 3))
    assert mase(actual, forecast, [2.0, 1.0, 4.0]) == pytest.approx((1 + 0 + 1) / 3)


def test_mase_leaves_out_areas_without_a_scale() -> None:
    """An area that never had a call (scale 0) is not scored; with none left MASE is NaN."""
    assert mase([5, 1], [3, 0], [2.0, 0.0]) == 1.0
    assert math.isnan(mase([1], [0], [0.0]))


def test_coverage_and_width_count_closed_intervals() -> None:
    """An actual on a bound is inside; the width is the mean of hi - lo."""
    assert coverage([2, 3, 7, 0], [2, 0, 0, 1], [4, 2, 7, 5]) == 0.5
    assert mean_width([0, 1], [2, 5]) == 3.0


def test_poisson_intervals_hold_their_share_of_a_poisson_count() -> None:
    """The 80 % and 95 % Poisson intervals of mean 10 are the textbook quantiles (6..14 and 4..17), nested."""
    lo80, hi80 = poisson_interval(np.array([10.0, 0.0]), 0.8)
    lo95, hi95 = poisson_interval(np.array([10.0, 0.0]), 0.95)
    assert (lo80.tolist(), hi80.tolist()) == ([6.0, 0.0], [14.0, 0.0])
    assert (lo95.tolist(), hi95.tolist()) == ([4.0, 0.0], [17.0, 0.0])


def test_mase_scale_is_the_in_sample_error_of_last_weeks_value() -> None:
    """Weeks of 1, 3 and 2 calls an hour: last week's value misses by 2 an hour in week 2 and by 1 in week 3."""
    counts = weeks_of([1, 3, 2])
    assert mase_scale(counts, end=3 * WEEK_H, hours=1)[0] == pytest.approx(1.5)
    assert mase_scale(counts, end=2 * WEEK_H, hours=8)[0] == pytest.approx(16.0)
    assert math.isnan(mase_scale(counts, end=WEEK_H, hours=1)[0])


def test_seasonal_naive_medic_and_hour_of_week_mean_on_a_tiny_history() -> None:
    """Six weeks of 1..6 calls an hour: last week says 6, MEDIC the mean of weeks 3..6 (4.5), all weeks 3.5."""
    counts = weeks_of([1, 2, 3, 4, 5, 6, 0])
    origin = 6 * WEEK_H
    assert seasonal_naive(counts, origin, 8)[0] == 48.0
    assert medic(counts, origin, 8)[0] == pytest.approx(8 * 4.5)
    assert hour_of_week_mean(counts, origin, 8)[0] == pytest.approx(8 * 3.5)


def test_medic_adds_the_same_weeks_of_the_year_before() -> None:
    """With a year and four weeks behind the origin, MEDIC averages 4 recent weeks and the 4 weeks before 52 weeks ago."""
    weeks = [0.0] * 60
    weeks[0:4] = [10.0] * 4  # the 4 weeks before the same date last year (weeks 0..3)
    weeks[52:56] = [2.0] * 4  # the previous 4 weeks
    counts = weeks_of(weeks)
    assert medic(counts, 56 * WEEK_H, 1)[0] == pytest.approx((4 * 10 + 4 * 2) / 8)


def test_a_baseline_refuses_an_origin_without_a_week_of_history() -> None:
    """Before one week of history there is no seasonal naive forecast: ValueError naming the origin."""
    with pytest.raises(ValueError, match="origin hour 100"):
        seasonal_naive(weeks_of([1, 1]), 100, 8)


def test_hourly_counts_put_calls_in_their_hour_and_parent_cell() -> None:
    """Calls are counted in their hour, per res-6 parent; calls outside the grid are dropped."""
    calls = [(0.0, CELL, "EMS"), (3599.0, CELL, "EMS"), (3600.0, CELL, "FIRE"), (99_999.0, CELL, "EMS")]
    counts = hourly_counts(calls, "res6", start=0.0, hours=3)
    assert len(counts.keys) == 1 and counts.keys[0].startswith("86")
    assert counts.counts.tolist() == [[2, 1, 0]]
    assert counts.window(0, 2).tolist() == [3]


def test_pai_and_pei_on_a_toy_grid() -> None:
    """Ten cells, 20 calls: flagging the 2 forecast cells that took 8 calls gives PAI (8/20)/(2/10) = 2 and PEI 8/12."""
    actual = [7, 1, 5, 0, 3, 0, 2, 0, 1, 1]
    forecast = [9.0, 8.0, 0.1, 0, 0, 0, 0, 0, 0, 0]
    flagged = top_cells(forecast, flagged_cells(0.2, 10))
    assert flagged.tolist() == [0, 1]
    assert pai(actual, flagged, 10) == pytest.approx(2.0)
    assert pei(actual, flagged) == pytest.approx(8 / 12)
    perfect = top_cells(actual, 2)
    assert pei(actual, perfect) == 1.0 and pai(actual, perfect, 10) == pytest.approx(3.0)


def test_hotspot_scores_skip_windows_without_calls_and_average_the_rest() -> None:
    """A window with no call has no PAI; the others are averaged per share."""
    hot = HotspotScores()
    hot.add([0, 0, 0, 0], [1, 0, 0, 0], 4, (0.25,))
    hot.add([2, 2, 0, 0], [1, 0, 0, 0], 4, (0.25,))
    hot.add([4, 0, 0, 0], [1, 0, 0, 0], 4, (0.25,))
    assert hot.summary() == {"pai": {"0.25": 3.0}, "pei": {"0.25": 1.0}}


def test_scores_summarise_every_metric() -> None:
    """Scores gathered over two origins give the pooled metrics and a per-area MASE."""
    s = Scores()
    s.add([2, 0], [1, 0], [[0, 0], [2, 1], [0, 0], [3, 1]], [1.0, 0.0])
    s.add([4, 1], [1, 0], [[0, 0], [2, 1], [0, 0], [5, 1]], [1.0, 0.0])
    out = s.summary()
    assert out["mae"] == 1.25 and out["mase"] == 2.0 and out["n"] == 4
    assert out["coverage80"] == 0.75 and out["coverage95"] == 1.0
    assert out["mase_median_area"] == 2.0


def synthetic_csv(path: Path, weeks: int = 6, seed: int = 3) -> Path:
    """A Montgomery-format file: weeks of calls in a few places, busier by day and in the first place."""
    rng = random.Random(seed)
    places = [(40.10, -75.30), (40.12, -75.28), (40.20, -75.40), (40.05, -75.20)]
    lines = ["lat,lng,desc,zip,title,timeStamp,twp,addr,e"]
    for hour in range(weeks * WEEK_H):
        rate = 1.0 + 2.0 * (8 <= hour % 24 < 20)
        for _ in range(sum(rng.random() < rate / 4 for _ in range(4))):
            lat, lng = places[0] if rng.random() < 0.5 else rng.choice(places)
            stamp = (MONDAY + timedelta(hours=hour, seconds=rng.randrange(3600))).strftime("%Y-%m-%d %H:%M:%S")
            lines.append(f"{lat},{lng},x,19401,EMS: FALL VICTIM,{stamp},NORRISTOWN,MAIN ST,1")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def bench_module(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """bench/forecast_eval.py as a module (bench/ on sys.path for its ``_common``)."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    spec = importlib.util.spec_from_file_location("forecast_eval", ROOT / "bench" / "forecast_eval.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_bench_writes_results_with_the_documented_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A backtest of a 6-week synthetic file writes results.json (each method, horizon and level scored) and both PNGs."""
    bench = bench_module(monkeypatch)
    path = synthetic_csv(tmp_path / "calls.csv")
    out = tmp_path / "out"
    argv = [str(path), "--out", str(out), "--timezone", "UTC", "--every", "24", "--horizons", "1,8", "--no-watchfloor", "--quiet"]
    assert bench.main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    rivers = {"river_holt_winters", "river_snarimax"}
    assert set(results["methods"]) == {"seasonal_naive", "medic", "hour_of_week_mean", "kde", *rivers}
    assert results["origins"]["n"] >= 5
    for method, per_h in results["methods"].items():
        assert set(per_h) == {"1", "8"}
        for entry in per_h.values():
            if method in rivers:  # the jurisdiction only, no hot spots
                assert set(entry) == {"jurisdiction"}
            else:
                hot = entry["hotspots_res8"]
                assert set(hot["pai"]) == {"0.005", "0.01"} and set(hot["pei"]) == {"0.005", "0.01"}
                assert hot["pai_0.5"] == hot["pai"]["0.005"] and hot["pei_1"] == hot["pei"]["0.01"]
            if method != "kde":
                for level in ("jurisdiction",) if method in rivers else ("jurisdiction", "res6", "res7"):
                    assert {"mae", "mase", "coverage80", "coverage95", "pit80", "pit95"} <= set(entry[level])
    assert (out / "week.png").stat().st_size > 0 and (out / "pai.png").stat().st_size > 0


class _MeanRate:
    """A stand-in for detectors.forecast.ShiftForecaster: the mean hourly rate of all calls learnt, for any area."""

    def __init__(self, timezone: str = "UTC", holidays: tuple[object, ...] = (), **params: object) -> None:
        self.first: float | None = None
        self.last = 0.0
        self.n = 0

    def learn_one(self, x: object) -> None:
        t = float(x.t)  # type: ignore[attr-defined]
        self.first = t if self.first is None else self.first
        self.last, self.n = t, self.n + 1

    def forecast(self, start: float, hours: float, cells: object = None, category: object = None) -> Forecast:
        assert self.first is not None and self.last < start, "the forecaster saw a call at or after the origin"
        mean = self.n / max(1.0, (start - self.first) / 3600) * hours
        return Forecast(start, start + hours * 3600, mean, 0.5 * mean, 1.5 * mean, 0.0, 2.0 * mean)


def test_the_bench_scores_watchfloor_forecaster_fed_only_the_past(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a forecaster present it is fed every call before each origin (and none after) and scored as 'watchfloor'."""
    bench = bench_module(monkeypatch)
    monkeypatch.setattr(bench, "load_watchfloor", lambda: _MeanRate)
    path = synthetic_csv(tmp_path / "calls.csv", weeks=5)
    out = tmp_path / "out"
    assert bench.main([str(path), "--out", str(out), "--origins", "3", "--horizons", "8", "--no-plots", "--quiet"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["watchfloor"] == "evaluated"
    assert results["methods"]["watchfloor"]["8"]["jurisdiction"]["n"] == 3
    assert "mase_res6_8h_vs_medic" in results["targets"]["watchfloor"]
