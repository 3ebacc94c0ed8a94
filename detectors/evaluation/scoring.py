"""Alerts scored against a plan: false alerts on clean days and, per injection, the delay to its detection.

Examples
--------
>>> from detectors.evaluation.scoring import Score
>>> Score("ours", 6.0, false_alerts=3, clean_days=12.0, delays={0: 300.0, 1: None}).fa_per_day
0.25
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, tzinfo

import numpy as np

from detectors.evaluation.calls import Calls
from detectors.evaluation.events import local_day
from detectors.evaluation.injection import Plan
from detectors.evaluation.wide import wide_delays
from detectors.types import Alert, AlertKind, AlertState

#: Ids of the jurisdiction's surge alerts start with this (``surge:<centre or 'jurisdiction'>:<started_at>``).
JURISDICTION_ID = "surge:jurisdiction:"
#: After an injection ends, an alert still counts as a detection for this long.
DETECT_GRACE_S = 1800.0


@dataclass
class Score:
    """One method at one threshold: false alerts over ``clean_days`` days of live feed, and per injection
    index the delay (s) from its first call to its detection, or None; per jurisdiction-wide surge (``wide``)
    the delays to the first alert detecting it and to the first jurisdiction alert."""

    method: str
    threshold: float
    false_alerts: int
    clean_days: float
    delays: dict[int, float | None]
    wide: dict[int, tuple[float | None, float | None]] = field(default_factory=dict)

    @property
    def fa_per_day(self) -> float:
        """False alerts per 24 hours of live feed on clean days (nan without clean days)."""
        return self.false_alerts / self.clean_days if self.clean_days else float("nan")


def live_days(calls: Calls, days: set[date], tz: tzinfo) -> float:
    """24-hour days of live feed on ``days`` (local dates in ``tz``): gaps between consecutive calls, each capped at 3 hours."""
    seconds = 0.0
    for a, b in zip(calls.t, calls.t[1:], strict=False):
        if local_day(a, tz) in days:
            seconds += min(b - a, 3 * 3600.0)
    return seconds / 86400.0


def score_alerts(method: str, threshold: float, alerts: list[Alert], plan: Plan, clean_live_days: float) -> Score:
    """Our detector's alerts scored: surge alerts opened on clean days are false; opens and updates detect."""
    clean = set(plan.clean_days)
    surge = [a for a in alerts if a.kind is AlertKind.SURGE]
    false_alerts = sum(1 for a in surge if a.state is AlertState.OPEN and plan.day(a.at) in clean)
    fired = sorted(
        ((a.at, tuple(a.cells), a.id.startswith(JURISDICTION_ID)) for a in surge if a.state in (AlertState.OPEN, AlertState.UPDATE)),
        key=lambda r: r[0],
    )
    reports = [(at, cells) for at, cells, _ in fired]
    wide = wide_delays(plan.wide, fired, DETECT_GRACE_S)
    return Score(method, threshold, false_alerts, clean_live_days, injection_delays(plan, reports), wide)


def injection_delays(plan: Plan, reports: list[tuple[float, tuple[str, ...]]]) -> dict[int, float | None]:
    """Per injection, seconds from its first call to the first report (``(time, cells)``, sorted by time)
    touching its cells before it ends plus :data:`DETECT_GRACE_S`; None when none does."""
    times = [r[0] for r in reports]
    delays: dict[int, float | None] = {}
    for inj in plan.injections:
        lo = np.searchsorted(times, inj.first, side="left")
        hi = np.searchsorted(times, inj.end + DETECT_GRACE_S, side="right")
        cells = set(inj.cells)
        delays[inj.index] = next((reports[k][0] - inj.first for k in range(lo, hi) if cells.intersection(reports[k][1])), None)
    return delays
