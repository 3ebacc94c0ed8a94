"""EARS C1, C2, C3 and the fixed threshold (detectors/ears.py) on hand-computed series."""

from __future__ import annotations

import math

import numpy as np
import pytest

from detectors.ears import CDC_THRESHOLDS, HISTORY, EarsDetector, FixedThreshold, ears_statistic

# 12 periods, oldest first; the last is the current one.
SERIES = [2, 3, 1, 2, 4, 3, 2, 2, 3, 1, 2, 9]


def test_c1_is_the_z_score_against_the_seven_previous_periods():
    """C1 = (9 - mean(4,3,2,2,3,1,2)) / sd(4,3,2,2,3,1,2) = (9 - 17/7) / sqrt(40/42) = 6.7337."""
    expected = (9 - 17 / 7) / math.sqrt(40 / 42)
    assert ears_statistic(np.array([SERIES]), "C1", min_sigma=0.0)[0] == pytest.approx(expected)
    assert expected == pytest.approx(6.7337, abs=1e-4)


def test_c2_skips_a_two_period_guard_band():
    """C2 uses periods t-9..t-3 = (1,2,4,3,2,2,3): mean 17/7, sd sqrt(40/42), the same numbers by construction here."""
    y = [0, 0, 1, 2, 4, 3, 2, 2, 3, 50, 60, 9]  # t-1 and t-2 are huge but guarded
    baseline = np.array([1, 2, 4, 3, 2, 2, 3], dtype=float)
    expected = (9 - baseline.mean()) / baseline.std(ddof=1)
    assert ears_statistic(np.array([y]), "C2", min_sigma=0.0)[0] == pytest.approx(expected)
    # C1 sees the two huge periods in its baseline and says nothing
    assert ears_statistic(np.array([y]), "C1", min_sigma=0.0)[0] < 0


def test_c3_sums_the_positive_excesses_of_the_last_three_c2_over_one():
    """Hand computation on a flat series with a floor of 0.5: C2 at t, t-1, t-2 are 6, 4 and 0; C3 = 5 + 3 + 0."""
    y = np.array([[0] * 9 + [0, 2, 3]])
    c2_now = (3 - 0) / 0.5
    c2_prev = (2 - 0) / 0.5
    assert ears_statistic(y, "C2", min_sigma=0.5)[0] == pytest.approx(c2_now)
    assert ears_statistic(y, "C3", min_sigma=0.5)[0] == pytest.approx((c2_now - 1) + (c2_prev - 1))


def test_sigma_floor_and_zero_variance():
    """A baseline with no variance uses min_sigma; with min_sigma 0 any excess is infinite and no excess is 0."""
    flat = np.array([[1] * 11 + [3], [1] * 12])
    assert list(ears_statistic(flat, "C1", min_sigma=0.5)) == [4.0, 0.0]
    assert list(ears_statistic(flat, "C1", min_sigma=0.0)) == [math.inf, 0.0]


def test_many_series_at_once_match_one_at_a_time():
    rng = np.random.default_rng(3)
    counts = rng.poisson(2.0, size=(50, 12))
    for method in ("C1", "C2", "C3"):
        together = ears_statistic(counts, method)
        alone = [ears_statistic(counts[i : i + 1], method)[0] for i in range(50)]
        assert np.allclose(together, alone)


def test_online_detector_equals_the_vectorised_statistic_and_waits_for_history():
    rng = np.random.default_rng(5)
    series = rng.poisson(3.0, size=40).tolist()
    for method in ("C1", "C2", "C3"):
        det = EarsDetector(method=method)
        for i, y in enumerate(series):
            score = det.score_one(y)
            if i < HISTORY[method]:
                assert score == 0.0
            else:
                window = np.array([series[i - HISTORY[method] : i + 1]])
                assert score == pytest.approx(ears_statistic(window, method, det.min_sigma)[0])
            det.learn_one(y)


def test_cdc_thresholds_are_the_defaults_and_bad_values_are_refused():
    assert EarsDetector(method="C1").threshold == CDC_THRESHOLDS["C1"] == 3.0
    assert EarsDetector(method="C3").threshold == 2.0
    assert repr(EarsDetector(method="C2")) == "EarsDetector(method='C2', threshold=3.0, min_sigma=0.5)"
    with pytest.raises(ValueError, match="method must be one of"):
        EarsDetector(method="C4")
    with pytest.raises(ValueError, match="min_sigma"):
        EarsDetector(min_sigma=-1)
    with pytest.raises(ValueError, match="shape"):
        ears_statistic(np.zeros((2, 5)), "C3")


def test_fixed_threshold():
    det = FixedThreshold(threshold=4)
    assert [det.alarm(y) for y in (3, 4, 9)] == [False, True, True]
    assert det.clone().threshold == 4
    with pytest.raises(ValueError):
        FixedThreshold(threshold=math.nan)
