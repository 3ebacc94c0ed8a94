"""Expected call counts per H3 cell and time interval, learned online from the stream.

:class:`ExpectedCounts` answers one question: how many calls would one expect
in these cells between ``start`` and ``end``, given the time of day and the day
of the week? It factors the expectation as

    E[cells, start, end] = (integral of the jurisdiction rate from start to end) x (sum of the cells' shares)

**Jurisdiction rate.** Calls per second in each local hour of the week (168
bins), estimated as decayed calls over decayed *exposure* (seconds of live
feed) in that bin. A bin's estimate is shrunk toward the product of an
hour-of-day and a day-of-week factor, which are in turn shrunk toward the
overall rate; each shrinkage is a Gamma-Poisson posterior mean with
``profile_prior`` pseudo-calls::

    r      = n / x                                         overall
    f_h    = (n_h + k) / (x_h r + k)                       hour of day (24)
    g_d    = (n_d + k) / (sum_h x_dh f_h r + k)            day of week (7), against its hours
    rate_b = (n_b + k) / (x_b + k / (r f_h g_d))           hour of week (168)

so a bin seen for a few weeks leans on the rhythm of the whole week.

**Exposure.** Time counts as exposure only while the feed is plausibly live:
a silence is counted until the current rate would have expected
``silence_calls`` calls in it (before ``warmup_calls`` calls, until
``max_silence_s``), so a feed outage, or the month between two slices of a
sampled export, does not make the county look quiet.

**Cell shares** (hierarchical shrinkage). With decayed counts ``n`` for the
jurisdiction, ``n_P`` for the res-7 parent ``P`` of a res-8 cell ``c`` and
``n_c`` for the cell, and ``K`` parents seen so far::

    share_P = (n_P + parent_prior) / (n + K parent_prior)
    share_c = share_P (n_c + cell_prior) / (n_P + 7 cell_prior)

A quiet cell therefore gets its parent's share split among its 7 children,
and a parent never seen gets ``parent_prior`` pseudo-calls out of the
jurisdiction: no cell ever has an expectation of exactly zero, so a quiet
block's second call is a small surprise, not an infinite one.

**Categories.** The share of each category per local hour of day, shrunk
toward its overall share with ``profile_prior`` pseudo-calls, for tests that
look at one category (``expected(..., category=...)``).

**Decay.** Every count and every second of exposure carries the weight
``2 ** (t / half_life)``, so estimates follow seasons with the given
half-life. Weights are kept relative to a reference time that moves forward,
and cells whose decayed count falls under ``1 / 100`` of a call are dropped:
the state is bounded by the number of cells with calls in the last few
half-lives, not by the length of the stream.

**Score before learn, by the hour.** A call's count and the exposure around
it wait until its hour has ended before they enter the estimates, so a surge
does not raise its own expectation while it is being tested (a busy hour
would otherwise lift both its cell's share and its hour-of-week rate at once).

**Warm-up.** :attr:`ExpectedCounts.ready` is false until ``warmup_calls``
calls and ``warmup_hours`` hours of exposure have been learned; the
detectors stay silent until then. Exposure, not calendar time, is what counts:
with the defaults (1,000 calls, 24 hours) a continuous feed like Montgomery
County's (about 16 calls an hour) is ready after 2.6 days, and the sampled
export holding three hours on one day a month (about 70 calls each) after
about 15 monthly slices, its month-long gaps counting as outages, not as
quiet.

Examples
--------
>>> import random
>>> from detectors.types import CallPoint
>>> rng = random.Random(7)
>>> model = ExpectedCounts(warmup_calls=100, warmup_hours=24)
>>> t = 1_700_000_000.0
>>> busy, quiet = "882aac941dfffff", "882aac9411fffff"   # two res-8 cells with the same res-7 parent
>>> for _ in range(4000):                                 # ~two weeks at 12 calls an hour
...     t += rng.expovariate(12 / 3600)
...     model.learn_one(CallPoint(t=t, cell=busy if rng.random() < 0.3 else "882aac9415fffff", category="EMS"))
>>> model.ready
True
>>> round(model.share(busy), 2)                             # 30% of the calls, and a little shrinkage
0.31
>>> round(model.total(t, t + 86400) / 24, 1)              # 12 calls an hour, give or take two weeks of noise
13.0
>>> round(model.expected([busy], t, t + 86400) / 24, 1)   # of which the busy cell's
4.0
>>> 0 < model.expected([quiet], t, t + 3600) < 0.01      # never seen: borrows from its parent
True
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from datetime import date, datetime
from typing import Any, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import h3

from detectors.base import Detector
from detectors.types import DETECTION_RESOLUTION, CallPoint
from streams.ingest.schema import CATEGORIES, CATEGORY_INDEX

_HOURS_PER_WEEK = 168
#: Renormalise the decay weights when they reach 2**_RENORM_HALF_LIVES.
_RENORM_HALF_LIVES = 40.0
#: Cells whose decayed count falls below this many calls are forgotten.
_PRUNE_BELOW = 0.01
#: ``datetime.weekday()`` of Sunday: a holiday's hours are expected like a Sunday's.
_SUNDAY = 6


@functools.lru_cache(maxsize=1 << 16)
def _how_bin(tz: ZoneInfo, utc_hour: int, holidays: frozenset[date] = frozenset()) -> int:
    """Local hour of the week (Monday 00h = 0) of the UTC hour starting at ``utc_hour * 3600``; a holiday's hours are Sunday's.

    Cached: a stream touches a few thousand hours. For zones whose offset is not
    a whole number of hours the bin is that of the hour's start.

    >>> ny = ZoneInfo("America/New_York")
    >>> t = int(datetime(2016, 1, 18, 17, tzinfo=ny).timestamp()) // 3600  # Martin Luther King Jr. Day, a Monday, 17:00
    >>> _how_bin(ny, t), _how_bin(ny, t, frozenset({date(2016, 1, 18)}))
    (17, 161)
    """
    local = datetime.fromtimestamp(utc_hour * 3600, tz)
    weekday = _SUNDAY if local.date() in holidays else local.weekday()
    return weekday * 24 + local.hour


class ExpectedCounts(Detector):
    """Online expected counts per H3 cell, time of day and day of week.

    Parameters
    ----------
    half_life_days : float
        Half-life of every count and every second of exposure (> 0).
    cell_prior : float
        Pseudo-calls each res-8 cell borrows from its res-7 parent (> 0).
    parent_prior : float
        Pseudo-calls each res-7 parent borrows from the jurisdiction (> 0).
    profile_prior : float
        Pseudo-calls of the hour-of-week, hour-of-day, day-of-week and
        category-by-hour shrinkage (> 0).
    timezone : str
        IANA zone of the local clock the rhythms follow: the jurisdiction's
        (its profile's ``timezone``; the worker, the bootstrap and the
        evaluation pass it). ``"UTC"`` when not given, which no city lives in:
        its days would split at the wrong hour and daylight-saving changes
        would shift its rhythm by an hour twice a year.
    holidays : iterable of datetime.date
        Local dates (the profile's special days of kind ``holiday``) whose hours
        are learnt and expected like a Sunday's: offices, schools and commutes
        are closed, and a Monday holiday looks like a Sunday, not a Monday.
    silence_calls : float
        A silence counts as exposure until the rate expected this many calls in it (> 0).
    max_silence_s : float
        Before the rate is known (``warmup_calls``), the longest silence counted as exposure (> 0).
    warmup_calls : int
        Calls to learn before :attr:`ready` (>= 1).
    warmup_hours : float
        Hours of exposure to learn before :attr:`ready` (>= 0).

    Notes
    -----
    Call :meth:`learn_one` with calls in event-time order; a call older than
    the newest one is counted in its own hour but adds no exposure. Calls with
    a cell at another resolution than :data:`detectors.types.DETECTION_RESOLUTION`
    are counted at that resolution's res-7 ancestor all the same (their parent is
    computed by H3).
    """

    #: class-level defaults: a checkpoint pickled before holidays existed restores with none
    holidays: tuple[date, ...] = ()
    _holidays: frozenset[date] = frozenset()

    def __init__(
        self,
        half_life_days: float = 90.0,
        cell_prior: float = 0.5,
        parent_prior: float = 1.0,
        profile_prior: float = 5.0,
        timezone: str = "UTC",
        holidays: Iterable[date] = (),
        silence_calls: float = 5.0,
        max_silence_s: float = 7200.0,
        warmup_calls: int = 1000,
        warmup_hours: float = 24.0,
    ) -> None:
        for name, value in (
            ("half_life_days", half_life_days),
            ("cell_prior", cell_prior),
            ("parent_prior", parent_prior),
            ("profile_prior", profile_prior),
            ("silence_calls", silence_calls),
            ("max_silence_s", max_silence_s),
        ):
            _check_positive(name, value)
        if isinstance(warmup_calls, bool) or not isinstance(warmup_calls, int) or warmup_calls < 1:
            raise ValueError(f"warmup_calls must be an integer >= 1, got {warmup_calls!r}")
        if (
            isinstance(warmup_hours, bool)
            or not isinstance(warmup_hours, (int, float))
            or not (math.isfinite(warmup_hours) and warmup_hours >= 0)
        ):
            raise ValueError(f"warmup_hours must be a finite number >= 0, got {warmup_hours!r}")
        try:
            tz = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):
            raise ValueError(f"timezone must be an IANA zone name such as 'America/New_York', got {timezone!r}") from None
        self.half_life_days = half_life_days
        self.cell_prior = cell_prior
        self.parent_prior = parent_prior
        self.profile_prior = profile_prior
        self.timezone = timezone
        holidays = set(holidays)
        if not all(isinstance(d, date) and not isinstance(d, datetime) for d in holidays):
            raise ValueError(f"holidays must be datetime.date values (local dates), got {sorted(map(repr, holidays))[:3]}")
        self.holidays = tuple(sorted(holidays))
        self._holidays = frozenset(self.holidays)
        self.silence_calls = silence_calls
        self.max_silence_s = max_silence_s
        self.warmup_calls = warmup_calls
        self.warmup_hours = warmup_hours
        self._tz = tz
        self._half_life_s = half_life_days * 86400.0
        # Decay weights are 2 ** ((t - _t_ref) / half_life); _t_ref moves forward now and then.
        self._t_ref: float | None = None
        self._last_t: float | None = None
        # The hour being learnt: its calls and exposure wait here until it ends, summed
        # (decayed weights) per (hour-of-week bin, category index, cell) and per bin, so
        # that a storm's hour costs memory per cell, not per call.
        self._hour: int | None = None
        self._pending_calls: dict[tuple[int, int, str], float] = {}
        self._pending_exposure: dict[int, float] = {}
        self._rates: list[float] | None = None  # cache of the 168 bin rates
        self._next_prune: float = -math.inf
        # Decayed calls and exposure (seconds) per hour of week, and their marginals.
        self._n_how = [0.0] * _HOURS_PER_WEEK
        self._x_how = [0.0] * _HOURS_PER_WEEK
        self._n_hod = [0.0] * 24
        self._x_hod = [0.0] * 24
        self._n_dow = [0.0] * 7
        self._x_dow = [0.0] * 7
        self._n = 0.0
        self._x = 0.0
        # Decayed calls per category and hour of day, and per category overall.
        self._n_cat_hod = [[0.0] * len(CATEGORIES) for _ in range(24)]
        self._n_cat = [0.0] * len(CATEGORIES)
        # Decayed calls per res-8 cell and per res-7 parent (sparse).
        self._n_cell: dict[str, float] = {}
        self._n_parent: dict[str, float] = {}
        # Plain (undecayed) totals, for warm-up.
        self._calls = 0
        self._exposure_s = 0.0

    # --------------------------------------------------------------- learning

    def learn_one(self, x: CallPoint) -> None:
        """Count one call (and the exposure since the previous one); it takes effect when its hour ends."""
        t = float(x.t)
        hour = int(t // 3600)
        if self._t_ref is None:
            self._t_ref = self._last_t = t
            self._hour = hour
        assert self._hour is not None and self._last_t is not None  # all three are set by the first call
        if hour > self._hour:
            self._fold()
            self._hour = hour
        if (t - self._t_ref) > _RENORM_HALF_LIVES * self._half_life_s:
            self._renormalise(t)
        if t > self._last_t:
            self._add_exposure(self._last_t, t)
            self._last_t = t
        self._hold_call(t, x.category, x.cell)
        self._calls += 1
        if t >= self._next_prune:
            self._prune(t)

    def _hold_call(self, t: float, category: str, cell: str) -> None:
        """Add a call of the hour being learnt to its sums (folded in when the hour ends)."""
        key = (_how_bin(self._tz, int(t // 3600), self._holidays), CATEGORY_INDEX.get(category, CATEGORY_INDEX["OTHER"]), cell)
        self._pending_calls[key] = self._pending_calls.get(key, 0.0) + self._weight(t)

    def _hold_exposure(self, b: int, t_mid: float, seconds: float) -> None:
        """Add live-feed seconds of the hour being learnt, in hour-of-week bin ``b``, to its sums."""
        self._pending_exposure[b] = self._pending_exposure.get(b, 0.0) + seconds * self._weight(t_mid)

    def _fold(self) -> None:
        """Add the calls and exposure of the hour that ended to the estimates."""
        for (b, k, cell), w in self._pending_calls.items():
            hod, dow = b % 24, b // 24
            self._n_how[b] += w
            self._n_hod[hod] += w
            self._n_dow[dow] += w
            self._n += w
            self._n_cat_hod[hod][k] += w
            self._n_cat[k] += w
            parent = _parent(cell)
            self._n_cell[cell] = self._n_cell.get(cell, 0.0) + w
            self._n_parent[parent] = self._n_parent.get(parent, 0.0) + w
        for b, dx in self._pending_exposure.items():
            self._add_bin_exposure(b, dx)
        self._pending_calls.clear()
        self._pending_exposure.clear()
        self._rates = None

    def _add_bin_exposure(self, b: int, dx: float) -> None:
        self._rates = None
        self._x_how[b] += dx
        self._x_hod[b % 24] += dx
        self._x_dow[b // 24] += dx
        self._x += dx

    def _add_exposure(self, start: float, end: float) -> None:
        """Count ``[start, end)`` as live feed, up to the plausible part of a silence."""
        if self._calls < self.warmup_calls or self._x <= 0.0:
            live_end = min(end, start + self.max_silence_s)
        else:
            live_end = min(end, self._plausible_end(start, end))
        assert self._hour is not None  # called by learn_one, after its first call set it
        t = start
        while t < live_end:
            stop = min((math.floor(t / 3600) + 1) * 3600.0, live_end)
            hour = int(t // 3600)
            b = _how_bin(self._tz, hour, self._holidays)
            if hour < self._hour:
                self._add_bin_exposure(b, (stop - t) * self._weight(0.5 * (t + stop)))
            else:
                self._hold_exposure(b, 0.5 * (t + stop), stop - t)
            self._exposure_s += stop - t
            t = stop

    def _plausible_end(self, start: float, end: float) -> float:
        """When, after ``start``, the rate would have expected ``silence_calls`` calls (capped at ``end``)."""
        due = self.silence_calls
        t = start
        while t < end:
            stop = min((math.floor(t / 3600) + 1) * 3600.0, end)
            rate = self._bin_rate(_how_bin(self._tz, int(t // 3600), self._holidays))
            if rate * (stop - t) >= due:
                return t + due / rate
            due -= rate * (stop - t)
            t = stop
        return end

    def _weight(self, t: float) -> float:
        """The decay weight of time ``t``; only called once a call was learnt (``_t_ref`` set)."""
        t_ref = self._t_ref
        assert t_ref is not None  # every caller runs after the first call learnt
        w: float = 2.0 ** ((t - t_ref) / self._half_life_s)  # float ** float is typed Any (it may be complex), not here
        return w

    def _renormalise(self, t: float) -> None:
        """Move the reference time to ``t``: every decayed sum is multiplied by the same factor."""
        f = self._weight(t) ** -1
        for arr in (self._n_how, self._x_how, self._n_hod, self._x_hod, self._n_dow, self._x_dow, self._n_cat, *self._n_cat_hod):
            for i in range(len(arr)):
                arr[i] *= f
        self._n *= f
        self._x *= f
        sums: tuple[dict[Any, float], ...] = (self._n_cell, self._n_parent, self._pending_calls, self._pending_exposure)
        for d in sums:
            for key in d:
                d[key] *= f
        self._t_ref = t
        self._rates = None

    def _prune(self, t: float) -> None:
        """Forget cells and parents whose decayed count is below :data:`_PRUNE_BELOW` calls."""
        floor = _PRUNE_BELOW * self._weight(t)
        for d in (self._n_cell, self._n_parent):
            for key in [k for k, v in d.items() if v < floor]:
                del d[key]
        self._next_prune = t + self._half_life_s

    # --------------------------------------------------------------- reading

    @property
    def ready(self) -> bool:
        """True once ``warmup_calls`` calls and ``warmup_hours`` hours of exposure have been learned."""
        return self._calls >= self.warmup_calls and self._exposure_s >= self.warmup_hours * 3600.0

    @property
    def calls_learned(self) -> int:
        return self._calls

    @property
    def exposure_hours(self) -> float:
        """Hours of live feed learned (silences beyond the plausible are not counted)."""
        return self._exposure_s / 3600.0

    def state_size(self) -> int:
        """Entries held: cells and parents in the sparse maps, and the current hour's sums (per bin, category and cell)."""
        return len(self._n_cell) + len(self._n_parent) + len(self._pending_calls) + len(self._pending_exposure)

    def _bin_rate(self, b: int) -> float:
        """Calls per second in hour-of-week bin ``b`` (0 before any exposure)."""
        if self._rates is None:
            self._rates = self._compute_rates()
        return self._rates[b]

    def _compute_rates(self) -> list[float]:
        """All 168 bin rates (they change only when an hour is folded in, so they are cached)."""
        if self._x <= 0.0 or self._n <= 0.0:
            return [0.0] * _HOURS_PER_WEEK
        # the prior is in calls, the counts in weighted calls (calls x the current weight)
        k = self.profile_prior * self._weight(cast(float, self._last_t))  # _x > 0: a call was learnt, _last_t is set
        r = self._n / self._x
        f = [(self._n_hod[h] + k) / (self._x_hod[h] * r + k) for h in range(24)]
        # a day's factor compares its calls with what the hours it was live for would have had
        g = [(self._n_dow[d] + k) / (sum(self._x_how[d * 24 + h] * f[h] for h in range(24)) * r + k) for d in range(7)]
        return [(self._n_how[b] + k) / (self._x_how[b] + k / (r * f[b % 24] * g[b // 24])) for b in range(_HOURS_PER_WEEK)]

    def rate(self, t: float) -> float:
        """Jurisdiction calls per hour expected at ``t``."""
        return 3600.0 * self._bin_rate(_how_bin(self._tz, int(t // 3600), self._holidays))

    def total(self, start: float, end: float) -> float:
        """Calls expected in the whole jurisdiction in ``[start, end)``."""
        total = 0.0
        t = start
        while t < end:
            stop = min((math.floor(t / 3600) + 1) * 3600.0, end)
            total += self._bin_rate(_how_bin(self._tz, int(t // 3600), self._holidays)) * (stop - t)
            t = stop
        return total

    def share(self, cell: str) -> float:
        """The cell's expected share of the jurisdiction's calls (hierarchically shrunk)."""
        return self.shares()(cell)

    def shares(self) -> Callable[[str], float]:
        """:meth:`share` for many cells, what they have in common computed once (valid until the model learns again)."""
        if self._n <= 0.0:
            return _no_share
        w = self._weight(cast(float, self._last_t))  # _n > 0: a call was learnt, _last_t is set
        # The priors are in calls; the counts are in weighted calls (calls x w).
        a, b = self.cell_prior * w, self.parent_prior * w
        total = self._n + len(self._n_parent) * b
        n_parent_of, n_cell_of = self._n_parent.get, self._n_cell.get

        def share(cell: str) -> float:
            n_parent = n_parent_of(_parent(cell), 0.0)
            share_parent = (n_parent + b) / total
            return share_parent * (n_cell_of(cell, 0.0) + a) / (n_parent + 7.0 * a)

        return share

    def category_share(self, category: str, t: float) -> float:
        """Expected share of ``category`` among calls at the local hour of ``t``."""
        k = CATEGORY_INDEX.get(category, CATEGORY_INDEX["OTHER"])
        w = self._weight(cast(float, self._last_t)) if self._t_ref is not None else 1.0  # _last_t is set with _t_ref
        prior = (self._n_cat[k] + w) / (self._n + len(CATEGORIES) * w)
        row = self._n_cat_hod[_how_bin(self._tz, int(t // 3600), self._holidays) % 24]
        m = self.profile_prior * w
        return (row[k] + m * prior) / (sum(row) + m)

    def expected(self, cells: Iterable[str], start: float, end: float, category: str | None = None) -> float:
        """Calls expected in ``cells`` during ``[start, end)`` (of ``category`` only, if given)."""
        e = self.total(start, end) * sum(self.share(c) for c in cells)
        if category is not None:
            e *= self.category_share(category, 0.5 * (start + end))
        return e


def _no_share(cell: str) -> float:
    return 0.0


@functools.lru_cache(maxsize=1 << 16)
def _parent(cell: str) -> str:
    """The res-7 parent of a res-8 cell (or the cell itself when it is coarser)."""
    res = h3.get_resolution(cell)
    return h3.cell_to_parent(cell, DETECTION_RESOLUTION - 1) if res >= DETECTION_RESOLUTION else cell


def _check_positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
