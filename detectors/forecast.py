"""Expected calls per area for the next hour, shift or day, with prediction intervals, learned online.

:class:`ShiftForecaster` answers: how many calls will this area (the
jurisdiction, a set of res-6, res-7 or res-8 cells; one category or all) get
between ``start`` and ``start + hours``, and within what range, at 80 % and
95 %? It learns from every call (River's ``learn_one``) and answers with
:meth:`ShiftForecaster.forecast`.

**Mean.** The seasonal hour-of-week model of :class:`detectors.baseline.ExpectedCounts`,
which the forecaster owns and feeds: the jurisdiction's rate integrated hour by
hour over the window (holidays are expected like Sundays, as the baseline
learns them) times the area's share. The share of a res-8 cell is the
baseline's hierarchically shrunk share; a res-7 cell's is the sum of its seven
children's (which equals the baseline's parent share, its children's counts
summing to the parent's), a res-6 cell's the sum of its seven res-7 children's.
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

* at every hour boundary, once the baseline is :meth:`ready`, the forecaster
  notes the mean it would forecast for each unit (the jurisdiction, every
  res-7 cell with a call in the last 28 days, and their res-6 parents) for the
  windows of 1, 8 and 24 hours starting there;
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

**Memory.** The baseline's (bounded by recently active cells), the last 24
hours of counts and pending windows per recently active unit, and events until
a week after they end.

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
(80, True, True)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

import h3

from detectors.base import Detector
from detectors.baseline import ExpectedCounts, _check_positive
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
    half_life_days, cell_prior, parent_prior, profile_prior, warmup_calls, warmup_hours
        Those of the seasonal mean, :class:`detectors.baseline.ExpectedCounts`.
    dispersion_half_life_days : float
        Half-life, in event time, of the errors the overdispersion is learned from (> 0).
    outage_calls : float
        A silence in which the model expected more calls than this is an outage:
        the windows it touches are not used to learn the dispersion (> 0).

    Notes
    -----
    Call :meth:`learn_one` with every call, roughly in event-time order; a late
    call is learnt by the mean and counted in its hour if that hour is still
    held, but windows already compared do not see it. :meth:`ready` is the
    baseline's warm-up; before it the forecasts are the priors' and the
    intervals Poisson.
    """

    def __init__(
        self,
        timezone: str = "UTC",
        holidays: Iterable[date] = (),
        *,
        half_life_days: float = 90.0,
        cell_prior: float = 0.5,
        parent_prior: float = 1.0,
        profile_prior: float = 5.0,
        warmup_calls: int = 1000,
        warmup_hours: float = 24.0,
        dispersion_half_life_days: float = 14.0,
        outage_calls: float = 10.0,
    ) -> None:
        for name, value in (("dispersion_half_life_days", dispersion_half_life_days), ("outage_calls", outage_calls)):
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
        self._decay = 2.0 ** (-1.0 / (dispersion_half_life_days * 24.0))  # per hour boundary
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

    # --------------------------------------------------------------- learning

    def learn_one(self, x: CallPoint) -> None:
        """Learn one call: the mean learns it, and it is counted in its hour for the dispersion."""
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

    def _boundary(self, b: int) -> None:
        """Hour ``b`` starts: compare the windows that ended with their means, note the means of those that start."""
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
            units = sorted(self._units)
            shares7 = self._shares7()
            share6: dict[str, float] = {}
            for c7 in units:
                c6 = _ancestor(c7, 6)
                if c6 not in share6:
                    share6[c6] = sum(shares7(c) for c in _children(c6, 7))
            for horizon in HORIZONS:
                start, end = b * 3600.0, (b + horizon) * 3600.0
                total = self._baseline.total(start, end)
                mus = {"": total + self._extra(start, end, None, None)}
                for unit, share in [*((c7, shares7(c7)) for c7 in units), *share6.items()]:
                    mus[unit] = total * share + self._extra(start, end, frozenset((unit,)), None)
                self._pending[(b, horizon)] = mus

    def _compare(self, noted: dict[str, float], first: int, stop: int, horizon: int) -> None:
        """Add the errors of the window of hours ``[first, stop)`` to the dispersion sums of their levels."""
        if first < self._live_from:
            return
        y: dict[str, int] = {}
        for h in range(first, stop):
            for unit, n in self._counts.get(h, {}).items():
                y[unit] = y.get(unit, 0) + n
        for unit, mu in noted.items():
            if mu <= 0.0:
                continue
            level = _JURISDICTION if unit == "" else int(h3.get_resolution(unit))
            w = mu / (1.0 + 2.0 * mu)
            sums = self._disp.setdefault((level, horizon), [0.0, 0.0])
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
        """Entries held: the baseline's, the units, the hourly counts, the noted means and the events."""
        return (
            self._baseline.state_size()
            + len(self._units)
            + sum(len(c) for c in self._counts.values())
            + sum(len(m) for m in self._pending.values())
            + len(self._events)
        )

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
        if category is None:
            mean = self._baseline.total(start, end)
        else:
            mean = 0.0
            t = start
            while t < end:
                stop = min((math.floor(t / 3600) + 1) * 3600.0, end)
                mean += self._baseline.total(t, stop) * self._baseline.category_share(category, 0.5 * (t + stop))
                t = stop
        if area is not None:
            share = self._baseline.shares()
            shares7 = self._shares7()
            if level == 8:
                mean *= sum(share(c) for c in area)
            elif level == 7:
                mean *= sum(shares7(c) for c in area)
            else:
                mean *= sum(shares7(c7) for c in area for c7 in _children(c, 7))
        mean += self._extra(start, end, area, category)
        lo95, lo80, hi80, hi95 = nb_quantiles(mean, self.dispersion(level, hours), (0.025, 0.1, 0.9, 0.975))
        return Forecast(start, end, mean, float(lo80), float(hi80), float(lo95), float(hi95))

    def _shares7(self) -> _Shares7:
        return _Shares7(self._baseline)


class _Shares7:
    """A res-7 cell's share: the sum of its seven res-8 children's (valid until the baseline learns again)."""

    def __init__(self, baseline: ExpectedCounts) -> None:
        self._share = baseline.shares()

    def __call__(self, c7: str) -> float:
        return sum(self._share(c) for c in _children(c7, DETECTION_RESOLUTION))


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
