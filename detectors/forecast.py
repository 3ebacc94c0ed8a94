"""Expected calls per area for the next hour, shift or day, with prediction intervals, learned online.

:class:`ShiftForecaster` answers: how many calls will this area (the
jurisdiction, a set of res-6, res-7 or res-8 cells; one category or all) get
between ``start`` and ``start + hours``, and within what range, at 80 % and
95 %? It learns from every call (River's ``learn_one``) and answers with
:meth:`ShiftForecaster.forecast`.

**Mean.** The jurisdiction's calls in ``[start, end)`` are its seasonal
hour-of-week rate (:class:`detectors.baseline.ExpectedCounts`, which the
forecaster owns and feeds; holidays are expected like Sundays) integrated hour
by hour over the window, times a **local level** ``L``: the calls of the hours
that ended over what that rate expected for them, both decayed with
``level_half_life_days`` and shrunk toward 1 with ``level_prior`` pseudo-calls
(a busy week lifts the next shift, a quiet one lowers it). An area's forecast
is that times its **share** times its **weekly profile**:

* share of a res-6 area ``(n6 + parent_prior) / (n + K parent_prior)``, of a
  res-7 cell ``share6 (n7 + cell_prior) / (n6 + 7 cell_prior)``, of a res-8 cell
  its res-7 cell's split as the seasonal baseline splits it; ``n``, ``n6``,
  ``n7`` are calls decayed with ``share_half_life_days``, ``K`` the res-6 areas
  seen. Only areas seen pay the prior once: a quiet res-6 area is not lifted by
  seven unseen res-7 children each borrowing a call (which made near-empty areas
  forecast several times their rate);
* profile of a res-6 area: its share in each local hour of the week over its
  overall share, shrunk hour-of-week toward hour-of-day toward flat with
  ``area_profile_prior`` pseudo-calls, averaged over the window's hours weighted
  by the jurisdiction's rate (a commuter area is busier by day, a residential
  one by night). Its cells take it too, so a res-6 area's forecast equals the
  sum of its res-7 cells', and theirs of their res-8 cells'.

A category's forecast multiplies each hour by the category's share at that
local hour. Planned event zones (:meth:`ShiftForecaster.add_event`) add their
expected extra calls per hour over the part of the window they overlap, spread
evenly over the zone's res-8 cells (and, for one category, in the usual mix).

**Intervals.** The count is negative binomial around the mean ``mu`` with
variance ``mu + alpha mu^2`` (``alpha = 0`` is Poisson); the interval bounds are
exact quantiles of that distribution (:func:`nb_quantiles`: the pmf summed
outward from its mode, no normal approximation, so a mean of 0.3 gets the
interval a mean of 0.3 deserves). ``alpha`` is learned from the model's own
errors, per level (the jurisdiction, res-6 cells, res-7 cells; a res-8 area
uses the res-7 value) and per horizon (1, 8 and 24 hours; another horizon
interpolates in log-hours, clamped at the ends):

* at hour boundaries, once the baseline is :meth:`ready`, the forecaster
  notes the mean it would forecast for each unit (the jurisdiction, every
  res-7 cell with a call in the last 28 days, and their res-6 parents) for the
  window of 1 hour starting there (every hour), of 8 hours (every 4th hour,
  UTC) and of 24 hours (every 12th);
* it counts the calls of every hour per unit, keeping the last 24 hours only;
* when a window has ended it compares the count ``y`` with the noted ``mu``:
  ``z = (y - mu)^2 - mu`` has expectation ``alpha mu^2`` under the model, and
  ``alpha`` is the weighted least-squares estimate over units and windows,
  ``sum w z / sum w mu^2`` with ``w = mu / (1 + 2 mu)`` (the inverse of the
  variance of ``z`` under Poisson, divided by ``mu^2``), each sum decayed with
  ``dispersion_half_life_days``, floored at 0. Without the weights a quiet
  cell's one call (``mu = 0.01``) would outweigh a busy hour of the whole
  jurisdiction. The errors of the mean (a young bin, a share not yet known) are
  part of ``z``: the intervals are for the count, not for the rate.

A silence the model would have expected ``outage_calls`` calls in (a feed
outage, the month between two slices of a sampled export) or longer than a day
drops the windows it touches: an outage is not a quiet day.

**Memory.** The baseline's (bounded by recently active cells), 193 sums per
res-6 area and one per res-7 cell with calls in the last few share half-lives,
the last 24 hours of counts and pending windows per recently active unit, and
events until a week after they end. The forecasts read a view of the state
built once per state (:class:`_View`: shares and profiles cached until the
next ``learn_one``), which is not pickled.

Examples
--------
>>> import random
>>> from detectors.types import CallPoint
>>> rng = random.Random(3)
>>> f = ShiftForecaster(warmup_calls=200, warmup_hours=24)
>>> t = 1_699_833_600.0                                   # Monday 2023-11-13 00:00 UTC
>>> cells = ["882aac941dfffff", "882aac9415fffff"]
>>> while t < 1_699_833_600.0 + 14 * 86400:              # two weeks at 10 calls an hour
...     t += rng.expovariate(10 / 3600)
...     f.learn_one(CallPoint(t=t, cell=rng.choice(cells), category="EMS"))
>>> f.ready()
True
>>> fc = f.forecast(1_699_833_600.0 + 14 * 86400, hours=8)
>>> round(fc.mean), fc.lo80 <= fc.mean <= fc.hi80, fc.lo95 <= fc.lo80
(79, True, True)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from zoneinfo import ZoneInfo

import h3

from detectors.base import Detector
from detectors.baseline import ExpectedCounts, _check_positive, _how_bin
from detectors.types import DETECTION_RESOLUTION, CallPoint
from streams.ingest.schema import CATEGORIES

#: Horizons (hours) whose dispersion is learned; others interpolate between them.
HORIZONS: tuple[int, ...] = (1, 8, 24)
#: Level of the jurisdiction in the dispersion tables (cells are keyed by their resolution).
_JURISDICTION = 0
#: Resolutions an area may be given at.
_AREA_RESOLUTIONS = (6, 7, 8)
#: A res-7 cell without a call for this long is no longer a unit of the dispersion estimate.
_UNIT_MEMORY_S = 28 * 86400.0
#: Events are forgotten this long after they end.
_EVENT_MEMORY_S = 7 * 86400.0
#: A window of each horizon is noted for the dispersion estimate at every so many hour boundaries: overlapping
#: windows add little information and each costs a pass over the units (2 to 6 a day for 8 and 24 hours).
_NOTE_EVERY = {1: 1, 8: 4, 24: 12}
#: Hours in a week, and the index of an area's total after its 168 hour-of-week and 24 hour-of-day sums.
_WEEK_H = 168
_TOTAL = _WEEK_H + 24
#: Renormalise the share weights when they reach 2 ** this.
_RENORM_HALF_LIVES = 30.0
#: Areas whose decayed count of calls falls under this are forgotten.
_FORGET_BELOW = 0.01
#: The pmf is summed outward from its mode until a term is this small relative to the mode's.
_PMF_EPS = 1e-17


@dataclass(frozen=True)
class Forecast:
    """Calls expected in ``[start, end)`` (epoch seconds) and the 80 % and 95 % prediction intervals of the count.

    The bounds are integer-valued quantiles of the predictive distribution (10 %
    and 90 %, 2.5 % and 97.5 %): the count falls in ``[lo80, hi80]`` with
    probability at least 0.8 (more for a small mean, the count being discrete).
    """

    start: float
    end: float
    mean: float
    lo80: float
    hi80: float
    lo95: float
    hi95: float
    #: the ``alpha`` of the negative binomial the bounds are quantiles of (variance ``mean + alpha mean^2``)
    dispersion: float = 0.0


@dataclass(frozen=True)
class _Event:
    start: float
    end: float
    #: the zone's res-8 cells
    cells: frozenset[str]
    extra_per_hour: float


class ShiftForecaster(Detector):
    """Online forecasts of calls per area for the next hours, with negative-binomial prediction intervals.

    Parameters
    ----------
    timezone : str
        IANA zone of the jurisdiction's local clock (its profile's ``timezone``).
    holidays : iterable of datetime.date
        Local dates (holidays and the profile's known special days) expected like a Sunday.
    half_life_days, profile_prior, warmup_calls, warmup_hours
        Those of the jurisdiction's seasonal rate, :class:`detectors.baseline.ExpectedCounts`.
    cell_prior : float
        Pseudo-calls each cell borrows from its parent: a res-7 cell from its
        res-6 area, a res-8 cell from its res-7 cell (> 0).
    parent_prior : float
        Pseudo-calls each res-6 area borrows from the jurisdiction (> 0).
    dispersion_half_life_days : float
        Half-life, in event time, of the errors the overdispersion is learned from (> 0).
    outage_calls : float
        A silence in which the model expected more calls than this is an outage:
        the windows it touches are not used to learn the dispersion (> 0).
    share_half_life_days : float
        Half-life of the calls the areas' shares and weekly profiles are counted from (> 0).
    area_profile_prior : float
        Pseudo-calls of the shrinkage of a res-6 area's hour-of-day share toward
        its overall share, and of its hour-of-week share toward its hour-of-day share (> 0).
    level_half_life_days : float
        Half-life of the local-level correction: the jurisdiction's recent calls
        against what the seasonal rate expected for them (> 0).
    level_prior : float
        Pseudo-calls (on both sides of that ratio) that hold the correction near 1 (> 0).

    Notes
    -----
    Call :meth:`learn_one` with every call, roughly in event-time order; a late
    call is learnt by the mean and counted in its hour if that hour is still
    held, but windows already compared do not see it. :meth:`ready` is the
    seasonal rate's warm-up; before it the forecasts are the priors' and the
    intervals Poisson.
    """

    def __init__(
        self,
        timezone: str = "UTC",
        holidays: Iterable[date] = (),
        *,
        half_life_days: float = 90.0,
        cell_prior: float = 0.5,
        parent_prior: float = 0.5,
        profile_prior: float = 5.0,
        warmup_calls: int = 1000,
        warmup_hours: float = 24.0,
        dispersion_half_life_days: float = 14.0,
        outage_calls: float = 10.0,
        share_half_life_days: float = 42.0,
        area_profile_prior: float = 50.0,
        level_half_life_days: float = 3.0,
        level_prior: float = 50.0,
    ) -> None:
        for name, value in (
            ("dispersion_half_life_days", dispersion_half_life_days),
            ("outage_calls", outage_calls),
            ("share_half_life_days", share_half_life_days),
            ("area_profile_prior", area_profile_prior),
            ("level_half_life_days", level_half_life_days),
            ("level_prior", level_prior),
        ):
            _check_positive(name, value)
        # the baseline validates its own parameters (and the time zone, and the holidays)
        self._baseline = ExpectedCounts(
            half_life_days=half_life_days,
            cell_prior=cell_prior,
            parent_prior=parent_prior,
            profile_prior=profile_prior,
            timezone=timezone,
            holidays=holidays,
            warmup_calls=warmup_calls,
            warmup_hours=warmup_hours,
        )
        self.timezone = timezone
        self.holidays = self._baseline.holidays
        self.half_life_days = half_life_days
        self.cell_prior = cell_prior
        self.parent_prior = parent_prior
        self.profile_prior = profile_prior
        self.warmup_calls = warmup_calls
        self.warmup_hours = warmup_hours
        self.dispersion_half_life_days = dispersion_half_life_days
        self.outage_calls = outage_calls
        self.share_half_life_days = share_half_life_days
        self.area_profile_prior = area_profile_prior
        self.level_half_life_days = level_half_life_days
        self.level_prior = level_prior
        self._tz = ZoneInfo(timezone)
        self._holiday_set = frozenset(self.holidays)
        self._decay = 2.0 ** (-1.0 / (dispersion_half_life_days * 24.0))  # per hour boundary
        self._level_decay = 2.0 ** (-1.0 / (level_half_life_days * 24.0))
        self._hour: int | None = None  # the hour of the newest call
        self._last_t: float | None = None
        self._live_from = 0  # first hour counted (after the first call or an outage)
        #: calls per unit ("" = the jurisdiction, else a res-6 or res-7 cell) per hour, the last 24 hours
        self._counts: dict[int, dict[str, int]] = {}
        #: the means noted for windows not yet ended: (start hour, horizon) -> unit -> mu
        self._pending: dict[tuple[int, int], dict[str, float]] = {}
        #: res-7 cells with a call lately -> the time of their last call
        self._units: dict[str, float] = {}
        #: decayed sums of the dispersion estimate: (level, horizon) -> [sum w z, sum w mu^2]
        self._disp: dict[tuple[int, int], list[float]] = {}
        self._events: list[_Event] = []
        # Areas' shares: calls counted per hour (as they end), weighted 2 ** ((hour - _ref) / half-life hours)
        self._ref: int | None = None
        self._n_how = [0.0] * _WEEK_H  # the jurisdiction per local hour of week
        self._n_hod = [0.0] * 24
        self._n = 0.0
        #: per res-6 area: 168 hour-of-week sums, 24 hour-of-day sums and the total (index _TOTAL)
        self._n6: dict[str, list[float]] = {}
        #: per res-7 cell: its total
        self._n7: dict[str, float] = {}
        # Local level: decayed calls and decayed expected calls over the hours that ended
        self._level = [0.0, 0.0]
        #: the seasonal rate's expectation for hours not yet ended (hour -> calls)
        self._pending_level: dict[int, float] = {}
        self._version = 0
        self._memo: _View | None = None

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        state["_memo"] = None  # a cache of closures over the current state, rebuilt on demand
        return state

    # --------------------------------------------------------------- learning

    def learn_one(self, x: CallPoint) -> None:
        """Learn one call: the mean learns it, and it is counted in its hour for the shares, the level and the dispersion."""
        self._version += 1
        t = float(x.t)
        hour = int(t // 3600)
        if self._hour is None or self._last_t is None:
            self._hour, self._last_t, self._live_from = hour, t, hour + 1  # the first hour is partial
            self._baseline.learn_one(x)
        elif hour > self._hour:
            outage = hour - self._hour > 24 or self._baseline.total(self._last_t, t) > self.outage_calls
            self._baseline.learn_one(x)  # folds the hours that ended into the mean first
            if outage:
                self._counts.clear()
                self._pending.clear()
                self._pending_level.clear()
                self._live_from = hour + 1
            else:
                for boundary in range(self._hour + 1, hour + 1):
                    self._boundary(boundary)
            self._hour = hour
        else:
            self._baseline.learn_one(x)
        self._last_t = max(self._last_t, t)
        self._count(x.cell, hour, t)

    def _count(self, cell: str, hour: int, t: float) -> None:
        held = self._counts.get(hour)
        if held is None:
            if hour < self._live_from or hour != self._hour:
                return  # before the counted stretch, or an hour already dropped
            held = self._counts[hour] = {}
        held[""] = held.get("", 0) + 1
        res = int(h3.get_resolution(cell))
        if res >= 7:
            c7 = _ancestor(cell, 7)
            held[c7] = held.get(c7, 0) + 1
            self._units[c7] = t
        if res >= 6:
            c6 = _ancestor(cell, 6)
            held[c6] = held.get(c6, 0) + 1

    def _fold(self, h: int) -> None:
        """Hour ``h`` has ended: add its calls to the areas' counts and its total to the local level."""
        held = self._counts.get(h, {})
        expected = self._pending_level.pop(h, None)
        for stale in [k for k in self._pending_level if k < h]:
            del self._pending_level[stale]
        self._level[0] *= self._level_decay
        self._level[1] *= self._level_decay
        if expected is not None:
            self._level[0] += held.get("", 0)
            self._level[1] += expected
        if not held:
            return
        if self._ref is None:
            self._ref = h
        span = self.share_half_life_days * 24.0
        if h - self._ref > _RENORM_HALF_LIVES * span:
            self._rescale(2.0 ** (-(h - self._ref) / span))
            self._ref = h
        w = 2.0 ** ((h - self._ref) / span)
        b = _how_bin(self._tz, h, self._holiday_set)
        hod = b % 24
        for unit, n in held.items():
            v = n * w
            if unit == "":
                self._n_how[b] += v
                self._n_hod[hod] += v
                self._n += v
            elif int(h3.get_resolution(unit)) == 6:
                sums = self._n6.get(unit)
                if sums is None:
                    sums = self._n6[unit] = [0.0] * (_TOTAL + 1)
                sums[b] += v
                sums[_WEEK_H + hod] += v
                sums[_TOTAL] += v
            else:
                self._n7[unit] = self._n7.get(unit, 0.0) + v
        if h % 24 == 0:  # forget areas whose decayed count fell under _FORGET_BELOW calls
            floor = _FORGET_BELOW * w
            for c6 in [c for c, sums in self._n6.items() if sums[_TOTAL] < floor]:
                del self._n6[c6]
            for c7 in [c for c, n in self._n7.items() if n < floor]:
                del self._n7[c7]

    def _rescale(self, f: float) -> None:
        self._n *= f
        for arr in (self._n_how, self._n_hod, *self._n6.values()):
            for i in range(len(arr)):
                arr[i] *= f
        for c7 in self._n7:
            self._n7[c7] *= f

    def _boundary(self, b: int) -> None:
        """Hour ``b`` starts: fold the hour that ended, compare the windows that ended with their means, note new means."""
        if b - 1 >= self._live_from:
            self._fold(b - 1)
        self._version += 1
        for sums in self._disp.values():
            sums[0] *= self._decay
            sums[1] *= self._decay
        for horizon in HORIZONS:
            noted = self._pending.pop((b - horizon, horizon), None)
            if noted is not None:
                self._compare(noted, b - horizon, b, horizon)
        for h in [h for h in self._counts if h < b - max(HORIZONS)]:
            del self._counts[h]
        if b % 24 == 0:
            assert self._last_t is not None  # set by the first call
            for c7 in [c for c, seen in self._units.items() if seen < self._last_t - _UNIT_MEMORY_S]:
                del self._units[c7]
            self._events = [e for e in self._events if e.end >= self._last_t - _EVENT_MEMORY_S]
        if b >= self._live_from and self._baseline.ready:
            start = b * 3600.0
            self._pending_level[b] = self._baseline.total(start, start + 3600.0) + self._extra(start, start + 3600.0, None, None)
            view = self._view()
            units = sorted(self._units)
            parents = [_ancestor(c7, 6) for c7 in units]
            units6 = sorted(set(parents))
            # each unit's share once, each area's profile once per window (the same arithmetic as forecast())
            shares = view.shares7(units, parents)
            shares6 = [view.share(c6) for c6 in units6]
            for horizon in HORIZONS:
                if b % _NOTE_EVERY[horizon]:
                    continue
                end = (b + horizon) * 3600.0
                total = view.total(start, end)
                mus = {"": total + self._extra(start, end, None, None)}
                profiles = view.profiles(units6, start, end)
                events = bool(self._events)
                for unit, c6, s in (*zip(units, parents, shares, strict=True), *zip(units6, units6, shares6, strict=True)):
                    extra = self._extra(start, end, frozenset((unit,)), None) if events else 0.0
                    mus[unit] = total * (s * profiles[c6]) + extra
                self._pending[(b, horizon)] = mus

    def _compare(self, noted: dict[str, float], first: int, stop: int, horizon: int) -> None:
        """Add the errors of the window of hours ``[first, stop)`` to the dispersion sums of their levels."""
        if first < self._live_from:
            return
        y: dict[str, int] = {}
        for h in range(first, stop):
            for unit, n in self._counts.get(h, {}).items():
                y[unit] = y.get(unit, 0) + n
        by_level: dict[int, list[float]] = {}
        for unit, mu in noted.items():
            if mu <= 0.0:
                continue
            level = _JURISDICTION if unit == "" else _resolution(unit)
            w = mu / (1.0 + 2.0 * mu)
            sums = by_level.get(level)
            if sums is None:
                sums = by_level[level] = self._disp.setdefault((level, horizon), [0.0, 0.0])
            sums[0] += w * ((y.get(unit, 0) - mu) ** 2 - mu)
            sums[1] += w * mu * mu

    # --------------------------------------------------------------- events

    def add_event(self, start: float, end: float, cells: Iterable[str], extra_per_hour: float) -> None:
        """Expect ``extra_per_hour`` more calls in ``cells`` (a planned event's zone) during ``[start, end)``.

        The extra load is spread evenly over the zone's res-8 cells and added to
        every forecast whose window and area overlap it.
        """
        if not (_is_number(start) and _is_number(end) and end > start):
            raise ValueError(f"an event needs finite start < end (epoch seconds), got start={start!r}, end={end!r}")
        if not (_is_number(extra_per_hour) and extra_per_hour >= 0):
            raise ValueError(f"extra_per_hour must be a finite number >= 0 (calls per hour), got {extra_per_hour!r}")
        zone, _ = _area(cells)
        fine = frozenset(c8 for c in zone for c8 in _children(c, DETECTION_RESOLUTION))
        self._events.append(_Event(float(start), float(end), fine, float(extra_per_hour)))
        self._version += 1

    def _extra(self, start: float, end: float, area: frozenset[str] | None, category: str | None) -> float:
        """Extra calls the events expect in ``area`` (None: the jurisdiction) during ``[start, end)``."""
        extra = 0.0
        for e in self._events:
            a, b = max(start, e.start), min(end, e.end)
            if b <= a:
                continue
            if area is None:
                inside = 1.0
            else:
                res = int(h3.get_resolution(next(iter(area))))
                inside = sum(_ancestor(c, res) in area for c in e.cells) / len(e.cells)
            load = e.extra_per_hour * (b - a) / 3600.0 * inside
            if category is not None and load > 0.0:
                load *= self._baseline.category_share(category, 0.5 * (a + b))
            extra += load
        return extra

    # --------------------------------------------------------------- reading

    def ready(self) -> bool:
        """True once the seasonal mean has warmed up (``warmup_calls`` calls and ``warmup_hours`` hours of feed)."""
        return self._baseline.ready

    def state_size(self) -> int:
        """Entries held: the baseline's, the units, the hourly counts, the noted means, the areas' counts and the events."""
        return (
            self._baseline.state_size()
            + len(self._units)
            + sum(len(c) for c in self._counts.values())
            + sum(len(m) for m in self._pending.values())
            + len(self._pending_level)
            + len(self._n6)
            + len(self._n7)
            + len(self._events)
        )

    def level(self) -> float:
        """The local-level correction: the recent calls over what the seasonal rate expected for them, shrunk toward 1."""
        done, expected = self._level
        return (done + self.level_prior) / (expected + self.level_prior)

    def dispersion(self, level: int, hours: float) -> float:
        """The learned ``alpha`` (variance ``mu + alpha mu^2``) of ``level`` (0: the jurisdiction, 6, 7 or 8) for a window of ``hours``.

        A res-8 area uses the res-7 value; between the learned horizons the value
        is interpolated in log-hours, beyond them clamped.
        """
        level = 7 if level == 8 else level
        points = []
        for horizon in HORIZONS:
            sums = self._disp.get((level, horizon))
            points.append(max(0.0, sums[0] / sums[1]) if sums and sums[1] > 0.0 else 0.0)
        x = math.log(hours)
        logs = [math.log(h) for h in HORIZONS]
        if x <= logs[0]:
            return points[0]
        for i in range(1, len(logs)):
            if x <= logs[i]:
                frac = (x - logs[i - 1]) / (logs[i] - logs[i - 1])
                return max(0.0, points[i - 1] + (points[i] - points[i - 1]) * frac)
        return points[-1]

    def forecast(self, start: float, hours: float, cells: Iterable[str] | None = None, category: str | None = None) -> Forecast:
        """Calls expected in ``cells`` (res-6, res-7 or res-8, one resolution; None: the jurisdiction) in ``[start, start + hours h)``.

        ``category`` is one of :data:`streams.ingest.schema.CATEGORIES` (None: all).
        """
        if not _is_number(start):
            raise ValueError(f"start must be finite epoch seconds, got {start!r}")
        if not (_is_number(hours) and hours > 0):
            raise ValueError(f"hours must be a finite number > 0 (the window's length), got {hours!r}")
        if category is not None and category not in CATEGORIES:
            raise ValueError(f"category must be one of {', '.join(CATEGORIES)} or None (all), got {category!r}")
        end = start + hours * 3600.0
        area, level = (None, _JURISDICTION) if cells is None else _area(cells)
        view = self._view()
        if category is None:
            mean = view.total(start, end)
        else:
            mean = 0.0
            t = start
            while t < end:
                stop = min((math.floor(t / 3600) + 1) * 3600.0, end)
                mean += view.total(t, stop) * self._baseline.category_share(category, 0.5 * (t + stop))
                t = stop
        if area is not None:
            mean *= sum(view.share(c) * view.profile(_ancestor(c, 6), start, end) for c in area)
        mean += self._extra(start, end, area, category)
        alpha = self.dispersion(level, hours)
        lo95, lo80, hi80, hi95 = nb_quantiles(mean, alpha, (0.025, 0.1, 0.9, 0.975))
        return Forecast(start, end, mean, float(lo80), float(hi80), float(lo95), float(hi95), alpha)

    def _view(self) -> _View:
        if self._memo is None or self._memo.version != self._version:
            self._memo = _View(self)
        return self._memo


class _View:
    """What the forecasts read, computed once per state of the forecaster (valid until it learns again)."""

    def __init__(self, f: ShiftForecaster) -> None:
        self.version = f._version
        self._f = f
        self._base = f._baseline
        self._base_share = f._baseline.shares()
        self._level = f.level()
        w = 2.0 ** ((f._hour - f._ref) / (f.share_half_life_days * 24.0)) if f._ref is not None and f._hour is not None else 1.0
        # the priors are in calls, the counts in weighted calls (calls x w)
        self._a = f.cell_prior * w
        self._b = f.parent_prior * w
        self._k = f.area_profile_prior * w
        self._denominator = f._n + len(f._n6) * self._b
        self._shares: dict[str, float] = {}
        self._within: dict[str, float] = {}
        self._profiles: dict[tuple[str, float, float], float] = {}

    def total(self, start: float, end: float) -> float:
        """The jurisdiction's calls expected in ``[start, end)``: the seasonal rate times the local level."""
        return self._base.total(start, end) * self._level

    def share(self, cell: str) -> float:
        """The cell's (res 6, 7 or 8) share of the jurisdiction's calls, hierarchically shrunk."""
        got = self._shares.get(cell)
        if got is None:
            got = self._shares[cell] = self._share(cell)
        return got

    def shares7(self, cells: Sequence[str], parents: Sequence[str]) -> list[float]:
        """:meth:`share` of each res-7 cell of ``cells``, whose res-6 areas are ``parents`` (the same length)."""
        memo, share7 = self._shares, self._share7
        out = []
        for cell, c6 in zip(cells, parents, strict=True):
            got = memo.get(cell)
            if got is None:
                got = memo[cell] = share7(cell, c6)
            out.append(got)
        return out

    def _share7(self, cell: str, c6: str) -> float:
        f = self._f
        sums = f._n6.get(c6)
        n6 = sums[_TOTAL] if sums else 0.0
        return self.share(c6) * (f._n7.get(cell, 0.0) + self._a) / (n6 + len(_children(c6, 7)) * self._a)

    def _share(self, cell: str) -> float:
        f = self._f
        res = _resolution(cell)
        if res == 6:
            if self._denominator <= 0.0:
                return 0.0
            sums = f._n6.get(cell)
            return ((sums[_TOTAL] if sums else 0.0) + self._b) / self._denominator
        if res == 7:
            return self._share7(cell, _ancestor(cell, 6))
        # res 8: its res-7 cell's share, split as the seasonal baseline splits it (its own counts, same priors)
        c7 = _ancestor(cell, 7)
        within = self._within.get(c7)
        if within is None:
            within = self._within[c7] = sum(self._base_share(c) for c in _children(c7, DETECTION_RESOLUTION))
        if within <= 0.0:
            return self.share(c7) / len(_children(c7, DETECTION_RESOLUTION))
        return self.share(c7) * self._base_share(cell) / within

    def profile(self, c6: str, start: float, end: float) -> float:
        """How much busier than its average share the res-6 area ``c6`` is in ``[start, end)``: its
        hour-of-week share over its overall share, averaged over the window's hours weighted by their rate."""
        key = (c6, start, end)
        got = self._profiles.get(key)
        if got is not None:
            return got
        got = self._profiles[key] = self._profile(c6, self._hours(start, end))
        return got

    def profiles(self, areas: Iterable[str], start: float, end: float) -> dict[str, float]:
        """:meth:`profile` of each res-6 area in ``areas`` over one window."""
        hours = self._hours(start, end)
        out = {}
        for c6 in areas:
            key = (c6, start, end)
            got = self._profiles.get(key)
            if got is None:
                got = self._profiles[key] = self._profile(c6, hours)
            out[c6] = got
        return out

    def _hours(self, start: float, end: float) -> list[tuple[int, int, float]]:
        """The hours of ``[start, end)``: each one's hour-of-week bin, hour-of-day and weight (its rate times its seconds in the window)."""
        f = self._f
        hours = []
        t = start
        while t < end:
            stop = min((math.floor(t / 3600) + 1) * 3600.0, end)
            b = _how_bin(f._tz, int(t // 3600), f._holiday_set)
            hours.append((b, b % 24, self._base._bin_rate(b) * (stop - t)))
            t = stop
        return hours

    def _profile(self, c6: str, hours: list[tuple[int, int, float]]) -> float:
        f = self._f
        sums = f._n6.get(c6)
        share = self.share(c6)
        if sums is None or share <= 0.0:
            return 1.0
        k = self._k
        num = den = 0.0
        for b, hod, weight in hours:
            by_hour = (sums[_WEEK_H + hod] + k * share) / (f._n_hod[hod] + k)
            by_week = (sums[b] + k * by_hour) / (f._n_how[b] + k)
            num += weight * by_week
            den += weight
        return num / den / share if den > 0.0 else 1.0


def nb_quantiles(mean: float, alpha: float, probs: Sequence[float]) -> list[int]:
    """Quantiles (the smallest ``k`` with ``P(Y <= k) >= p``) of a count of the given mean and variance ``mean + alpha mean^2``.

    Negative binomial with ``r = 1 / alpha``, Poisson when ``alpha`` is 0. Exact
    but for terms under ``1e-17`` of the mode's: the pmf is computed by its
    recurrence outward from the mode, so neither a large mean (where ``P(0)``
    underflows) nor a small one (where a normal approximation fails) is a problem.

    >>> nb_quantiles(0.3, 0.0, (0.025, 0.1, 0.9, 0.975))      # Poisson(0.3): P(0) = 0.74, P(<= 1) = 0.96
    [0, 0, 1, 2]
    >>> nb_quantiles(1000.0, 0.0, (0.025, 0.975))              # about 1000 -+ 1.96 sqrt(1000)
    [938, 1062]
    >>> nb_quantiles(10.0, 0.5, (0.1, 0.9))                    # variance 60 instead of 10
    [2, 20]
    """
    if not (_is_number(mean) and mean >= 0 and _is_number(alpha) and alpha >= 0):
        raise ValueError(f"mean and alpha must be finite numbers >= 0, got mean={mean!r}, alpha={alpha!r}")
    if mean == 0.0:
        return [0] * len(probs)
    lo, pmf = _pmf(mean, alpha)
    total = math.fsum(pmf)
    out = []
    for p in probs:
        target = p * total
        acc = 0.0
        k = len(pmf) - 1
        for i, v in enumerate(pmf):
            acc += v
            if acc >= target * (1 - 1e-12):
                k = i
                break
        out.append(lo + k)
    return out


def _pmf(mean: float, alpha: float) -> tuple[int, list[float]]:
    """The pmf (relative to its mode's value) from the first to the last non-negligible ``k``, and that first ``k``."""
    if alpha > 0.0:
        r = 1.0 / alpha
        q = mean / (r + mean)
        mode = max(0, math.floor((r - 1.0) * mean / r))

        def up(k: int) -> float:  # P(k + 1) / P(k)
            return (k + r) / (k + 1) * q

    else:
        mode = math.floor(mean)

        def up(k: int) -> float:
            return mean / (k + 1)

    below: list[float] = []
    v, k = 1.0, mode
    while k > 0:
        v /= up(k - 1)
        k -= 1
        if v < _PMF_EPS:
            break
        below.append(v)
    above: list[float] = []
    v, k = 1.0, mode
    while True:
        v *= up(k)
        k += 1
        if v < _PMF_EPS and k > mean:
            break
        above.append(v)
    return mode - len(below), [*reversed(below), 1.0, *above]


def _area(cells: Iterable[str]) -> tuple[frozenset[str], int]:
    """The cells of an area and their (one) resolution, or ValueError saying what is wrong."""
    if isinstance(cells, str):
        raise ValueError(f"cells must be an iterable of H3 cells, got the single string {cells!r}: wrap it in a list")
    area = frozenset(cells)
    if not area:
        raise ValueError("cells is empty: give at least one H3 cell, or None for the whole jurisdiction")
    bad = sorted(repr(c) for c in area if not (isinstance(c, str) and h3.is_valid_cell(c)))
    if bad:
        raise ValueError(f"cells must be H3 cell ids (res 6, 7 or 8), got {', '.join(bad[:3])}")
    resolutions = sorted({int(h3.get_resolution(c)) for c in area})
    if len(resolutions) > 1:
        raise ValueError(f"an area's cells must share one resolution, got resolutions {resolutions}: convert them first")
    if resolutions[0] not in _AREA_RESOLUTIONS:
        raise ValueError(f"cells must be at resolution 6, 7 or 8, got resolution {resolutions[0]}")
    return area, resolutions[0]


@functools.lru_cache(maxsize=1 << 16)
def _resolution(cell: str) -> int:
    """The cell's H3 resolution (cached: the forecaster asks for the same few hundred cells at every hour)."""
    return int(h3.get_resolution(cell))


@functools.lru_cache(maxsize=1 << 16)
def _ancestor(cell: str, res: int) -> str:
    """The cell's ancestor at ``res`` (the cell itself at its own resolution or coarser)."""
    return str(h3.cell_to_parent(cell, res)) if int(h3.get_resolution(cell)) > res else cell


@functools.lru_cache(maxsize=1 << 12)
def _children(cell: str, res: int) -> tuple[str, ...]:
    """The cell's descendants at ``res`` (the cell itself at its own resolution or finer)."""
    if int(h3.get_resolution(cell)) >= res:
        return (cell,)
    return tuple(sorted(str(c) for c in h3.cell_to_children(cell, res)))


def _is_number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
