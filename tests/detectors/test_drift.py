"""Residual drift and model health metrics: ADWIN per model, error, drifts, alert rate (pure)."""

from __future__ import annotations

import copy
import math
import pickle
import random

import pytest

from detectors.drift import ResidualDriftMonitor

DAY = 86400.0


def shifted(seed: int, n: int = 1000, shift: float = 1.0) -> list[float]:
    """``n`` standard normal residuals, then ``n`` more with their mean moved by ``shift``."""
    rng = random.Random(seed)
    return [rng.gauss(0.0, 1.0) for _ in range(n)] + [rng.gauss(shift, 1.0) for _ in range(n)]


@pytest.mark.parametrize("seed", range(5))
def test_a_mean_shift_is_detected_after_it_and_not_before(seed):
    """A one-sigma shift at residual 1000 is flagged within 150 residuals of it, and nothing is flagged before it."""
    monitor = ResidualDriftMonitor()
    hits = [i for i, r in enumerate(shifted(seed)) if monitor.update("surge", r)]
    assert hits, "the shift was missed"
    assert 1000 <= hits[0] < 1150, hits
    assert monitor.metrics()["model_drifts_total|surge"] == len(hits)


def test_stationary_residuals_raise_no_drift():
    monitor = ResidualDriftMonitor()
    rng = random.Random(11)
    assert not any(monitor.update("surge", rng.gauss(0.0, 1.0)) for _ in range(5000))
    assert monitor.metrics()["model_drifts_total|surge"] == 0


def test_models_are_watched_independently():
    """A shift in one model's residuals is not a drift of another model."""
    monitor = ResidualDriftMonitor()
    rng = random.Random(12)
    quiet = []
    for r in shifted(13):
        monitor.update("surge", r)
        quiet.append(monitor.update("mix-hst", rng.gauss(0.0, 1.0)))
    m = monitor.metrics()
    assert m["model_drifts_total|surge"] >= 1 and m["model_drifts_total|mix-hst"] == 0 and not any(quiet)
    assert monitor.models == ("mix-hst", "surge")


def test_metrics_values_and_names():
    """Counts, mean absolute error, bias, drifts, alerts and alerts per day of event time, keyed name|model."""
    monitor = ResidualDriftMonitor()
    for r in (1.0, -1.0, 2.0, -2.0):
        monitor.update("surge", r)
    monitor.record_time(1_700_000_000.0)
    monitor.record_alert("surge", 1_700_000_000.0 + 0.5 * DAY)
    monitor.record_alert("surge", 1_700_000_000.0 + 1.0 * DAY)
    monitor.record_alert("mix-hst", 1_700_000_000.0 + 2.0 * DAY)  # alerts but no residuals yet
    m = monitor.metrics()
    assert m == {
        "model_residuals_total|mix-hst": 0,
        "model_mae|mix-hst": 0.0,
        "model_bias|mix-hst": 0.0,
        "model_drifts_total|mix-hst": 0,
        "model_alerts_total|mix-hst": 1,
        "model_alert_rate_per_day|mix-hst": 0.5,
        "model_residuals_total|surge": 4,
        "model_mae|surge": 1.5,
        "model_bias|surge": 0.0,
        "model_drifts_total|surge": 0,
        "model_alerts_total|surge": 2,
        "model_alert_rate_per_day|surge": 1.0,
    }
    assert all(isinstance(m[k], int) for k in m if k.split("|")[0].endswith("_total"))


def test_alert_rate_counts_a_short_span_as_an_hour():
    """One alert and no span yet reads as 24 a day (one an hour), not infinity; no clock at all reads 0."""
    monitor = ResidualDriftMonitor()
    monitor.update("surge", 0.5)
    assert monitor.metrics()["model_alert_rate_per_day|surge"] == 0.0
    monitor.record_alert("surge", 1_700_000_000.0)
    assert monitor.metrics()["model_alert_rate_per_day|surge"] == pytest.approx(24.0)


def test_bias_follows_the_residuals_since_the_last_drift():
    monitor = ResidualDriftMonitor()
    for r in shifted(14, shift=3.0):
        monitor.update("surge", r)
    assert monitor.metrics()["model_bias|surge"] == pytest.approx(3.0, abs=0.2)
    assert monitor.metrics()["model_mae|surge"] == pytest.approx(0.5 * math.sqrt(2 / math.pi) + 0.5 * 3.0, abs=0.1)


def test_pickled_and_copied_monitors_detect_the_same_drifts():
    residuals = shifted(15)
    monitor = ResidualDriftMonitor()
    for r in residuals[:900]:
        monitor.update("surge", r)
    twins = [pickle.loads(pickle.dumps(monitor)), copy.deepcopy(monitor)]
    expected = [monitor.update("surge", r) for r in residuals[900:]]
    for twin in twins:
        assert [twin.update("surge", r) for r in residuals[900:]] == expected
        assert twin.metrics() == monitor.metrics()
    assert any(expected)


@pytest.mark.parametrize("bad", [{"delta": 0.0}, {"delta": 1.0}, {"clock": 0}, {"grace_period": 0}])
def test_bad_configuration_raises_value_error(bad):
    with pytest.raises(ValueError):
        ResidualDriftMonitor(**bad)


def test_bad_inputs_raise_value_error_naming_them():
    monitor = ResidualDriftMonitor()
    with pytest.raises(ValueError, match="finite"):
        monitor.update("surge", math.nan)
    with pytest.raises(ValueError, match="without '\\|'"):
        monitor.update("surge|v2", 1.0)
    with pytest.raises(ValueError, match="non-empty"):
        monitor.record_alert("", 0.0)
    with pytest.raises(ValueError, match="finite"):
        monitor.record_time(math.inf)
    assert monitor.metrics() == {}  # nothing half-recorded


def test_repr_shows_the_configuration_and_clone_is_fresh():
    monitor = ResidualDriftMonitor(delta=0.01, clock=8)
    monitor.update("surge", 1.0)
    assert repr(monitor) == "ResidualDriftMonitor(delta=0.01, clock=8, grace_period=30)"
    fresh = monitor.clone()
    assert repr(fresh) == repr(monitor) and fresh.metrics() == {}
