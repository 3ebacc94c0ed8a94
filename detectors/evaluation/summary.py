"""Scores summarised: probability of detection (POD) by kind of surge, delays, and the points of the ROC curves.

Examples
--------
>>> from detectors.evaluation.injection import Injection, Plan
>>> from detectors.evaluation.scoring import Score
>>> from detectors.evaluation.summary import pod
>>> inj = [Injection(k, None, 0.0, 900.0, 5, 0, "EMS", ("c",), (0.0,), ("c",)) for k in range(4)]
>>> plan = Plan(inj, clean_days=[], injection_days=[], warmup_days=[], excluded_days={})
>>> score = Score("ours", 6.0, 0, 1.0, {0: 60.0, 1: 1200.0, 2: None, 3: 300.0})
>>> pod(score, plan), pod(score, plan, within_s=900.0), pod(score, plan, size=10)
((0.75, 4), (0.5, 4), (nan, 0))
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from detectors.evaluation.injection import DURATIONS_MIN, HEADLINE, SIZES, SPREADS, Plan
from detectors.evaluation.scoring import Score


def pod(
    score: Score, plan: Plan, size: int | None = None, spread: int | None = None, duration: int | None = None, within_s: float = math.inf
) -> tuple[float, int]:
    """Share of the chosen injections detected (within ``within_s`` of their first call), and how many were chosen."""
    chosen = [
        i
        for i in plan.injections
        if (size is None or i.size == size)
        and (spread is None or i.spread == spread)
        and (duration is None or i.duration_s == duration * 60)
    ]
    if not chosen:
        return float("nan"), 0
    delays = [score.delays[i.index] for i in chosen]
    hits = sum(d is not None and d <= within_s for d in delays)
    return hits / len(chosen), len(chosen)


def delays_min(score: Score, plan: Plan, size: int | None = None, spread: int | None = None) -> list[float]:
    """Delays (minutes) of the detected injections of this size and spread."""
    chosen = [i for i in plan.injections if (size is None or i.size == size) and (spread is None or i.spread == spread)]
    return [d / 60.0 for d in (score.delays[i.index] for i in chosen) if d is not None]


def curve_point(score: Score, plan: Plan) -> dict[str, float]:
    """One point of the ROC curves: false alerts per day, and POD of all surges and of the smallest."""
    return {
        "threshold": score.threshold,
        "fa_per_day": round(score.fa_per_day, 3),
        "pod_all": round(pod(score, plan)[0], 3),
        "pod_all_15min": round(pod(score, plan, within_s=900.0)[0], 3),
        "pod_size5": round(pod(score, plan, SIZES[0])[0], 3),
    }


def _median_p90(d: list[float]) -> tuple[float | None, float | None]:
    if not d:
        return None, None
    return round(float(np.median(d)), 1), round(float(np.percentile(d, 90)), 1)


def summary(score: Score, plan: Plan) -> dict[str, Any]:
    """One row of the results table: false alerts, POD by size, spread and duration, the headline case, delays."""
    size, spread = HEADLINE
    median, p90 = _median_p90(delays_min(score, plan, size, spread))
    out = {
        "method": score.method,
        "threshold": score.threshold,
        "false_alerts": score.false_alerts,
        "clean_days": round(score.clean_days, 2),
        "false_alerts_per_day": round(score.fa_per_day, 3),
        "pod_by_size": {str(s): round(pod(score, plan, s)[0], 3) for s in SIZES},
        "pod_by_size_spread": {f"{s}/{'ring' if sp else 'cell'}": round(pod(score, plan, s, sp)[0], 3) for s in SIZES for sp in SPREADS},
        "pod_by_size_duration": {f"{s}/{du}min": round(pod(score, plan, s, None, du)[0], 3) for s in SIZES for du in DURATIONS_MIN},
        "pod_all": round(pod(score, plan)[0], 3),
        "headline_pod": round(pod(score, plan, size, spread)[0], 3),
        "headline_pod_15min": round(pod(score, plan, size, spread, within_s=900.0)[0], 3),
        "headline_n": pod(score, plan, size, spread)[1],
        "headline_delay_median_min": median,
        "headline_delay_p90_min": p90,
    }
    for s in SIZES:
        out[f"delay_median_min_size{s}"], out[f"delay_p90_min_size{s}"] = _median_p90(delays_min(score, plan, s))
    return out
