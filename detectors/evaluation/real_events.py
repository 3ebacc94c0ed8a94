"""When our detectors fired on the known real events of a file: its real surges and its feed outages.

Examples
--------
>>> from detectors.evaluation.calls import Calls
>>> from detectors.evaluation.real_events import real_events
>>> from zoneinfo import ZoneInfo
>>> real_events([], Calls.from_history([(0.0, 40.1, -75.3, "EMS", None)]), ZoneInfo("UTC"))  # the file covers no known event
{'surges': [], 'outages': [], 'other_outage_alerts': []}
"""

from __future__ import annotations

from datetime import date, datetime, tzinfo
from typing import Any

import numpy as np

from detectors.evaluation.calls import Calls
from detectors.evaluation.events import EVENTS_TIMEZONE, KNOWN_OUTAGES, REAL_SURGES, RealSurge, Silence, local_day
from detectors.types import Alert, AlertKind, AlertState

_FMT = "%Y-%m-%d %H:%M"


class _Coverage:
    """Calls of the file between two times (to tell whether it covers an event)."""

    def __init__(self, calls: Calls) -> None:
        self.times = np.array(calls.t)

    def between(self, lo: float, hi: float) -> int:
        return int(np.searchsorted(self.times, hi, side="right") - np.searchsorted(self.times, lo, side="left"))


def _describe(a: Alert, onset: float) -> dict[str, Any]:
    return {
        "at": datetime.fromtimestamp(a.at, EVENTS_TIMEZONE).strftime(_FMT),
        "minutes_after_onset": round((a.at - onset) / 60, 1),
        "state": a.state.value,
        "reason": a.reason,
    }


def _surge(ev: RealSurge, onset: float, alerts: list[Alert]) -> dict[str, Any]:
    """Our surge alerts from an hour before to six hours after the onset of a real surge."""
    fired = [
        a
        for a in alerts
        if a.kind is AlertKind.SURGE and a.state in (AlertState.OPEN, AlertState.UPDATE) and onset - 3600 <= a.at <= onset + 6 * 3600
    ]
    opened = [a for a in fired if a.state is AlertState.OPEN]
    first = fired[0] if fired else None
    first_open_after = next((a for a in opened if a.at >= onset), None)
    juris = next((a for a in fired if a.id.startswith("surge:jurisdiction")), None)
    return {
        "name": ev.name,
        "onset": datetime.fromtimestamp(onset, EVENTS_TIMEZONE).strftime(_FMT),
        "onset_note": ev.onset_note,
        "first_alert": None if first is None else _describe(first, onset),
        "first_jurisdiction_alert": None if juris is None else _describe(juris, onset),
        "first_open_after_onset": None if first_open_after is None else _describe(first_open_after, onset),
        "alerts_opened_in_6h": len(opened),
    }


def _outage(s: Silence, hit: Alert | None, alerts: list[Alert]) -> dict[str, Any]:
    """How a known silence was reported: the matching ``FEED_OUTAGE`` alert ``hit``, and surge alerts during or just after it."""
    lo, hi = s.start.timestamp(), s.end.timestamp()
    surges_after = [a.reason for a in alerts if a.kind is AlertKind.SURGE and a.state is AlertState.OPEN and lo <= a.at <= hi + 3600]
    return {
        "silence": f"{s.start.strftime(_FMT)} .. {s.end.strftime(_FMT)}",
        "minutes": round((hi - lo) / 60),
        "source": s.source,
        "reported_as_feed_outage": hit is not None,
        "reported_after_min": None if hit is None else round((hit.at - lo) / 60),
        "expected_calls_when_reported": None if hit is None else hit.expected,
        "surge_alerts_during_or_1h_after": surges_after,
    }


def real_events(alerts: list[Alert], calls: Calls, tz: tzinfo) -> dict[str, Any]:
    """Our alerts around the known real surges and outages the file ``calls`` covers, and the other outage alerts.

    The known events are shown in their own zone (:data:`~detectors.evaluation.events.EVENTS_TIMEZONE`),
    the other outage alerts in ``tz``, the jurisdiction's.

    A surge is covered with 50 calls within 3 hours of its onset; a silence with calls in the hour before
    and the hour after it. A ``FEED_OUTAGE`` opened within 10 minutes of a silence's start reports it.
    """
    out: dict[str, Any] = {"surges": [], "outages": [], "other_outage_alerts": []}
    coverage = _Coverage(calls)
    for ev in REAL_SURGES:
        onset = ev.onset.timestamp()
        if coverage.between(onset - 3 * 3600, onset + 3 * 3600) < 50:
            continue  # the file does not cover this event
        if ev.onset.date() == date(2018, 11, 15):
            # the sample's slice: the first call that day
            onset = min((t for t in calls.t if local_day(t, EVENTS_TIMEZONE) == ev.onset.date()), default=onset)
        out["surges"].append(_surge(ev, onset, alerts))
    outage_alerts = [a for a in alerts if a.kind is AlertKind.FEED_OUTAGE and a.state is AlertState.OPEN]
    matched = set()
    for s in KNOWN_OUTAGES:
        lo, hi = s.start.timestamp(), s.end.timestamp()
        if coverage.between(lo - 3600, lo) == 0 or coverage.between(hi, hi + 3600) == 0:
            continue  # the file does not cover this silence
        hit = next((a for a in outage_alerts if abs(a.started_at - lo) <= 600 and a.at <= hi), None)
        if hit is not None:
            matched.add(hit.id)
        out["outages"].append(_outage(s, hit, alerts))
    for a in outage_alerts:
        if a.id not in matched:
            close = next((b for b in alerts if b.id == a.id and b.state is AlertState.CLOSED), None)
            out["other_outage_alerts"].append(
                {
                    "silence_from": datetime.fromtimestamp(a.started_at, tz).strftime(_FMT),
                    "minutes": None if close is None else close.window_min,
                    "expected_calls": None if close is None else close.expected,
                }
            )
    return out
