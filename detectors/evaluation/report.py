"""The results of an evaluation as text: the comparison table, our detector's detail, the sweep and the real events.

Examples
--------
>>> from detectors.evaluation.report import format_table
>>> row = {"method": "ours", "threshold": 6.0, "false_alerts_per_day": 0.1, "pod_by_size": {"5": 0.7, "10": 1.0, "20": 1.0},
...        "headline_pod": 1.0, "headline_pod_15min": 0.9, "headline_delay_median_min": 5.8, "headline_delay_p90_min": None}
>>> print(format_table([row]).splitlines()[2])
ours                               6    0.10   0.70    1.00    1.00        1.00     0.90     5.8      -
"""

from __future__ import annotations

import math
from typing import Any

from detectors.evaluation.injection import SIZES


def format_table(rows: list[dict[str, Any]]) -> str:
    """The comparison table of :func:`detectors.evaluation.summary.summary` rows, with its legend."""
    head = (
        f"{'method':<26} {'threshold':>9} {'FA/day':>7} {'POD@5':>6} {'POD@10':>7} {'POD@20':>7} "
        f"{'POD@10 ring':>11} {'<=15 min':>8} {'median':>7} {'p90':>6}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        med = r["headline_delay_median_min"]
        p90 = r["headline_delay_p90_min"]
        lines.append(
            f"{r['method']:<26} {r['threshold']:>9.3g} {r['false_alerts_per_day']:>7.2f} "
            f"{r['pod_by_size']['5']:>6.2f} {r['pod_by_size']['10']:>7.2f} {r['pod_by_size']['20']:>7.2f} "
            f"{r['headline_pod']:>11.2f} {r['headline_pod_15min']:>8.2f} "
            f"{('-' if med is None else f'{med:.1f}'):>7} {('-' if p90 is None else f'{p90:.1f}'):>6}"
        )
    lines.append("POD@k: detected share of surges of k extra calls (15-60 min, one cell or a cell and its ring);")
    lines.append(
        "POD@10 ring: 10 extra calls in a cell and its 6 neighbours; <=15 min: detected within 15 minutes of the first injected call;"
    )
    lines.append("median, p90: delays (minutes) from the first injected call to the alert, for those surges.")
    return "\n".join(lines)


def _ours(ours: dict[str, Any]) -> list[str]:
    return [
        "Our detector by size and spread (POD):",
        "  " + "  ".join(f"{k}: {v:.2f}" for k, v in ours["pod_by_size_spread"].items()),
        "  by size and duration: " + "  ".join(f"{k}: {v:.2f}" for k, v in ours["pod_by_size_duration"].items()),
        "  delays (min) median/p90 by size: "
        + "  ".join(f"{s}: {ours[f'delay_median_min_size{s}']}/{ours[f'delay_p90_min_size{s}']}" for s in SIZES),
    ]


def _sweep(sweep: list[dict[str, Any]]) -> str:
    return "Threshold sweep (ours): " + "  ".join(
        f"{r['threshold']:g}: FA/day {r['false_alerts_per_day']:.2f} POD@10 ring {r['headline_pod']:.2f}" for r in sweep
    )


def _real_events(ev: dict[str, Any]) -> list[str]:
    lines = ["Real events:"]
    if not ev["surges"]:
        lines.append("  no known real surge in this file")
    for s in ev["surges"]:
        lines.append(f"  {s['name']}: onset {s['onset']} ({s['onset_note']})")
        for key in ("first_alert", "first_open_after_onset", "first_jurisdiction_alert"):
            a = s[key]
            if a is None:
                lines.append(f"    {key}: none")
            else:
                lines.append(f"    {key}: {a['at']} ({a['minutes_after_onset']:+.0f} min): {a['reason']}")
        lines.append(f"    surge alerts opened from 1 h before to 6 h after onset: {s['alerts_opened_in_6h']}")
    for o in ev["outages"]:
        state = (
            f"FEED_OUTAGE after {o['reported_after_min']} min ({o['expected_calls_when_reported']} calls expected)"
            if o["reported_as_feed_outage"]
            else "not reported"
        )
        surges = len(o["surge_alerts_during_or_1h_after"])
        lines.append(f"  outage {o['silence']} ({o['minutes']} min, {o['source']}): {state}; surge alerts during or 1 h after: {surges}")
    if ev["other_outage_alerts"]:
        lines.append(
            f"  other FEED_OUTAGE alerts: {len(ev['other_outage_alerts'])}"
            + (" (the first 10)" if len(ev["other_outage_alerts"]) > 10 else "")
        )
        for o in ev["other_outage_alerts"][:10]:
            lines.append(f"    silence from {o['silence_from']}, {o['minutes']} min, {o['expected_calls']} calls expected")
    return lines


def format_wide(rows: dict[str, Any], budget: float) -> str:
    """The jurisdiction-wide surges' table (:func:`detectors.evaluation.wide.wide_summary`), with its legend.

    >>> row = {"n": 3, "usual_calls_mean": 48.0, "extra_calls_mean": 48.0, "pod": 1.0, "pod_30min": 0.67,
    ...        "jurisdiction_alert_pod_30min": 0.33, "delay_median_min": 21.0, "ideal_pod_30min": 0.9, "sequential_bound_min": 71.6}
    >>> print(format_wide({"+100%/3h": row}, 1.0).splitlines()[2])
    +100%/3h         3     48.0     48.0   1.00     0.67            0.33    21.0        0.90      71.6
    """
    head = (
        f"{'surge':<12} {'n':>5} {'usual':>8} {'extra':>8} {'POD':>6} {'<=30 min':>8} {'county <=30':>15} {'median':>7} {'ideal <=30':>11}"
        f" {'bound':>9}"
    )
    lines = [head, "-" * len(head)]
    for key, r in rows.items():
        med = r["delay_median_min"]
        lines.append(
            f"{key:<12} {r['n']:>5} {r['usual_calls_mean']:>8.1f} {r['extra_calls_mean']:>8.1f} {r['pod']:>6.2f} {r['pod_30min']:>8.2f} "
            f"{r['jurisdiction_alert_pod_30min']:>15.2f} {('-' if med is None else f'{med:.1f}'):>7} {r['ideal_pod_30min']:>11.2f}"
            f" {r.get('sequential_bound_min', math.nan):>9.1f}"
        )
    lines.append("usual, extra: mean calls the jurisdiction usually has in the surge's hours, and the calls added;")
    lines.append(
        "POD: detected by an alert (the jurisdiction's, or holding an extra call) before its end + 30 min; <=30 min: within 30 min;"
    )
    lines.append(
        f"county <=30: by the jurisdiction's own alert; ideal <=30: one exact Poisson test of 30 min at {budget:g} false alert(s) a day;"
    )
    lines.append("bound: about the shortest mean delay (min) of any detector that watches every minute at that budget (Lorden).")
    return "\n".join(lines)


def _calibration(results: dict[str, Any]) -> list[str]:
    th, ach = results["thresholds"], results["achieved_per_day"]
    lines = [
        f"thresholds ({th['how']}): local {th['threshold']:g}, jurisdiction {th['jurisdiction_threshold']:g}; budget "
        f"{results['budget_per_day']:g} alerts a day; achieved on clean days: {ach['local']:.2f} local + {ach['jurisdiction']:.2f} "
        f"jurisdiction = {ach['local'] + ach['jurisdiction']:.2f} a day"
    ]
    if th.get("not_calibrated"):
        lines.append(f"  not calibrated: {th['not_calibrated']}")
    cal = results.get("calibration")
    if cal:
        lines.append(
            f"  calibration on {cal['live_days']} days of background (alerts a day, local / jurisdiction): "
            + "  ".join(
                f"{g['threshold']:g}/{g['jurisdiction_threshold']:g}: {g['local_per_day']:.2f}/{g['jurisdiction_per_day']:.2f}"
                for g in cal["grid"]
            )
        )
    return lines


def report(results: dict[str, Any]) -> str:
    """The text report of what :func:`detectors.evaluation.run.evaluate` returns."""
    rt = results["runtime"]
    lines = [
        f"data: {results['data']} ({results['calls']} calls); days and hours local to {results['timezone']}",
        f"{results['injections']} injected surges on {results['injection_days']} days, {results['wide_surges']} jurisdiction-wide "
        f"on {results['wide_days']} days; false alerts counted on {results['clean_days']} clean days "
        f"({results['clean_live_days']} days of live feed)",
        *_calibration(results),
        "",
        format_table(results["table"]),
        "",
        "Jurisdiction-wide surges (ours):",
        format_wide(results["wide"], results["budget_per_day"]),
        "",
        *_ours(results["table"][0]),
        "",
        _sweep(results["sweep"]),
        "",
        *_real_events(results["real_events"]),
        "",
        f"runtime: detector replay {rt['replay_seconds']} s ({rt['calls_per_second']} calls/s, minute ticks included); "
        f"total {rt['total_seconds']} s",
    ]
    return "\n".join(lines)
