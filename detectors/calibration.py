"""The surge detector's thresholds fitted to a false-alert budget: on a city's history, then kept there online (pure).

A supervisor accepts about one false alert a day (the profile's
``[detection] false_alerts_per_day``). The thresholds the surge detector ships
with were fixed on Montgomery County; another city, with other counts and
another spread of them, gets another rate (0.00-0.08 a day on one, far too
quiet: it missed its New Year's night). So:

* :func:`calibrate` replays the city's own history (no injection) through the
  worker's suite at each pair of :data:`GRID` (the evaluation's sweep
  machinery, :func:`detectors.evaluation.replay.replay_threshold`, mapped by
  the caller's ``mapper``), counts the surge alerts opened per day of live feed
  once the detectors are ready, the local ones and the jurisdiction's apart,
  and picks the lowest local threshold whose local rate is at most
  ``budget * (1 - jurisdiction_share)`` and the lowest jurisdiction threshold
  whose rate is at most ``budget * jurisdiction_share``. Every alert on the
  history counts against the budget (real surges included: the history is not
  labelled), so the rate it meets is an upper bound of the false one.
* :class:`BudgetControl` keeps them there online: given to
  :class:`~detectors.surge.SurgeDetector` (``control=``), it counts the alerts
  the detector opens over a trailing window of event time (7 days) and, once
  a day, moves each threshold by ``gain * log10(achieved / target)`` (0.3, at
  most ``max_step``, 0.1), never below ``floor`` nor above ``ceiling``. The
  score is ``-log10 p``: an alert rate ten times the target asks for a
  threshold about one higher. It changes nothing until its window is full.
  Small daily steps against a week's window: hourly steps of 0.25 on the same
  window overshot to the ceiling and back (the window remembers a week of
  alerts after the threshold has moved); measured on a synthetic stream whose
  rate is ``10 ** (7 - threshold)`` a day, these settings hold the threshold
  within 0.5 of the budget's over the last 60 of 200 days.

Examples
--------
>>> control = BudgetControl(budget_per_day=1.0, window_days=1.0, step_s=3600.0, max_step=0.25)
>>> thresholds = (6.0, 4.5)
>>> for hour in range(48):  # one local alert an hour: 24 a day against a budget of 1
...     thresholds = control.observe(3600.0 * hour, 1, 0, *thresholds)
>>> thresholds  # the local one rose (by at most 0.25 an hour), the quiet jurisdiction's fell
(9.0, 3.0)
>>> control.achieved(3600.0 * 47)
{'local_per_day': 24.0, 'jurisdiction_per_day': 0.0}
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from detectors.types import Alert, AlertKind, AlertState

#: Pairs (local threshold, jurisdiction threshold) :func:`calibrate` replays, lowest first. The shipped
#: defaults (6.0, 4.5) are one pair; below 3.0 the detector's ``close_threshold`` must come down with them.
GRID: tuple[tuple[float, float], ...] = ((3.5, 2.0), (4.0, 2.5), (4.5, 3.0), (5.0, 3.5), (5.5, 4.0), (6.0, 4.5), (7.0, 5.5), (8.0, 6.5))
#: Share of the budget the jurisdiction's alerts may use (one region against thousands: a quarter).
JURISDICTION_SHARE = 0.25
#: Fewest days of live feed, after the warm-up, that :func:`calibrate` counts alerts on: below, a rate of one
#: alert a day rests on one or two alerts (the Montgomery sample file's 1.7 days chose its highest grid point).
MIN_LIVE_DAYS = 3.0
#: Ids of the jurisdiction's surge alerts start with this.
JURISDICTION_ID = "surge:jurisdiction:"


def is_jurisdiction(alert: Alert) -> bool:
    """Whether ``alert`` is the jurisdiction's (not a cell's or a disk's)."""
    return alert.id.startswith(JURISDICTION_ID)


@dataclass(frozen=True)
class Calibration:
    """What :func:`calibrate` chose, and the rates behind it.

    ``rates`` lists, for each pair of the grid, ``(threshold, jurisdiction_threshold, local alerts a day,
    jurisdiction alerts a day)``; ``live_days`` is the days of live feed they are counted over.
    """

    threshold: float
    jurisdiction_threshold: float
    budget: float
    live_days: float
    rates: tuple[tuple[float, float, float, float], ...]
    #: alerts a day expected at the chosen pair (local rate at ``threshold`` + jurisdiction rate at ``jurisdiction_threshold``)
    expected_per_day: float

    def detector_kwargs(self) -> dict[str, float]:
        """Keyword arguments of :class:`~detectors.surge.SurgeDetector` (``SurgeDetector(**c.detector_kwargs())``)."""
        return {"threshold": self.threshold, "jurisdiction_threshold": self.jurisdiction_threshold}

    def as_dict(self) -> dict[str, Any]:
        """Ready for JSON."""
        return {
            "threshold": self.threshold,
            "jurisdiction_threshold": self.jurisdiction_threshold,
            "budget_per_day": self.budget,
            "live_days": round(self.live_days, 2),
            "expected_per_day": round(self.expected_per_day, 3),
            "grid": [
                {"threshold": a, "jurisdiction_threshold": b, "local_per_day": round(c, 3), "jurisdiction_per_day": round(d, 3)}
                for a, b, c, d in self.rates
            ],
        }


def _ready_at(t: Sequence[float], warmup_calls: int = 1000, warmup_hours: float = 24.0) -> float:
    """When the detectors' warm-up (``warmup_calls`` and ``warmup_hours`` of feed) is over, at the earliest."""
    if len(t) < warmup_calls:
        return math.inf
    return max(t[warmup_calls - 1], t[0] + 3600.0 * warmup_hours)


def counted_days(t: Sequence[float], timezone: str, exclude: Iterable[Any] = ()) -> tuple[set[Any], float]:
    """The local dates alerts are counted on (every date after the one the detectors are ready on, but the
    last, partial one and ``exclude``), and their days of live feed (gaps between calls capped at 3 hours)."""
    tz = ZoneInfo(timezone)
    ready = _ready_at(t)
    if not math.isfinite(ready) or not t:
        return set(), 0.0
    first = datetime.fromtimestamp(ready, tz).date() + timedelta(days=1)
    last = datetime.fromtimestamp(t[-1], tz).date()
    skip = set(exclude)
    days = set()
    d = first
    while d < last:
        if d not in skip:
            days.add(d)
        d += timedelta(days=1)
    seconds = 0.0
    for a, b in zip(t, t[1:], strict=False):
        if datetime.fromtimestamp(a, tz).date() in days:
            seconds += min(b - a, 3 * 3600.0)
    return days, seconds / 86400.0


def alert_rates(alerts: Iterable[Alert], days: set[Any], live_days: float, timezone: str) -> tuple[float, float]:
    """Surge alerts opened on ``days`` per day of live feed: ``(local, jurisdiction)``."""
    tz = ZoneInfo(timezone)
    local = county = 0
    for a in alerts:
        if a.kind is AlertKind.SURGE and a.state is AlertState.OPEN and datetime.fromtimestamp(a.at, tz).date() in days:
            if is_jurisdiction(a):
                county += 1
            else:
                local += 1
    if live_days <= 0:
        return math.nan, math.nan
    return local / live_days, county / live_days


def choose(
    rates: Sequence[tuple[float, float, float, float]], budget: float, jurisdiction_share: float = JURISDICTION_SHARE
) -> tuple[float, float, float]:
    """From ``(threshold, jurisdiction_threshold, local/day, jurisdiction/day)`` rows: the lowest threshold
    whose local rate is within ``budget * (1 - jurisdiction_share)``, the lowest jurisdiction threshold whose
    rate is within ``budget * jurisdiction_share`` (the highest of the grid when none is), and the rate expected.

    >>> choose([(5.0, 3.0, 2.0, 0.5), (6.0, 4.0, 0.6, 0.3), (7.0, 5.0, 0.2, 0.1)], budget=1.0)
    (6.0, 5.0, 0.7)
    """
    if not rates:
        raise ValueError("calibration needs at least one grid point")
    rows = sorted(rates)
    local_cap, county_cap = budget * (1.0 - jurisdiction_share), budget * jurisdiction_share
    loc = next((r for r in rows if r[2] <= local_cap), rows[-1])
    cty = next((r for r in sorted(rates, key=lambda r: r[1]) if r[3] <= county_cap), max(rates, key=lambda r: r[1]))
    return loc[0], cty[1], round(loc[2] + cty[3], 6)


def calibrate(
    calls: Any,
    budget: float,
    timezone: str,
    *,
    grid: Sequence[tuple[float, float]] = GRID,
    jurisdiction_share: float = JURISDICTION_SHARE,
    exclude_days: Iterable[Any] = (),
    mapper: Callable[..., Iterable[Any]] = map,
    options: dict[str, Any] | None = None,
    min_live_days: float = MIN_LIVE_DAYS,
) -> Calibration:
    """The surge thresholds that meet ``budget`` alerts a day on the history ``calls`` (see the module).

    Parameters
    ----------
    calls
        The history: a :class:`detectors.evaluation.calls.Calls`, or ``(t, lat, lng, category, dispatch_s)``
        records as :func:`streams.ingest.history.read_history` returns them (any order).
    budget
        Alerts a day the supervisor accepts (> 0), the profile's ``false_alerts_per_day``.
    timezone
        The jurisdiction's IANA zone (days and the baseline's hours of the week are local).
    grid
        ``(threshold, jurisdiction_threshold)`` pairs to replay.
    jurisdiction_share
        Share of the budget for the jurisdiction's alerts (0 < share < 1).
    exclude_days
        Local dates not counted (known real surges, injected days).
    mapper
        How the replays run (``map``, or a process pool's ``map``).
    options
        Other parameters of the surge detector, as it will run (e.g. ``{"jurisdiction_cusum": 1.0}``).
    min_live_days
        Fewest days of live feed after the warm-up to count alerts on (:data:`MIN_LIVE_DAYS`).

    Raises
    ------
    ValueError
        On a budget that is not a positive number, a share outside (0, 1), an empty grid, or a history too
        short to warm the detectors up and count ``min_live_days`` after it (the message says what it holds).
    """
    from detectors.evaluation.calls import Calls
    from detectors.evaluation.replay import replay_threshold

    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not (math.isfinite(budget) and budget > 0):
        raise ValueError(f"budget must be a positive number of alerts a day, got {budget!r}")
    if not 0 < jurisdiction_share < 1:
        raise ValueError(f"jurisdiction_share must be between 0 and 1, got {jurisdiction_share!r}")
    ZoneInfo(timezone)
    history = calls if isinstance(calls, Calls) else Calls.from_history(calls)
    days, live = counted_days(history.t, timezone, exclude_days)
    if live < min_live_days:
        raise ValueError(
            f"the history holds {len(history)} calls and {live:.1f} days of live feed after the warm-up: too few to "
            f"calibrate on; the detectors need 1,000 calls and 24 hours of feed to warm up, then {min_live_days:g} days "
            "to count alerts on (give a longer history, or keep the shipped thresholds)"
        )
    jobs = [(a, history, timezone, b, dict(options or {})) for a, b in grid]
    by_threshold = dict(zip([a for a, _ in grid], [b for _, b in grid], strict=True))
    rates = []
    for threshold, alerts, _ in mapper(replay_threshold, jobs):
        local, county = alert_rates(alerts, days, live, timezone)
        rates.append((threshold, by_threshold[threshold], local, county))
    t, j, expected = choose(rates, budget, jurisdiction_share)
    return Calibration(t, j, float(budget), live, tuple(sorted(rates)), expected)


@dataclass
class BudgetControl:
    """Keeps the surge thresholds at a false-alert budget online (see the module); pure and picklable.

    Parameters
    ----------
    budget_per_day
        Alerts a day to aim at (> 0), split like :func:`calibrate`'s (``jurisdiction_share``).
    window_days
        Trailing window of event time the achieved rate is measured over (> 0); nothing moves until it is full.
    gain
        Fraction of ``log10(achieved / target)`` applied at each step (> 0).
    max_step
        Largest change of a threshold per step (> 0).
    step_s
        Event-time seconds between steps.
    floor, ceiling
        Bounds of ``(threshold, jurisdiction_threshold)``; the floor should not go below the detector's
        ``close_threshold`` (3.0 by default), which the detector enforces too.
    """

    budget_per_day: float = 1.0
    jurisdiction_share: float = JURISDICTION_SHARE
    window_days: float = 7.0
    gain: float = 0.3
    max_step: float = 0.1
    step_s: float = 86400.0
    floor: tuple[float, float] = (4.0, 3.0)
    ceiling: tuple[float, float] = (9.0, 7.0)
    _opens: deque[tuple[float, bool]] = field(default_factory=deque, repr=False)
    _since: float | None = field(default=None, repr=False)
    _next_step: float = field(default=-math.inf, repr=False)

    def __post_init__(self) -> None:
        for name in ("budget_per_day", "window_days", "gain", "max_step", "step_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if not 0 < self.jurisdiction_share < 1:
            raise ValueError(f"jurisdiction_share must be between 0 and 1, got {self.jurisdiction_share!r}")
        if not all(lo <= hi for lo, hi in zip(self.floor, self.ceiling, strict=True)):
            raise ValueError(f"floor {self.floor!r} must be at most ceiling {self.ceiling!r}")

    def _trim(self, now: float) -> None:
        start = now - 86400.0 * self.window_days
        while self._opens and self._opens[0][0] <= start:
            self._opens.popleft()

    def achieved(self, now: float) -> dict[str, float]:
        """Alerts opened a day over the trailing window ending at ``now`` (over the time seen when shorter)."""
        self._trim(now)
        span = min(86400.0 * self.window_days, now - self._since) if self._since is not None else 0.0
        days = span / 86400.0 if span > 0 else math.nan
        local = sum(1 for _, county in self._opens if not county)
        return {"local_per_day": round(local / days, 3), "jurisdiction_per_day": round((len(self._opens) - local) / days, 3)}

    def observe(
        self, now: float, opened_local: int, opened_jurisdiction: int, threshold: float, jurisdiction_threshold: float
    ) -> tuple[float, float]:
        """Count the alerts opened at ``now``; the thresholds to use from now (moved at most once per ``step_s``)."""
        if self._since is None:
            self._since = now
        self._opens.extend([(now, False)] * opened_local + [(now, True)] * opened_jurisdiction)
        if now < self._next_step:
            return threshold, jurisdiction_threshold
        self._next_step = now + self.step_s
        if now - self._since < 86400.0 * self.window_days:
            return threshold, jurisdiction_threshold  # the window is not full yet
        self._trim(now)
        days = self.window_days
        local = sum(1 for _, county in self._opens if not county)
        county = len(self._opens) - local
        targets = (self.budget_per_day * (1 - self.jurisdiction_share), self.budget_per_day * self.jurisdiction_share)
        out = []
        for value, n, target, lo, hi in zip(
            (threshold, jurisdiction_threshold), (local, county), targets, self.floor, self.ceiling, strict=True
        ):
            rate = n / days if n else min(0.5 / days, target / 2)  # a quiet window reads as half the target at most
            step = max(-self.max_step, min(self.max_step, self.gain * math.log10(rate / target)))
            out.append(round(min(hi, max(lo, value + step)), 4))
        return out[0], out[1]
