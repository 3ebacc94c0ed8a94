"""The forecast monitor (detectors/forecast_monitor.py): error, bias, coverage and drift of published forecasts."""

from __future__ import annotations

import math
import pickle
import random

import h3
import pytest

from detectors.forecast import Forecast, nb_quantiles
from detectors.forecast_monitor import ForecastMonitor
from detectors.types import CallPoint

CELL = "882aac941dfffff"
C7 = str(h3.cell_to_parent(CELL, 7))
C6 = str(h3.cell_to_parent(CELL, 6))
T0 = 1_700_002_800.0  # on the hour
HOUR = 3600.0


def poisson_forecast(start: float, hours: float, mean: float) -> Forecast:
    lo95, lo80, hi80, hi95 = nb_quantiles(mean, 0.0, (0.025, 0.1, 0.9, 0.975))
    return Forecast(start, start + hours * HOUR, mean, lo80, hi80, lo95, hi95)


def hourly_stream(monitor: ForecastMonitor, hours: int, forecast_rate: float, true_rate, seed: int = 1, start: float = T0) -> None:
    """Each hour: watch a 1-hour jurisdiction forecast of ``forecast_rate``, then feed Poisson calls at ``true_rate(hour)``."""
    rng = random.Random(seed)
    for h in range(hours):
        begin = start + h * HOUR
        monitor.watch("jurisdiction", "jurisdiction", 1, poisson_forecast(begin, 1, forecast_rate))
        t = begin
        while True:
            t += rng.expovariate(true_rate(h) / HOUR)
            if t >= begin + HOUR:
                break
            monitor.learn_one(CallPoint(t=t, cell=CELL, category="EMS"))
    monitor.advance(start + hours * HOUR)


def test_calibrated_forecasts_cover_at_their_nominal_rates_with_no_bias_and_no_drift():
    """Poisson calls forecast with the true rate: coverage at least nominal (discrete bounds), bias near 0, no drift."""
    m = ForecastMonitor(half_life_days=1000.0)
    hourly_stream(m, 2000, 20.0, lambda h: 20.0)
    s = m.summary()["jurisdiction|1"]
    assert s["n"] == 2000
    # 2,000 windows: a coverage's standard error is about 0.009; the discrete quantiles cover a little more than nominal
    assert 0.78 <= s["coverage80"] <= 0.88 and 0.93 <= s["coverage95"] <= 0.98
    assert abs(s["bias"]) < 0.35  # sd of the mean of 2,000 Poisson(20) errors: 0.1
    assert s["mae"] == pytest.approx(20.0 * 2 * math.exp(-20) * 20**20 / math.factorial(20), rel=0.08)  # E|Y - mu|, Poisson
    assert s["drift"] == 0


def test_bias_is_actual_minus_forecast_and_a_shift_in_the_rate_is_a_drift():
    """Forecast 20 an hour; 20 come, then 30: the bias turns positive (more came), coverage falls, ADWIN sees the shift."""
    m = ForecastMonitor(half_life_days=1.0)
    hourly_stream(m, 600, 20.0, lambda h: 20.0 if h < 300 else 30.0)
    s = m.summary()["jurisdiction|1"]
    assert s["bias"] == pytest.approx(10.0, abs=1.5)
    assert s["coverage80"] < 0.4
    assert s["drift"] >= 1
    assert m.metrics()["forecast_drift_total|jurisdiction|1"] == s["drift"]


def test_old_errors_fade_with_the_half_life():
    """A week of large errors, then three weeks of exact forecasts: with a half-life of a week the error is an eighth or less."""
    m = ForecastMonitor(half_life_days=7.0)
    for h in range(24 * 28):
        m.watch("jurisdiction", "jurisdiction", 1, Forecast(T0 + h * HOUR, T0 + (h + 1) * HOUR, 4.0 if h < 168 else 2.0, 0, 9, 0, 9))
        m.learn_one(CallPoint(t=T0 + h * HOUR + 10, cell=CELL, category="EMS"))
        m.learn_one(CallPoint(t=T0 + h * HOUR + 20, cell=CELL, category="EMS"))
    m.advance(T0 + 24 * 28 * HOUR)
    s = m.summary()["jurisdiction|1"]
    assert 0.0 < s["mae"] <= 2.0 / 8 * 1.05
    assert s["n"] == 24 * 28


def test_a_window_is_scored_once_the_clock_reaches_its_end_with_the_calls_of_its_own_cells():
    """Nothing scored before the end; calls of other cells, before the start or at the end are not in its count."""
    m = ForecastMonitor()
    other = str(h3.cell_to_parent("882aac9ab7fffff", 7))
    assert other != C7
    m.watch("cell7", C7, 1, Forecast(T0, T0 + HOUR, 2.0, 1, 3, 0, 4))
    m.watch("cell6", C6, 1, Forecast(T0, T0 + HOUR, 2.0, 1, 3, 0, 4))
    m.learn_one(CallPoint(t=T0 - 1, cell=CELL, category="EMS"))  # before the window
    for dt in (0, 100, 200, 300, 400):
        m.learn_one(CallPoint(t=T0 + dt, cell=CELL, category="EMS"))
    m.learn_one(CallPoint(t=T0 + 500, cell="882aac9ab7fffff", category="EMS"))  # another res-7 cell
    assert m.summary() == {}
    m.learn_one(CallPoint(t=T0 + HOUR, cell=CELL, category="EMS"))  # at the end: the clock reaches it, the call is after
    s = m.summary()["cell7|1"]
    assert s["n"] == 1 and s["mae"] == 3.0 and s["bias"] == 3.0 and s["coverage80"] == 0.0 and s["coverage95"] == 0.0
    same_c6 = h3.cell_to_parent("882aac9ab7fffff", 6) == C6
    assert m.summary()["cell6|1"]["bias"] == (6.0 if same_c6 else 5.0) - 2.0


def test_a_forecast_watched_after_its_calls_were_learnt_still_counts_them():
    """The set is built in a thread while calls go on: its windows are counted from the bins, not from when it was watched."""
    m = ForecastMonitor()
    for i in range(6):
        m.learn_one(CallPoint(t=T0 + 600 * i, cell=CELL, category="EMS"))
    m.watch("jurisdiction", "jurisdiction", 1, Forecast(T0, T0 + HOUR, 6.0, 4, 8, 2, 10))
    m.advance(T0 + HOUR)
    assert m.summary()["jurisdiction|1"]["mae"] == 0.0


def test_one_set_an_hour_is_watched_per_level_and_horizon():
    """Sets issued every 15 minutes: the first and the one an hour later are kept, with all their areas."""
    m = ForecastMonitor(every_s=3600.0)
    kept = []
    for q in range(8):
        start = T0 + 900 * q
        kept.append(m.watch("jurisdiction", "jurisdiction", 8, Forecast(start, start + 8 * HOUR, 1.0, 0, 2, 0, 3)))
        m.watch("cell7", C7, 8, Forecast(start, start + 8 * HOUR, 1.0, 0, 2, 0, 3))
    assert kept == [True, False, False, False, True, False, False, False]
    assert m.state_size() == 4


def test_memory_is_bounded_on_a_long_stream():
    """Four weeks of calls in many cells and hourly sets of three horizons: bins are dropped after a day and the pending
    windows stay under the cap (windows beyond it are counted as dropped)."""
    rng = random.Random(2)
    cells = sorted(h3.grid_disk(CELL, 8))
    m = ForecastMonitor(max_windows=500)
    sizes = []
    for h in range(24 * 28):
        for c7 in sorted({str(h3.cell_to_parent(c, 7)) for c in cells[:200:10]}):
            for horizon in (1, 8, 24):
                m.watch("cell7", c7, horizon, Forecast(T0 + h * HOUR, T0 + (h + horizon) * HOUR, 0.5, 0, 1, 0, 2))
        for _ in range(10):
            m.learn_one(CallPoint(t=T0 + h * HOUR + rng.random() * HOUR, cell=rng.choice(cells), category="EMS"))
        sizes.append(m.state_size())
    assert max(sizes[24 * 7 :]) <= max(sizes[24 * 2 : 24 * 7]) * 1.1 + 10
    assert len(m._pending) <= 500 and m.dropped > 0
    assert len(m._bins) <= (26 * HOUR) / 900 + 2


def test_a_pickled_monitor_continues_exactly_like_the_original():
    m = ForecastMonitor(half_life_days=2.0)
    hourly_stream(m, 50, 20.0, lambda h: 22.0)
    twin = pickle.loads(pickle.dumps(m))
    hourly_stream(m, 50, 20.0, lambda h: 25.0, seed=4, start=T0 + 50 * HOUR)
    hourly_stream(twin, 50, 20.0, lambda h: 25.0, seed=4, start=T0 + 50 * HOUR)
    assert twin.summary() == m.summary() and twin.metrics() == m.metrics()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: m.watch("res9", "jurisdiction", 1, Forecast(T0, T0 + HOUR, 1.0, 0, 2, 0, 3)), "level must be one of"),
        (lambda m: m.watch("jurisdiction", C7, 1, Forecast(T0, T0 + HOUR, 1.0, 0, 2, 0, 3)), "the jurisdiction level's key"),
        (lambda m: m.watch("cell6", C7, 1, Forecast(T0, T0 + HOUR, 1.0, 0, 2, 0, 3)), "a cell6 key must be a res-6 H3 cell"),
        (lambda m: m.watch("cell7", C7, 1, Forecast(T0 + 60, T0 + HOUR, 1.0, 0, 2, 0, 3)), "on a quarter hour"),
        (lambda m: ForecastMonitor(half_life_days=0), "half_life_days"),
        (lambda m: ForecastMonitor(max_windows=0), "max_windows"),
        (lambda m: ForecastMonitor(every_s=-1), "every_s"),
    ],
)
def test_bad_input_raises_value_error_naming_it(call, message):
    with pytest.raises(ValueError, match=message):
        call(ForecastMonitor())


def test_metrics_render_with_level_horizon_and_nominal_labels():
    """The monitor's figures reach /metrics as labelled gauges of the contract's names."""
    from streams.runtime.metrics import render_prometheus

    m = ForecastMonitor()
    hourly_stream(m, 5, 20.0, lambda h: 20.0)
    page = render_prometheus(m.metrics())
    assert 'watchfloor_forecast_coverage{level="jurisdiction",horizon="1",nominal="0.8"}' in page
    assert 'watchfloor_forecast_coverage{level="jurisdiction",horizon="1",nominal="0.95"}' in page
    assert 'watchfloor_forecast_mae{level="jurisdiction",horizon="1"}' in page
    assert 'watchfloor_forecast_bias{level="jurisdiction",horizon="1"}' in page
    assert 'watchfloor_forecast_drift_total{level="jurisdiction",horizon="1"} 0' in page
    assert "# TYPE watchfloor_forecast_mae gauge" in page and "# TYPE watchfloor_forecast_drift_total counter" in page
