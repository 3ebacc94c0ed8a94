"""Surges: more calls in a place, in the last minutes, than its expected count makes plausible.

:class:`SurgeDetector` is a space-time scan of small regions with a Poisson
tail test, plus a negative-binomial test of the whole jurisdiction.

Regions and windows
-------------------
The regions containing a call in res-8 cell ``c`` are the cell alone and the
seven disks ``h3.grid_disk(n, 1)`` (a cell and its ring) centred on ``c`` or
on one of its neighbours, so a surge spread over adjacent cells is seen whole
by at least one disk. Each is tested over the last ``windows_min`` minutes
(15 and 60). The jurisdiction is a region too, tested on all calls and on
each category over ``jurisdiction_windows_min`` (15, 20, 30, 60 and 180: a
county-wide storm builds up over hours; on the Montgomery file the 20-minute
window flags the January 2016 blizzard two minutes sooner than the others, for
no extra false alert), at most once a minute.

Incidents, not records
----------------------
Real feeds record one incident several times: several callers, one record per
agency (``Traffic``, ``EMS`` and ``Fire`` records of one accident at the same
coordinates), sometimes the same record geocoded to two neighbouring
intersections at the same second. In the Montgomery County file 6.5 % of calls
follow another in the same res-8 cell within 2 minutes and 713 share their
second with a call in a neighbouring cell; counted as independent calls, a
quiet block's one accident looks like a surge (on that file, counting records
gives 2.5 false alerts a day at the default threshold, counting incidents 0.6). So the test counts
*incidents*: a call is a repeat when a new incident was counted in the same
cell at most ``repeat_s`` seconds before it, or when any call arrived in a
neighbouring cell at most ``same_instant_s`` seconds before it. A cell thus
counts at most one incident per ``repeat_s``: a burst of calls in one cell
still counts one incident every two minutes. The share of calls that are new
incidents, ``rho`` (0.93 on the Montgomery file), is learnt online.

The test
--------
For a region and a window ending at ``now``, with ``O`` incidents observed and
``E`` calls expected by :class:`detectors.baseline.ExpectedCounts`::

    p     = P(X >= O),  X ~ Poisson(rho E)                        cells and disks
    p     = P(X >= O),  X ~ NegBin(mean rho E, shape k)            the jurisdiction
    score = -log10 p

The jurisdiction's counts vary more from hour to hour than a Poisson law
allows (weather, events): the negative binomial's variance is
``rho E + (rho E)**2 / k`` with ``k = jurisdiction_shape`` (20; measured on
the Montgomery file, hourly incident counts against this baseline have
``k`` about 16 for all calls and 5 for Traffic, which bad weather moves). A region exceeds
when ``score >= threshold`` (``jurisdiction_threshold`` for the jurisdiction,
which is one region, not thousands) and ``O >= min_incidents``. The floor on
``O`` is there because three separate incidents within minutes in a quiet
block (a multi-vehicle accident recorded as three) happen daily in real data
however small their Poisson probability (on the Montgomery file a floor of 3
gives 1.6 false alerts a day at the default threshold, 4 gives 0.6). The jurisdiction test leaves out
each window's busiest disk, so that one local surge, which the local test
judges, does not also raise a county-wide alert. While a county-wide alert is
open, local expectations are scaled up by the county's observed-to-expected
ratio outside the region: a storm is one alert, and only places hot beyond
the storm alert on their own.

Alerts: one surge, one alert
----------------------------
:meth:`SurgeDetector.advance` evaluates the regions of the cells that got
calls since the last evaluation and the regions of open alerts. An exceedance
whose region shares a cell with an open alert's footprint belongs to that
alert; otherwise it opens one (exceedances overlapping each other open one
alert). ``UPDATE`` is emitted when an alert grows: a fifth more calls
(``update_growth``) than it ever reported in its strongest region and window,
or calls in cells it never reported. (Reporting every call it gains made a
storm's alerts re-report several times a second each: nine records in ten a
dashboard had no use for, and a fifth of the detection worker's time.) An
alert closes (``CLOSED``) once none of its regions has scored
``close_threshold`` for ``close_after_min`` minutes. Its id,
``surge:<centre cell or 'jurisdiction'>:<started_at>``, holds for its whole life
and across replays of the same input.

Every alert explains itself: ``observed`` is the number of calls of ``cells``
in the window ``(at - window_min, at]`` of its strongest region,
``expected`` the calls expected there, ``categories`` those calls by category,
``score`` and ``p_value`` the test, ``model`` and ``model_version``, and a
one-sentence ``reason``.

Warm-up: nothing scores or alerts until the baseline is ready (see
:class:`~detectors.baseline.ExpectedCounts`); calls are learnt meanwhile.

Cost: the calls of the last ``max(windows)`` minutes, in one list per cell
with calls (and the times of its incidents), plus the baseline's decayed
counts per cell. A call touches at most 8 regions; a region's counts come from
bisecting its cells' lists, so the work per call grows with the logarithm of
the calls in a cell, not with their number (a storm stays cheap), and a
region's calls are listed only when they become an alert's explanation. The
regions of one evaluation overlap: each cell's counts and expected share, and
each window's jurisdiction totals, are read once per evaluation and shared
(``_Round``). An open alert no finding touches costs one set test per call.

Examples
--------
Two weeks of calls over a small town (127 cells), then 12 traffic calls in
24 minutes in one block and its ring:

>>> import random
>>> import h3
>>> from detectors.types import CallPoint
>>> rng = random.Random(3)
>>> town = sorted(h3.grid_disk("882aac941dfffff", 6))
>>> det = SurgeDetector(baseline=ExpectedCounts(warmup_calls=500, warmup_hours=48))
>>> t, alerts = 1_700_000_000.0, []
>>> for _ in range(5000):
...     t += rng.expovariate(15 / 3600)
...     category = rng.choice(["EMS", "EMS", "TRAFFIC", "FIRE"])
...     alerts += det.process(CallPoint(t=t, cell=rng.choice(town), category=category))
>>> alerts
[]
>>> block = h3.grid_disk("882aac941dfffff", 1)
>>> for i in range(12):
...     alerts += det.process(CallPoint(t=t + 120.0 * (i + 1), cell=rng.choice(block), category="TRAFFIC"))
>>> [(a.state.value, a.observed) for a in alerts]  # it reports 6, 8 and 11 calls, a fifth more each time
[('open', 5), ('update', 6), ('update', 8), ('update', 11)]
>>> a = alerts[-1]
>>> a.observed, a.window_min, round(a.expected, 2), a.categories
(11, 60, 0.68, {'TRAFFIC': 11})
>>> a.reason
'11 calls (10 incidents) in 60 min in 7 cells around 882aac941dfffff, 0.68 expected (p = 3e-09)'
>>> alerts += det.advance(t + 3 * 3600.0)
>>> alerts[-1].state.value, alerts[-1].id == alerts[0].id
('closed', True)
"""

from __future__ import annotations

import bisect
import functools
import inspect
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import h3

from detectors.baseline import CATEGORIES, ExpectedCounts
from detectors.tails import MAX_SCORE as _MAX_SCORE
from detectors.tails import log10_negbin_sf as _log10_negbin_sf
from detectors.tails import log10_poisson_sf as _log10_poisson_sf
from detectors.types import Alert, AlertKind, AlertState, CallPoint
from detectors.windows import MAX_WINDOW_CALLS, check_cap, drop_expired, insort_by_time, shed_cutoff, time_of

MODEL = "surge-poisson-scan"
#: Bump when the test, the regions, the incident rule or the alert lifecycle change
#: (1.1: an open alert reports growth by a fifth, not every call it gains).
MODEL_VERSION = "1.1"
#: default ``update_growth``: an open alert reports again once it has a fifth more calls than it ever reported
UPDATE_GROWTH = 0.2
#: Region key of the whole jurisdiction.
JURISDICTION = "*"
#: Event-time seconds between two tests of the jurisdiction.
_JURISDICTION_STEP_S = 60.0
_CAT_INDEX = {c: i for i, c in enumerate(CATEGORIES)}
_OTHER = _CAT_INDEX["OTHER"]


#: A call in the windows: ``(t, cell, category, incident)``. A plain tuple of atoms, which Python's
#: garbage collector stops tracking: a storm holds one per call (200,000 at the cap), and as
#: objects each was walked by every full collection (100 ms pauses of the detection worker).
_Rec = tuple[float, str, str, bool]


@dataclass
class _Call:
    """The call record of checkpoints written before calls were tuples (unpickled, then converted)."""

    t: float
    cell: str
    category: str
    incident: bool


@dataclass
class _Finding:
    """One region and window evaluated at ``at``."""

    key: str
    window_min: int
    at: float
    score: float
    p: float
    observed: int
    incidents: int
    expected: float
    #: the window's calls; None until the finding explains an alert (see ``SurgeDetector._explain``)
    calls: list[_Rec] | None
    cells: tuple[str, ...]
    category: str | None = None
    #: the region's cells with calls in the window (None in checkpoints from before it: use ``calls``)
    present: frozenset[str] | None = None
    #: the jurisdiction's window start and the cells it left out, to list its calls when explained
    left_out: tuple[float, tuple[str, ...]] | None = None


@dataclass
class _Episode:
    id: str
    started_at: float
    jurisdiction: bool
    footprint: set[str] = field(default_factory=set)
    regions: set[str] = field(default_factory=set)
    #: the finding last reported, and every cell reported so far
    best: _Finding | None = None
    reported: set[str] = field(default_factory=set)
    peak: int = 0
    last_alive: float = -math.inf
    #: when its regions without new calls were last re-scored (to decay and close)
    rescored_at: float = -math.inf
    #: its rank among the open alerts, by opening (the order of SurgeDetector._episodes)
    order: int = 0


class SurgeDetector:
    """Space-time Poisson scan for call surges over H3 cells, their rings and the jurisdiction.

    Call :meth:`learn_one` then :meth:`advance` for each call in event-time
    order (or :meth:`process`, which does both), and :meth:`advance` with the
    event clock while the feed is quiet so that alerts close.

    Parameters
    ----------
    threshold : float
        Score (``-log10 p``) at which a cell or disk exceeds (> 0).
    jurisdiction_threshold : float
        Score at which the jurisdiction exceeds (> 0).
    close_threshold : float
        Score a region of an alert must keep to keep it open (``0 <= close_threshold <= both thresholds``).
    close_after_min : float
        Minutes without any region at ``close_threshold`` before an alert closes (>= 0).
    windows_min : tuple of int
        Windows of the cell and disk tests, minutes (each >= 1; at least one).
    jurisdiction_windows_min : tuple of int
        Windows of the jurisdiction test, minutes; empty to leave the jurisdiction out.
    min_incidents : int
        Fewest incidents in a region's window for it to exceed (>= 1).
    repeat_s : float
        Seconds after a counted incident during which its cell counts no other (>= 0).
    same_instant_s : float
        Seconds after a call during which a call in a neighbouring cell is a repeat (>= 0).
    jurisdiction_shape : float
        Negative-binomial shape ``k`` of the jurisdiction test (> 0).
    baseline : ExpectedCounts or None
        The expected-count model, learnt by this detector; ``None`` for the defaults.
    max_window_calls : int
        Most calls the windows hold (>= 1). Beyond it the oldest go early
        (counted in ``shed_calls``), so memory is bounded at any rate; the
        default is hundreds of times a real centre's 180 minutes.
    update_growth : float
        Growth, as a fraction of the most calls an open alert reported, at which
        it reports again (``UPDATE``; >= 0, 0 reports every call it gains). Calls
        in a cell it never reported make it report at once, whatever their number.
    """

    def __init__(
        self,
        threshold: float = 6.0,
        jurisdiction_threshold: float = 4.5,
        close_threshold: float = 3.0,
        close_after_min: float = 30.0,
        windows_min: tuple[int, ...] = (15, 60),
        jurisdiction_windows_min: tuple[int, ...] = (15, 20, 30, 60, 180),
        min_incidents: int = 4,
        repeat_s: float = 120.0,
        same_instant_s: float = 1.0,
        jurisdiction_shape: float = 20.0,
        baseline: ExpectedCounts | None = None,
        max_window_calls: int = MAX_WINDOW_CALLS,
        update_growth: float = UPDATE_GROWTH,
    ) -> None:
        _check_number("threshold", threshold, low=0.0, strict=True)
        _check_number("jurisdiction_threshold", jurisdiction_threshold, low=0.0, strict=True)
        _check_number("close_threshold", close_threshold, low=0.0)
        if close_threshold > min(threshold, jurisdiction_threshold):
            raise ValueError(
                f"close_threshold must be <= threshold and jurisdiction_threshold, got {close_threshold!r} "
                f"(thresholds {threshold!r}, {jurisdiction_threshold!r})"
            )
        _check_number("close_after_min", close_after_min, low=0.0)
        windows = _check_windows("windows_min", windows_min, allow_empty=False)
        jurisdiction_windows = _check_windows("jurisdiction_windows_min", jurisdiction_windows_min, allow_empty=True)
        if isinstance(min_incidents, bool) or not isinstance(min_incidents, int) or min_incidents < 1:
            raise ValueError(f"min_incidents must be an integer >= 1, got {min_incidents!r}")
        _check_number("repeat_s", repeat_s, low=0.0)
        _check_number("same_instant_s", same_instant_s, low=0.0)
        _check_number("jurisdiction_shape", jurisdiction_shape, low=0.0, strict=True)
        _check_number("update_growth", update_growth, low=0.0)
        if baseline is not None and not isinstance(baseline, ExpectedCounts):
            raise ValueError(f"baseline must be an ExpectedCounts or None, got {type(baseline).__name__}")
        self.threshold = threshold
        self.jurisdiction_threshold = jurisdiction_threshold
        self.close_threshold = close_threshold
        self.close_after_min = close_after_min
        self.windows_min = windows
        self.jurisdiction_windows_min = jurisdiction_windows
        self.min_incidents = min_incidents
        self.repeat_s = repeat_s
        self.same_instant_s = same_instant_s
        self.jurisdiction_shape = jurisdiction_shape
        self.baseline = baseline if baseline is not None else ExpectedCounts()
        self.max_window_calls = check_cap(max_window_calls)
        self.update_growth = update_growth
        #: calls dropped from the windows early because they held ``max_window_calls``
        self.shed_calls = 0
        self._horizon_s = 60.0 * max(windows + jurisdiction_windows)
        self._windows_desc = tuple(sorted(set(windows), reverse=True))
        self._calls: list[_Rec] = []  # every call of the last max window, in time order
        self._by_cell: dict[str, list[_Rec]] = {}
        self._dirty: set[str] = set()
        self._jurisdiction_dirty = False
        self._next_jurisdiction = -math.inf
        self._now = -math.inf
        self._episodes: dict[str, _Episode] = {}
        # Lower bounds of every open alert's rescored_at and last_alive: while the clock is
        # less than a minute past the first (and no cell got a call) no alert is due a
        # re-score, and while it is less than close_after_min past the second none can close,
        # so a round skips the loops over the open alerts (hundreds in a storm, twice a call).
        self._rescored_floor = -math.inf
        self._alive_floor = -math.inf
        # Each cell's window counts, kept from round to round while they cannot change (see
        # _cell_counts): a call's 19 cells, re-counted at every call, were half of a storm's cost.
        self._count_cache: dict[str, tuple[float, float, tuple[int, ...]]] = {}
        # The open alerts by footprint cell and by region, so that a round finds the few a
        # call's regions touch without testing every open alert (both rebuilt, not pickled).
        self._eps_by_cell: dict[str, set[str]] = {}
        self._eps_by_region: dict[str, set[str]] = {}
        self._opened = 0
        # Two indexes, so that in a county-wide storm a region's test neither scans every
        # call nor every open alert (at 100 calls/s that blocked the worker for minutes):
        self._county_ids: set[str] = set()  # open county-wide alerts
        self._incident_times: list[float] = []  # incidents in the windows, sorted
        # and per cell, with every call's time, so that a region's counts are bisections of floats
        self._inc_by_cell: dict[str, list[float]] = {}
        self._times_by_cell: dict[str, list[float]] = {}
        # and per category (index in CATEGORIES, unknown ones as OTHER), for the jurisdiction's counts
        self._inc_by_cat: dict[int, list[float]] = {}
        self._times_by_cat: dict[int, list[float]] = {}
        # Decayed share of calls that are new incidents (starts at 1: no repeats assumed).
        self._inc_sum = 0.0
        self._call_sum = 0.0

    # ------------------------------------------------------------------ configuration

    def _get_params(self) -> dict:
        params = {name: getattr(self, name) for name in inspect.signature(type(self)).parameters}
        params["baseline"] = self.baseline.clone()
        return params

    def clone(self) -> SurgeDetector:
        """A fresh detector with the same configuration and no state."""
        return type(self)(**self._get_params())

    def __repr__(self) -> str:
        params = ", ".join(f"{name}={getattr(self, name)!r}" for name in inspect.signature(type(self)).parameters)
        return f"{type(self).__name__}({params})"

    @property
    def ready(self) -> bool:
        """True once the baseline has warmed up (before that nothing scores or alerts)."""
        return self.baseline.ready

    @property
    def incident_ratio(self) -> float:
        """Share of calls that were new incidents (decayed; 1.0 before any call)."""
        return self._inc_sum / self._call_sum if self._call_sum > 0 else 1.0

    def state_size(self) -> int:
        """Calls held in windows, cells with calls and open alerts, plus the baseline's sparse entries."""
        return len(self._calls) + len(self._by_cell) + len(self._episodes) + self.baseline.state_size()

    # ------------------------------------------------------------------ River verbs

    def learn_one(self, x: CallPoint) -> None:
        """Add a call to the windows and to the baseline. Alerts come from :meth:`advance`."""
        t = float(x.t)
        incident = self._is_incident(x.cell, t)
        # rho is learned with a long memory: about the last 5,000 calls
        decay = 1.0 - 1.0 / 5000.0
        self._inc_sum = self._inc_sum * decay + incident
        self._call_sum = self._call_sum * decay + 1.0
        self.baseline.learn_one(x)
        if t <= max(self._now, self._calls[-1][0] if self._calls else -math.inf) - self._horizon_s:
            return  # too old for every window
        call = (t, x.cell, x.category, incident)
        j = _CAT_INDEX.get(x.category, _OTHER)
        if incident:
            bisect.insort(self._incident_times, t)
            bisect.insort(self._inc_by_cell.setdefault(x.cell, []), t)
            bisect.insort(self._inc_by_cat.setdefault(j, []), t)
        bisect.insort(self._times_by_cat.setdefault(j, []), t)
        insort_by_time(self._calls, call)
        times = self._times_by_cell.setdefault(x.cell, [])
        i = bisect.bisect_right(times, t)
        times.insert(i, t)
        self._by_cell.setdefault(x.cell, []).insert(i, call)
        self._dirty.add(x.cell)
        self._count_cache.pop(x.cell, None)
        self._jurisdiction_dirty = True
        cutoff = shed_cutoff(self._calls, self.max_window_calls)
        if cutoff is not None:
            self.shed_calls += self._drop_through(cutoff)

    def score_one(self, x: CallPoint) -> float:
        """Highest score, at ``x.t``, of the cell and disks containing ``x`` over ``windows_min``, with ``x`` counted.

        Pure (nothing is learnt). 0.0 during warm-up. The jurisdiction, tested
        at most once a minute, is left to :meth:`advance`.
        """
        if not self.ready:
            return 0.0
        t = float(x.t)
        extra = (t, x.cell, x.category, self._is_incident(x.cell, t))
        best, at = 0.0, _Round(self, t)
        for key, cells in _regions(x.cell):
            for f in self._evaluate(key, cells, t, extra, at):
                best = max(best, f.score)
        return best

    def process(self, x: CallPoint) -> list[Alert]:
        """:meth:`advance` to ``x.t``, :meth:`learn_one`, then evaluate it: the alerts it causes."""
        alerts = self.advance(x.t)
        self.learn_one(x)
        return alerts + self.advance(x.t)

    # ------------------------------------------------------------------ clock

    def advance(self, now: float) -> list[Alert]:
        """Move the event-time clock to ``now``; evaluate what changed; return alert lifecycle records.

        Call after learning the calls up to ``now`` (and periodically while the
        feed is quiet, so alerts close). Evaluates the regions of cells that got
        calls since the last call, and those of open alerts; opens, updates and
        closes alerts. A ``now`` earlier than the clock is treated as the clock.
        """
        now = max(float(now), self._now)
        self._now = now
        self._expire(now)
        if not self.ready:
            self._dirty.clear()
            self._jurisdiction_dirty = False
            return []
        findings: dict[str, list[_Finding]] = {}
        at = _Round(self, now)
        for cell in sorted(self._dirty):
            for key, cells in _regions(cell):
                if key not in findings:
                    findings[key] = self._evaluate(key, cells, now, at=at)
        # An open alert's regions without new calls are re-scored once a minute (so
        # that it closes, and reports its strongest region); when it gets a call, its
        # best region so far is re-scored with the regions of the call, so that an
        # update still reports the strongest. Re-scoring all of an alert's regions on
        # every call in it made a storm quadratic: its alert grows to hundreds of regions.
        every = now - self._rescored_floor >= _RESCORE_S  # some alert is due a re-score: look at each
        # (else none is: only those whose footprint got a call, in the same order)
        episodes = list(self._episodes.values()) if every else self._touching(self._eps_by_cell, self._dirty)
        # A round re-scores the alerts that are due until it has re-scored _RESCORE_BUDGET
        # regions; the others are re-scored by the next rounds (after a quiet spell every
        # alert of a storm is due at once: thousands of regions, a second's stall).
        budget = _RESCORE_BUDGET
        for ep in episodes:
            if now - ep.rescored_at < _RESCORE_S or budget <= 0:
                best = ep.best.key if ep.best is not None else None
                if best is not None and best != JURISDICTION and best not in findings and not self._dirty.isdisjoint(ep.footprint):
                    findings[best] = self._evaluate(best, _region_cells(best), now, at=at)
                continue
            ep.rescored_at = now
            for key in sorted(ep.regions):
                if key not in findings and key != JURISDICTION:
                    findings[key] = self._evaluate(key, _region_cells(key), now, at=at)
                    budget -= 1
        if every:
            self._rescored_floor = min((ep.rescored_at for ep in self._episodes.values()), default=math.inf)
        alerts = self._lifecycle(now, findings, jurisdiction=False)
        self._dirty.clear()
        # The jurisdiction moves slowly: it is tested at most once a minute of event time.
        due = now >= self._next_jurisdiction
        if self.jurisdiction_windows_min and due and (self._jurisdiction_dirty or self._county_ids):
            alerts += self._lifecycle(now, {JURISDICTION: self._evaluate_jurisdiction(now)}, jurisdiction=True)
            self._jurisdiction_dirty = False
            self._next_jurisdiction = now + _JURISDICTION_STEP_S
        return alerts

    # ------------------------------------------------------------------ internals

    def _is_incident(self, cell: str, t: float) -> bool:
        times = self._inc_by_cell.get(cell)
        if times:
            i = bisect.bisect_right(times, t)
            if i and t - times[i - 1] <= self.repeat_s:
                return False  # an incident in this cell at most repeat_s before
        if self.same_instant_s > 0:
            for n in _disk(cell):
                if n != cell:
                    calls = self._by_cell.get(n)
                    if calls and 0.0 <= t - calls[-1][0] <= self.same_instant_s:
                        return False
        return True

    def _expire(self, now: float) -> None:
        self._drop_through(now - self._horizon_s)

    def _drop_through(self, cutoff: float) -> int:
        """Drop the calls at or before ``cutoff`` from the windows and the indexes; how many went."""
        calls = self._calls
        expired = calls[: bisect.bisect_right(calls, cutoff, key=time_of)]
        if not expired:
            return 0
        drop_expired(calls, self._by_cell, cutoff)
        times = self._incident_times
        del times[: bisect.bisect_right(times, cutoff)]
        every, incidents = {c[1] for c in expired}, {c[1] for c in expired if c[3]}
        for cell in every:
            self._count_cache.pop(cell, None)
        for index, keys in (
            (self._times_by_cell, every), (self._inc_by_cell, incidents), (self._times_by_cat, list(self._times_by_cat)),
            (self._inc_by_cat, list(self._inc_by_cat)),
        ):  # fmt: skip
            for key in keys:
                times = index[key]
                del times[: bisect.bisect_right(times, cutoff)]
                if not times:
                    del index[key]
        return len(expired)

    def __setstate__(self, state: dict) -> None:
        # checkpoints from before the two indexes (or the cap): build them once from the windows
        state.setdefault("max_window_calls", MAX_WINDOW_CALLS)
        state.setdefault("shed_calls", 0)
        state.setdefault("update_growth", UPDATE_GROWTH)
        state.setdefault("_rescored_floor", -math.inf)  # checkpoints from before the floors: the first rounds loop
        state.setdefault("_alive_floor", -math.inf)
        state["_count_cache"] = {}
        self.__dict__.update(state)
        self._reindex()  # checkpoints hold the alerts, not their order or indexes
        self._calls_to_tuples()  # checkpoints from before the tuples
        if "_incident_times" not in state:
            self._incident_times = sorted(c[0] for c in self._calls if c[3])
        if "_county_ids" not in state:
            self._county_ids = {k for k, ep in self._episodes.items() if ep.jurisdiction}
        if "_inc_by_cell" not in state:
            self._inc_by_cell = {}
            for t, cell, _, incident in self._calls:
                if incident:
                    self._inc_by_cell.setdefault(cell, []).append(t)
        if "_times_by_cell" not in state:
            self._times_by_cell = {cell: [c[0] for c in calls] for cell, calls in self._by_cell.items()}
        if "_times_by_cat" not in state:
            self._times_by_cat, self._inc_by_cat = {}, {}
            for t, _, category, incident in self._calls:  # in time order
                j = _CAT_INDEX.get(category, _OTHER)
                self._times_by_cat.setdefault(j, []).append(t)
                if incident:
                    self._inc_by_cat.setdefault(j, []).append(t)

    def __getstate__(self) -> dict:
        # the counts cache is rebuilt as rounds need it, the alert indexes on restore: not worth a checkpoint's bytes
        return {k: v for k, v in self.__dict__.items() if k not in _DERIVED}

    def _reindex(self) -> None:
        """The open alerts' order and their indexes by footprint cell and by region, from the alerts themselves."""
        self._eps_by_cell, self._eps_by_region = {}, {}
        for i, ep in enumerate(self._episodes.values(), start=1):
            ep.order = i
            for c in ep.footprint:
                self._eps_by_cell.setdefault(c, set()).add(ep.id)
            for k in ep.regions:
                self._eps_by_region.setdefault(k, set()).add(ep.id)
        self._opened = len(self._episodes)

    def _touching(self, index: dict[str, set[str]], keys: Iterable[str]) -> list[_Episode]:
        """The open alerts that ``index`` lists under any of ``keys``, in opening order."""
        ids: set[str] = set()
        for k in keys:
            got = index.get(k)
            if got:
                ids |= got
        return sorted((self._episodes[i] for i in ids), key=_opening)

    def _forget(self, ep: _Episode) -> None:
        """Remove a closed alert and its index entries."""
        del self._episodes[ep.id]
        self._county_ids.discard(ep.id)
        for index, keys in ((self._eps_by_cell, ep.footprint), (self._eps_by_region, ep.regions)):
            for k in keys:
                got = index.get(k)
                if got is not None:
                    got.discard(ep.id)
                    if not got:
                        del index[k]

    def _cell_counts(self, cell: str, now: float) -> tuple[int, ...]:
        """The cell's calls and incidents in each window of ``windows_min`` ending at ``now``, longest first:
        ``(n0, inc0, n1, inc1, ...)``.

        Kept with the span of clock over which they stay the same: until the cell's
        next call after ``now``, or the first call of a window leaving it (with a
        margin that the float arithmetic of a window's start cannot cross). A call
        learnt in the cell, or dropped from it, forgets them.
        """
        got = self._count_cache.get(cell)
        if got is not None and got[0] <= now < got[1]:
            return got[2]
        bisect_right = bisect.bisect_right
        until = math.inf
        out: list[int] = []
        times, ts = self._times_by_cell.get(cell), self._inc_by_cell.get(cell)
        if times:
            end_n = bisect_right(times, now)
            if end_n < len(times):
                until = times[end_n]
            end_i = 0
            if ts:
                end_i = bisect_right(ts, now)
                if end_i < len(ts):
                    until = min(until, ts[end_i])
            for w in self._windows_desc:
                span = 60.0 * w
                start = now - span
                k = bisect_right(times, start)
                if k < end_n:
                    until = min(until, times[k] + span - _COUNT_MARGIN_S)
                if ts:
                    ki = bisect_right(ts, start)
                    if ki < end_i:
                        until = min(until, ts[ki] + span - _COUNT_MARGIN_S)
                    out += (end_n - k, end_i - ki)
                else:
                    out += (end_n - k, 0)
        else:
            out = [0, 0] * len(self._windows_desc)
        counts = tuple(out)
        cache = self._count_cache
        if len(cache) > _COUNT_CACHE_MAX:
            cache.clear()
        cache[cell] = (now, until, counts)
        return counts

    def _calls_to_tuples(self) -> None:
        """Windows and explanations of a checkpoint from before tuples, as tuples (the same calls, shared)."""
        as_tuple: dict[int, _Rec] = {}

        def conv(c: _Call | _Rec) -> _Rec:
            if not isinstance(c, _Call):
                return c
            got = as_tuple.get(id(c))
            if got is None:
                got = as_tuple[id(c)] = (c.t, c.cell, c.category, c.incident)
            return got

        self._calls = [conv(c) for c in self._calls]
        self._by_cell = {cell: [conv(c) for c in calls] for cell, calls in self._by_cell.items()}
        for ep in self._episodes.values():
            if ep.best is not None and ep.best.calls is not None:
                ep.best.calls = [conv(c) for c in ep.best.calls]

    def _window_calls(self, cells: tuple[str, ...], start: float, end: float, extra: _Rec | None) -> list[_Rec]:
        """Calls of ``cells`` in ``(start, end]``, plus ``extra`` when it is in one of them."""
        out = []
        by_cell = self._by_cell
        for c in cells:
            mine = by_cell.get(c)
            if mine:
                for call in reversed(mine):
                    if call[0] <= start:
                        break
                    if call[0] <= end:
                        out.append(call)
        if extra is not None and extra[1] in cells:
            out.append(extra)
        return out

    def _evaluate(
        self, key: str, cells: tuple[str, ...], now: float, extra: _Rec | None = None, at: _Round | None = None
    ) -> list[_Finding]:
        """The finding of one cell or disk region in its window that ranks first (``[]`` below ``min_incidents``).

        Counts come from bisecting each cell's sorted lists, kept from round to
        round while they cannot change (:meth:`_cell_counts`) and read once per
        cell and round (``at``: what the regions evaluated at ``now`` share; a
        fresh one when None); the calls themselves are listed later, only for a
        finding that explains an alert.
        """
        at = at if at is not None else _Round(self, now)
        extra = extra if extra is not None and extra[1] in cells else None
        known = at._counts  # most of a region's cells were counted by an overlapping region of the round
        stats = [known[c] if c in known else at.counts(c) for c in cells]
        # The longest window has the most incidents: most regions stop here.
        incidents = sum(s[1] for s in stats) + (extra is not None and extra[3])
        if incidents < self.min_incidents:
            return []
        rho = self.incident_ratio
        shares = at._shares
        share = sum([shares[c] if c in shares else at.share(c) for c in cells])
        # Only the window that ranks first (_rank: the highest score, then the shortest) is
        # made a finding: the round keeps nothing else of a region.
        best = None
        for j, w in enumerate(self._windows_desc):
            n_at, inc_at = 2 * j, 2 * j + 1
            observed = incidents = 0
            for s in stats:
                n = s[n_at]
                if n:
                    observed += n
                    incidents += s[inc_at]
            if extra is not None:
                observed += 1
                incidents += extra[3]
            if incidents < self.min_incidents:
                break
            expected = at.total(w) * share
            mean = rho * expected
            mean *= at.scale(w, incidents, mean)
            log10p = _log10_poisson_sf(incidents, mean)
            score = _score(log10p)
            if best is None or score >= best[0]:  # a later window is shorter: it wins a tie
                best = (score, j, log10p, incidents, expected, observed)
        if best is None:
            return []
        _, j, log10p, incidents, expected, observed = best
        f = _finding(key, self._windows_desc[j], now, log10p, None, incidents, expected, cells)
        present = [c for c, s in zip(cells, stats, strict=True) if s[2 * j]]
        if extra is not None:
            present.append(extra[1])
        f.observed, f.present = observed, frozenset(present)
        return [f]

    def _explain(self, f: _Finding) -> _Finding:
        """List ``f``'s calls (when the evaluation left them out); call before the windows move on."""
        if f.calls is None and f.left_out is not None:  # the jurisdiction's
            start, excluded = f.left_out
            calls = self._calls
            f.calls = [
                c
                for c in calls[bisect.bisect_right(calls, start, key=time_of) :]
                if c[0] <= f.at and c[1] not in excluded and (f.category is None or c[2] == f.category)
            ]
            f.cells = tuple(sorted({c[1] for c in f.calls}))
        elif f.calls is None:
            f.calls = self._window_calls(f.cells, f.at - 60.0 * f.window_min, f.at, None)
        return f

    def _evaluate_jurisdiction(self, now: float) -> list[_Finding]:
        """Findings of the whole jurisdiction, all calls and each category, for each window.

        Left out of each window: its busiest disk (a cell and its ring), so that
        one local surge, which the local test judges, does not also make the
        whole county look busy.
        """
        out: list[_Finding] = []
        windows = sorted(self.jurisdiction_windows_min)
        starts = [now - 60.0 * w for w in windows]
        bisect_right = bisect.bisect_right
        # Counted by bisecting the sorted time lists, per cell and per category: the work grows
        # with the cells and the windows, not with the calls (a storm puts 200,000 in the windows).
        per_window: list[dict[str, int]] = [{} for _ in windows]
        for cell, times in self._times_by_cell.items():
            end = bisect_right(times, now)
            if end and times[end - 1] > starts[-1]:
                for counts, start in zip(per_window, starts, strict=True):
                    n = end - bisect_right(times, start)
                    if n:
                        counts[cell] = n
        if not per_window[-1]:
            return out
        ncat = len(CATEGORIES)
        at_start: dict[int, tuple[dict[str, int], list[int], list[int]]] = {}
        for w, start, cell_counts in zip(windows, starts, per_window, strict=True):
            n_calls = [0] * (ncat + 1)  # index 0: all calls, 1..: per category
            n_inc = [0] * (ncat + 1)
            for j in range(ncat):
                for index, into in ((self._times_by_cat, n_calls), (self._inc_by_cat, n_inc)):
                    times = index.get(j)
                    if times:
                        n = bisect_right(times, now) - bisect_right(times, start)
                        into[0] += n
                        into[j + 1] += n
            at_start[w] = (cell_counts, n_calls, n_inc)
        rho = self.incident_ratio
        outside_of: dict[str, float] = {}
        for w in windows:
            start = now - 60.0 * w
            cell_counts, n_calls, n_inc = at_start[w]
            # its busiest disk (most calls; the smallest centre among equals)
            per_disk: dict[str, int] = {}
            for cell, n in cell_counts.items():
                for centre in _disk(cell):
                    per_disk[centre] = per_disk.get(centre, 0) + n
            top = min(per_disk.items(), key=lambda kv: (-kv[1], kv[0]))[0] if per_disk else ""
            excluded = _disk(top) if top else ()
            if top not in outside_of:
                outside_of[top] = max(0.0, 1.0 - sum(self.baseline.share(c) for c in excluded))
            outside = outside_of[top]
            n_calls, n_inc = n_calls[:], n_inc[:]
            left_out = [c for cell in excluded for c in self._by_cell.get(cell, ()) if start < c[0] <= now]
            for _, _, category, incident in left_out:
                j = _CAT_INDEX.get(category, _OTHER) + 1
                n_calls[0] -= 1
                n_calls[j] -= 1
                if incident:
                    n_inc[0] -= 1
                    n_inc[j] -= 1
            total = self.baseline.total(start, now) * outside
            for j in range(ncat + 1):
                incidents = n_inc[j]
                if incidents < self.min_incidents:
                    continue
                category = None if j == 0 else CATEGORIES[j - 1]
                expected = total if category is None else total * self.baseline.category_share(category, 0.5 * (start + now))
                mean = rho * expected
                # at or below the mean the tail is above 0.3: reported as 1 (score 0), not computed
                log10p = _log10_negbin_sf(incidents, mean, self.jurisdiction_shape) if incidents > mean else 0.0
                # its calls (and cells) are listed only if it explains an alert (see _explain)
                f = _finding(JURISDICTION, w, now, log10p, None, incidents, expected, (), category)
                f.observed, f.left_out = n_calls[j], (start, excluded)
                out.append(f)
        return out

    def _lifecycle(self, now: float, findings: dict[str, list[_Finding]], *, jurisdiction: bool) -> list[Alert]:
        """Open, update and close the local (or the jurisdiction's) alerts from this evaluation's findings."""
        threshold = self.jurisdiction_threshold if jurisdiction else self.threshold
        best_by_key = {key: fs[0] if len(fs) == 1 else max(fs, key=_rank) for key, fs in findings.items() if fs}
        exceed = sorted((f for f in best_by_key.values() if f.score >= threshold), key=_rank, reverse=True)
        close_s = 60.0 * self.close_after_min
        if not best_by_key and now - self._alive_floor < close_s:
            return []  # nothing to open, update or keep alive, and no alert quiet for long enough to close
        for f in exceed:
            region_cells = set(f.cells) if jurisdiction else set(_region_cells(f.key))
            # the first open alert (of this kind) in opening order that shares a cell with the region
            if jurisdiction:
                mine = sorted((self._episodes[i] for i in self._county_ids), key=_opening)
            else:
                mine = self._touching(self._eps_by_cell, region_cells)
            ep = mine[0] if mine else None
            if ep is None:
                started = math.floor(min(c[0] for c in self._explain(f).calls) / 60.0) * 60.0
                anchor = "jurisdiction" if jurisdiction else f.key.split(":", 1)[1]
                ep_id = f"surge:{anchor}:{int(started)}"
                while ep_id in self._episodes:  # a second surge anchored on the same cell and minute
                    ep_id += "+"
                self._opened += 1
                ep = _Episode(id=ep_id, started_at=started, jurisdiction=jurisdiction, order=self._opened)
                self._episodes[ep.id] = ep
                self._rescored_floor = self._alive_floor = -math.inf  # the next rounds look at every alert again
                if jurisdiction:
                    self._county_ids.add(ep.id)
            if not jurisdiction:
                ep.footprint |= region_cells
                for c in region_cells:
                    self._eps_by_cell.setdefault(c, set()).add(ep.id)
            ep.regions.add(f.key)
            self._eps_by_region.setdefault(f.key, set()).add(ep.id)
        # Each open alert of this kind: alive if one of its regions scored close_threshold in this
        # round's findings (a call's few regions, against an alert's hundreds in a storm), closed
        # after close_after_min without. A round looks at every open alert only when one may
        # close (the alive floor); otherwise at those the findings' regions touch (the index).
        keys = best_by_key.keys()
        out: list[tuple[str, Alert]] = []
        every = now - self._alive_floor >= close_s  # some alert may close: look at each
        # (else none can: only those with a region in this round's findings)
        episodes = list(self._episodes.values()) if every else self._touching(self._eps_by_region, keys)
        for ep in episodes:
            if ep.jurisdiction != jurisdiction:
                continue
            alive = []
            if not ep.regions.isdisjoint(keys):
                alive = [f for k in keys if k in ep.regions and (f := best_by_key[k]).score >= self.close_threshold]
            if alive:
                ep.last_alive = now
            elif now - ep.last_alive >= close_s:
                self._forget(ep)
                out.append((ep.id, self._alert(ep, AlertState.CLOSED, now)))
                continue
            else:
                continue  # quiet, but not for long enough to close
            current = max(alive, key=_rank)
            if ep.best is None:
                ep.best = self._explain(current)
                out.append((ep.id, self._alert(ep, AlertState.OPEN, now)))
            elif (current.observed > ep.peak and current.observed >= ep.peak * (1.0 + self.update_growth)) or not (
                jurisdiction or _call_cells(current) <= ep.reported
            ):
                # grown: update_growth more calls than ever reported, or (locally) calls in cells it never reported
                ep.best = self._explain(current)
                out.append((ep.id, self._alert(ep, AlertState.UPDATE, now)))
            ep.peak = max(ep.peak, ep.best.observed)
            ep.reported |= _call_cells(ep.best)
        if every:
            self._alive_floor = min((ep.last_alive for ep in self._episodes.values()), default=math.inf)
        out.sort(key=lambda pair: pair[0])  # in the order of the alerts' ids, whatever the order they opened in
        return [alert for _, alert in out]

    def _alert(self, ep: _Episode, state: AlertState, now: float) -> Alert:
        f = ep.best
        assert f is not None
        categories: dict[str, int] = {}
        for c in f.calls:
            categories[c[2]] = categories.get(c[2], 0) + 1
        categories = dict(sorted(categories.items(), key=lambda kv: (-kv[1], kv[0])))
        per_cell: dict[str, int] = {}
        for c in f.calls:
            per_cell[c[1]] = per_cell.get(c[1], 0) + 1
        cells = tuple(sorted(per_cell, key=lambda c: (-per_cell[c], c)))
        if state is AlertState.CLOSED:
            reason = f"closed: no region of this surge has scored {self.close_threshold:g} for {self.close_after_min:g} min"
        else:
            where = (
                f"across the jurisdiction{'' if f.category is None else f' ({f.category})'}"
                if f.key == JURISDICTION
                else (f"in cell {f.key.split(':', 1)[1]}" if f.key.startswith("cell:") else f"in 7 cells around {f.key.split(':', 1)[1]}")
            )
            reason = (
                f"{f.observed} calls ({f.incidents} incidents) in {f.window_min} min {where}, {f.expected:.2g} expected (p = {f.p:.0e})"
            )
        return Alert(
            id=ep.id,
            kind=AlertKind.SURGE,
            state=state,
            started_at=ep.started_at,
            at=now,
            cells=cells,
            window_min=f.window_min,
            observed=f.observed,
            expected=round(f.expected, 3),
            score=round(f.score, 3),
            p_value=f.p,
            categories=categories,
            model=MODEL,
            model_version=MODEL_VERSION,
            reason=reason,
        )


class _Round:
    """What the regions evaluated at one instant share, each computed once.

    A call's eight regions overlap (a disk of radius two holds 19 cells, counted
    56 times), and every region of a round reads the same window totals, so
    each is read once per round. Valid while the windows and the baseline do
    not change (within one ``advance`` or ``score_one``).
    """

    __slots__ = ("_det", "now", "_counts", "_shares", "_share", "_totals", "_county")

    def __init__(self, det: SurgeDetector, now: float) -> None:
        self._det, self.now = det, now
        self._counts: dict[str, tuple[int, ...]] = {}
        self._shares: dict[str, float] = {}
        self._share: Callable[[str], float] | None = None
        self._totals: dict[int, float] = {}
        self._county: dict[int, tuple[int, float]] = {}

    def counts(self, cell: str) -> tuple[int, ...]:
        """The cell's calls and incidents in each window of ``windows_min``, longest first: ``(n0, inc0, n1, inc1, ...)``."""
        got = self._counts.get(cell)
        if got is None:
            got = self._counts[cell] = self._det._cell_counts(cell, self.now)
        return got

    def share(self, cell: str) -> float:
        got = self._shares.get(cell)
        if got is None:
            if self._share is None:
                self._share = self._det.baseline.shares()
            got = self._shares[cell] = self._share(cell)
        return got

    def total(self, window_min: int) -> float:
        """Calls expected in the jurisdiction in the window ending now."""
        got = self._totals.get(window_min)
        if got is None:
            got = self._totals[window_min] = self._det.baseline.total(self.now - 60.0 * window_min, self.now)
        return got

    def scale(self, window_min: int, observed: int, expected: float) -> float:
        """Jurisdiction observed/expected outside a region (``observed`` incidents, ``expected`` mean) while a
        jurisdiction-wide surge is open; 1 otherwise."""
        det = self._det
        if not det._county_ids:
            return 1.0
        county = self._county.get(window_min)
        if county is None:
            start, times = self.now - 60.0 * window_min, det._incident_times
            total_obs = bisect.bisect_right(times, self.now) - bisect.bisect_right(times, start)
            county = self._county[window_min] = (total_obs, self.total(window_min) * det.incident_ratio)
        total_obs, total_exp = county
        if total_exp - expected <= 0:
            return 1.0
        return max(1.0, (total_obs - observed) / (total_exp - expected))


# ---------------------------------------------------------------------- helpers


def incidents(points, repeat_s: float = 120.0, same_instant_s: float = 1.0) -> list[bool]:
    """For calls in event-time order, whether each is a new incident under :class:`SurgeDetector`'s repeat rule.

    A call is a repeat when a new incident was counted in the same cell at most
    ``repeat_s`` seconds before it (so a cell counts at most one incident per
    ``repeat_s``, and a long burst still counts many), or when any call arrived
    in a neighbouring cell at most ``same_instant_s`` seconds before it.

    >>> from detectors.types import CallPoint
    >>> cell = "882aac941dfffff"
    >>> incidents([CallPoint(t, cell, "EMS") for t in (0.0, 60.0, 150.0, 200.0, 600.0)])
    [True, False, True, False, True]
    """
    last_incident: dict[str, float] = {}
    last_call: dict[str, float] = {}
    out = []
    for x in points:
        t = float(x.t)
        new = not (x.cell in last_incident and 0.0 <= t - last_incident[x.cell] <= repeat_s)
        if new and same_instant_s > 0:
            new = not any(n != x.cell and n in last_call and 0.0 <= t - last_call[n] <= same_instant_s for n in _disk(x.cell))
        out.append(new)
        last_call[x.cell] = max(t, last_call.get(x.cell, t))
        if new:
            last_incident[x.cell] = t
    return out


#: seconds of event time between re-scorings of an open alert's quiet regions
_RESCORE_S = 60.0
#: regions of due alerts one round re-scores at most (the alert that crosses it is finished): some 50 ms
_RESCORE_BUDGET = 1000
#: seconds by which a cell's cached counts expire before a window's start reaches its first call:
#: far above the rounding of ``now - 60 * w`` (a fraction of a microsecond at today's epoch)
_COUNT_MARGIN_S = 1e-3
#: attributes a checkpoint leaves out (rebuilt on restore)
_DERIVED = frozenset({"_count_cache", "_eps_by_cell", "_eps_by_region", "_opened"})
#: cells whose counts are kept at most (then the cache starts again; the cells of a county are far fewer)
_COUNT_CACHE_MAX = 200_000


def _score(log10p: float) -> float:
    return min(max(0.0, -log10p), _MAX_SCORE)


def _finding(key, w, now, log10p, calls, incidents, expected, cells, category=None) -> _Finding:
    score = _score(log10p)
    observed = len(calls) if calls is not None else 0
    return _Finding(key, w, now, score, 10.0 ** (-score), observed, incidents, expected, calls, tuple(cells), category)


def _call_cells(f: _Finding) -> frozenset[str] | set[str]:
    return f.present if f.present is not None else {c[1] for c in f.calls}


def _opening(ep: _Episode) -> int:
    return ep.order


def _rank(f: _Finding) -> tuple:
    return (f.score, -f.window_min, f.key)


@functools.lru_cache(maxsize=1 << 15)
def _disk(cell: str) -> tuple[str, ...]:
    return tuple(sorted(h3.grid_disk(cell, 1)))


@functools.lru_cache(maxsize=1 << 15)
def _regions(cell: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The regions containing ``cell``: the cell alone, and the disks centred on it and on each neighbour."""
    return ((f"cell:{cell}", (cell,)), *((f"disk:{n}", _disk(n)) for n in _disk(cell)))


def _region_cells(key: str) -> tuple[str, ...]:
    kind, cell = key.split(":", 1)
    return (cell,) if kind == "cell" else _disk(cell)


def _check_windows(name: str, value: object, *, allow_empty: bool) -> tuple[int, ...]:
    windows = tuple(value) if isinstance(value, (tuple, list)) else None
    if windows is None or (not windows and not allow_empty) or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in windows):
        what = "a tuple" if allow_empty else "a non-empty tuple"
        raise ValueError(f"{name} must be {what} of whole minutes >= 1, got {value!r}")
    return windows


def _check_number(name: str, value: object, *, low: float, strict: bool = False) -> None:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if not ok or (value <= low if strict else value < low):
        raise ValueError(f"{name} must be a finite number {'>' if strict else '>='} {low:g}, got {value!r}")
