"""One evaluation from a background of real calls to the results: inject, replay, score, tune the baselines, compare.

No file or network I/O: the caller reads the calls (e.g. with
:func:`streams.ingest.history.read_history`), chooses how the threshold sweep
is mapped (a process pool's ``map``) and how progress is shown, and writes the
results (``bench/evaluate.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from detectors.calibration import Calibration, alert_rates, calibrate
from detectors.evaluation.baselines import Points, baseline_points, incident_mask
from detectors.evaluation.calls import Calls
from detectors.evaluation.injection import Plan, merge, plan_injections
from detectors.evaluation.real_events import real_events
from detectors.evaluation.replay import Track, make_suite, no_track, replay, replay_threshold
from detectors.evaluation.scoring import Score, live_days, score_alerts
from detectors.evaluation.summary import curve_point, summary
from detectors.evaluation.tuning import Tuner
from detectors.evaluation.wide import WIDE_HEADLINE, wide_summary
from detectors.outage import FeedMonitor
from detectors.surge import SurgeDetector
from detectors.types import Alert

#: Our thresholds for the ROC sweep (the default one is always included).
SWEEP = (4.5, 5.0, 5.5, 6.5, 7.5)
#: Name of our detector in the results.
OURS = "surge-poisson-scan"

#: ``mapper(function, jobs)`` yields ``function(job)`` for each job, in order (``map``, or a process pool's ``map``).
Mapper = Callable[[Callable[[Any], Any], Iterable[Any]], Iterable[Any]]


def _sweep(
    calls: Calls,
    plan: Plan,
    clean_live: float,
    sweep: tuple[float, ...],
    chosen: tuple[float, float],
    timezone: str,
    options: dict[str, Any],
    mapper: Mapper,
    track: Track,
) -> dict[float, Score]:
    """Our detector at each local threshold of ``sweep`` other than the chosen one, the jurisdiction's at the
    chosen one (replays mapped by ``mapper``)."""
    jobs = [(x, calls, timezone, chosen[1], options) for x in sweep if x != chosen[0]]
    scores: dict[float, Score] = {}
    if jobs:
        for x, alerts, _ in track(mapper(replay_threshold, jobs), "threshold sweep", len(jobs)):
            scores[x] = score_alerts(OURS, x, alerts, plan, clean_live)
    return scores


def _baseline_methods(calls: Calls) -> dict[str, tuple[Points, list[tuple[str, ...]], np.ndarray]]:
    """Each baseline's evaluation points, regions and statistic, on the same calls, regions and windows as ours."""
    points, regions = baseline_points(calls)
    points_inc, regions_inc = baseline_points(calls, incident_mask(calls))
    return {
        "EARS C1": (points, regions, points.stats["C1"]),
        "EARS C2": (points, regions, points.stats["C2"]),
        "EARS C3": (points, regions, points.stats["C3"]),
        "EARS C3 (incidents)": (points_inc, regions_inc, points_inc.stats["C3"]),
        "fixed threshold": (points, regions, points.stats["fixed"]),
    }


def _compare(
    calls: Calls, plan: Plan, clean_live: float, ours: Score, sweep_scores: dict[float, Score], track: Track
) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, float]]]]:
    """The table (ours, then each baseline tuned to our false-alert rate) and the ROC curves (each baseline
    tuned to each of our rates)."""
    table = [summary(ours, plan)]
    curves = {f"{OURS} (ours)": [curve_point(sc, plan) for _, sc in sorted(sweep_scores.items())]}
    methods = _baseline_methods(calls)
    for name, (pts, regs, stat) in track(methods.items(), "baselines", len(methods)):
        tuner = Tuner(name, pts, regs, stat, plan, clean_live)
        table.append(summary(tuner.tune(ours.fa_per_day), plan))
        curves[name] = [curve_point(tuner.tune(sc.fa_per_day), plan) for sc in sweep_scores.values()]
    return table, curves


def _minutes(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 60, 1)


def _local(t: float, tz: tzinfo) -> str:
    return datetime.fromtimestamp(t, tz).strftime("%Y-%m-%d %H:%M")


def _wide_list(plan: Plan, ours: Score) -> list[dict[str, Any]]:
    return [
        {
            "index": w.index,
            "start": _local(w.start, plan.tz),
            "rate": w.rate,
            "hours": w.hours,
            "usual_calls": w.expected,
            "extra_calls": len(w.times),
            "cells": len(set(w.call_cells)),
            "delay_min": _minutes(ours.wide[w.index][0]),
            "jurisdiction_alert_delay_min": _minutes(ours.wide[w.index][1]),
        }
        for w in plan.wide
    ]


def _injection_list(plan: Plan, ours: Score) -> list[dict[str, Any]]:
    return [
        {
            "index": i.index,
            "day": i.day.isoformat(),
            "start": _local(i.start, plan.tz),
            "size": i.size,
            "duration_min": round(i.duration_s / 60),
            "spread": "ring" if i.spread else "cell",
            "cells": list(i.cells),
            "delay_min": _minutes(ours.delays[i.index]),
        }
        for i in plan.injections
    ]


def evaluate(
    background: Calls,
    *,
    data: str,
    skipped: dict[str, int],
    injections: int,
    seed: int,
    warmup_days: int,
    per_day: int,
    timezone: str = "UTC",
    wide: int = 0,
    budget: float = 1.0,
    calibrated: bool = False,
    thresholds: tuple[float, float] | None = None,
    options: dict[str, Any] | None = None,
    sweep: tuple[float, ...] = SWEEP,
    mapper: Mapper = map,
    track: Track = no_track,
) -> dict[str, Any]:
    """The whole evaluation of our surge detector on ``background`` (real calls) against the EARS baselines.

    Parameters
    ----------
    background
        The real calls, in event-time order (:meth:`detectors.evaluation.calls.Calls.from_history`).
    data, skipped
        What the calls were read from and the rows skipped per reason (reported as they are).
    injections, seed, warmup_days, per_day, wide
        See :func:`detectors.evaluation.injection.plan_injections` (``wide``: jurisdiction-wide surges).
    timezone
        The jurisdiction's IANA zone: its local dates are the days, its hours of the week the baseline's.
    budget
        False alerts a day the thresholds are calibrated to (with ``calibrated``) and the ideal test is held to.
    calibrated
        Choose the surge thresholds with :func:`detectors.calibration.calibrate` on the background (no
        injection) of the clean days: in-sample, the days the false alerts are then counted on.
    thresholds
        ``(threshold, jurisdiction_threshold)`` to use instead (the detector's defaults when neither is given).
    options
        Other parameters of our surge detector (e.g. ``{"jurisdiction_cusum": 1.0}``).
    sweep
        Our local thresholds for the ROC curves (the chosen one is always scored).
    mapper
        How the sweep's replays are run (``map``; a process pool's ``map`` to run them in parallel).
    track
        How progress is shown (none by default).

    Returns
    -------
    dict
        What ``results.json`` holds, ready for ``json.dumps``; ``runtime.total_seconds`` counts from this call.
    """
    started = time.perf_counter()
    tz = ZoneInfo(timezone)
    options = dict(options or {})
    plan = plan_injections(background, injections, seed, warmup_days, per_day, tz, wide)
    calls = merge(background, plan.injections, plan.wide)
    clean = set(plan.clean_days)
    clean_live = live_days(background, clean, tz)
    calibration: Calibration | None = None
    not_calibrated = None
    if calibrated and thresholds is None:
        others = set(plan.injection_days) | set(plan.wide_days) | set(plan.warmup_days) | set(plan.excluded_days)
        try:
            calibration = calibrate(background, budget, timezone, exclude_days=others, mapper=mapper, options=options)
            thresholds = (calibration.threshold, calibration.jurisdiction_threshold)
        except ValueError as exc:  # too little history: the shipped thresholds, and why
            not_calibrated = str(exc)
    chosen = thresholds or (SurgeDetector().threshold, SurgeDetector().jurisdiction_threshold)
    alerts: list[Alert]
    alerts, seconds = replay(make_suite(timezone, *chosen, **options), calls, track, desc="surge detector")
    ours = score_alerts(OURS, chosen[0], alerts, plan, clean_live)
    sweep_scores = {chosen[0]: ours, **_sweep(calls, plan, clean_live, sweep, chosen, timezone, options, mapper, track)}
    table, curves = _compare(calls, plan, clean_live, ours, sweep_scores, track)
    local_rate, county_rate = alert_rates(alerts, clean, clean_live, timezone)
    wide_rows = wide_summary(plan.wide, ours.wide, budget)
    return {
        "data": data,
        "timezone": timezone,
        "calls": len(background),
        "skipped_rows": dict(skipped),
        "seed": seed,
        "budget_per_day": budget,
        "thresholds": {
            "threshold": chosen[0],
            "jurisdiction_threshold": chosen[1],
            "how": "calibrated" if calibration else "given" if thresholds else "default",
            "not_calibrated": not_calibrated,
        },
        "calibration": None if calibration is None else calibration.as_dict(),
        "achieved_per_day": {"local": round(local_rate, 3), "jurisdiction": round(county_rate, 3)},
        "wide_surges": len(plan.wide),
        "wide_days": len(plan.wide_days),
        "wide": wide_rows,
        "wide_headline": wide_rows.get(f"+{WIDE_HEADLINE[0]:.0%}/{WIDE_HEADLINE[1]}h"),
        "injections": len(plan.injections),
        "injection_days": len(plan.injection_days),
        "clean_days": len(plan.clean_days),
        "clean_live_days": round(clean_live, 2),
        "warmup_days": [d.isoformat() for d in plan.warmup_days],
        "excluded_days": {d.isoformat(): why for d, why in sorted(plan.excluded_days.items())},
        "detector": repr(make_suite(timezone, *chosen, **options).surge),
        "feed_monitor": repr(FeedMonitor()),
        "table": table,
        "sweep": [summary(sc, plan) for _, sc in sorted(sweep_scores.items())],
        "roc": curves,
        "real_events": real_events(alerts, background, tz),
        "runtime": {
            "replay_seconds": round(seconds, 1),
            "calls_per_second": round(len(calls) / seconds),
            "total_seconds": round(time.perf_counter() - started, 1),
        },
        "injection_list": _injection_list(plan, ours),
        "wide_list": _wide_list(plan, ours),
    }
