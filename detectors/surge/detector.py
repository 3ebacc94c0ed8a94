"""The surge detector: its configuration, its windows, and the River verbs (pure).

:class:`SurgeDetector` keeps the calls of its longest window (in one list in
time order, per cell, and as sorted times per cell and per category, with the
incidents apart), learns the share of calls that are new incidents, and on
:meth:`~SurgeDetector.advance` scans the regions that changed
(:class:`~detectors.surge.scan.Scan`) and runs the alerts' lifecycle
(:class:`~detectors.surge.lifecycle.Lifecycle`). See :mod:`detectors.surge`.
"""

from __future__ import annotations

import bisect
import math
from typing import Any

from detectors.base import Detector
from detectors.baseline import ExpectedCounts
from detectors.calibration import BudgetControl
from detectors.surge.county import CountyWindows
from detectors.surge.incidents import is_incident
from detectors.surge.lifecycle import Lifecycle, _Episode
from detectors.surge.regions import JURISDICTION, region_cells, regions
from detectors.surge.scan import Scan, _Finding, _finding, _Rec, _Round
from detectors.types import Alert, AlertState, CallPoint
from detectors.windows import MAX_WINDOW_CALLS, check_cap, drop_expired, insort_by_time, shed_cutoff, time_of

#: default ``update_growth``: an open alert reports again once it has a fifth more calls than it ever reported
UPDATE_GROWTH = 0.2
#: Event-time seconds between two tests of the jurisdiction.
_JURISDICTION_STEP_S = 60.0
#: Calls the jurisdiction's windows may hold back until its next test (then they are counted at once): at 1,000
#: calls a second, counting a whole minute's at the test held that one call about 50 ms (bench/detect_storm.py).
_COUNTY_PENDING_MAX = 500
#: seconds of event time between re-scorings of an open alert's quiet regions
_RESCORE_S = 60.0
#: regions of due alerts one round re-scores at most (the alert that crosses it is finished): some 50 ms
_RESCORE_BUDGET = 1000
#: attributes a checkpoint leaves out (rebuilt on restore)
_DERIVED = frozenset({"_count_cache", "_county", "_eps_by_cell", "_eps_by_region", "_opened"})
#: attributes older checkpoints hold that are no longer kept (the per-category times, for the jurisdiction's counts
#: before CountyWindows): dropped on restore
_RETIRED = frozenset({"_times_by_cat", "_inc_by_cat"})


class SurgeDetector(Detector, Scan, Lifecycle):
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
    control : detectors.calibration.BudgetControl or None
        Keeps ``threshold`` and ``jurisdiction_threshold`` at a false-alert
        budget online (see :mod:`detectors.calibration`): they then move, within
        its floor and ceiling, with the alerts this detector opens. None (the
        default) keeps them fixed. Its floor must not be below ``close_threshold``.
    jurisdiction_cusum : float or None
        Also test the jurisdiction with a Poisson CUSUM of its incidents
        against the baseline, designed for a rise of this fraction (1.0: a
        doubling), scored in log10 likelihood ratio against
        ``jurisdiction_threshold``: a sustained county-wide rise accumulates
        evidence minute after minute instead of waiting for one window to be
        extreme. None (the default) leaves it out.
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
        control: BudgetControl | None = None,
        jurisdiction_cusum: float | None = None,
    ) -> None:
        for name, value, strict in (
            ("threshold", threshold, True), ("jurisdiction_threshold", jurisdiction_threshold, True),
            ("close_threshold", close_threshold, False), ("close_after_min", close_after_min, False),
            ("repeat_s", repeat_s, False), ("same_instant_s", same_instant_s, False),
            ("jurisdiction_shape", jurisdiction_shape, True), ("update_growth", update_growth, False),
        ):  # fmt: skip
            _check_number(name, value, low=0.0, strict=strict)
        if close_threshold > min(threshold, jurisdiction_threshold):
            raise ValueError(
                f"close_threshold must be <= threshold and jurisdiction_threshold, got {close_threshold!r} "
                f"(thresholds {threshold!r}, {jurisdiction_threshold!r})"
            )
        if isinstance(min_incidents, bool) or not isinstance(min_incidents, int) or min_incidents < 1:
            raise ValueError(f"min_incidents must be an integer >= 1, got {min_incidents!r}")
        if control is not None and (not isinstance(control, BudgetControl) or min(control.floor) < close_threshold):
            raise ValueError(
                f"control must be a BudgetControl whose floor is at least close_threshold ({close_threshold!r}), got {control!r}"
            )
        if baseline is not None and not isinstance(baseline, ExpectedCounts):
            raise ValueError(f"baseline must be an ExpectedCounts or None, got {type(baseline).__name__}")
        self.threshold = threshold
        self.jurisdiction_threshold = jurisdiction_threshold
        self.close_threshold = close_threshold
        self.close_after_min = close_after_min
        self.windows_min = _check_windows("windows_min", windows_min, allow_empty=False)
        self.jurisdiction_windows_min = _check_windows("jurisdiction_windows_min", jurisdiction_windows_min, allow_empty=True)
        self.min_incidents = min_incidents
        self.repeat_s = repeat_s
        self.same_instant_s = same_instant_s
        self.jurisdiction_shape = jurisdiction_shape
        self.baseline = baseline if baseline is not None else ExpectedCounts()
        self.max_window_calls = check_cap(max_window_calls)
        self.update_growth = update_growth
        self.control = control
        if jurisdiction_cusum is not None:
            _check_number("jurisdiction_cusum", jurisdiction_cusum, low=0.0, strict=True)
        self.jurisdiction_cusum = jurisdiction_cusum
        #: calls dropped from the windows early because they held ``max_window_calls``
        self.shed_calls = 0
        self._init_windows()
        self._init_alerts()

    def _init_windows(self) -> None:
        """Empty windows and indexes, and the clock before any call."""
        self._horizon_s = 60.0 * max(self.windows_min + self.jurisdiction_windows_min)
        self._windows_desc = tuple(sorted(set(self.windows_min), reverse=True))
        self._calls: list[_Rec] = []  # every call of the last max window, in time order
        self._by_cell: dict[str, list[_Rec]] = {}
        self._dirty: set[str] = set()
        self._jurisdiction_dirty = False
        self._next_jurisdiction = -math.inf
        # the jurisdiction's CUSUM (``jurisdiction_cusum``): statistic, last update, when it last left zero
        self._cusum = 0.0
        self._cusum_at: float | None = None
        self._cusum_start = -math.inf
        self._now = -math.inf
        # Each cell's window counts, kept from round to round while they cannot change (see
        # _cell_counts): a call's 19 cells, re-counted at every call, were half of a storm's cost.
        self._count_cache: dict[str, tuple[float, float, tuple[int, ...]]] = {}
        # The jurisdiction's windows, kept as calls enter and leave them (see CountyWindows): made at
        # its first test, and again after a restore (a checkpoint leaves them out).
        self._county: CountyWindows | None = None
        # Sorted times, so that in a county-wide storm a region's test never scans every call
        # (at 100 calls/s that blocked the worker for minutes): the incidents in the windows,
        self._incident_times: list[float] = []
        # and per cell, with every call's time, so that a region's counts are bisections of floats.
        self._inc_by_cell: dict[str, list[float]] = {}
        self._times_by_cell: dict[str, list[float]] = {}
        # Decayed share of calls that are new incidents (starts at 1: no repeats assumed).
        self._inc_sum = 0.0
        self._call_sum = 0.0

    def _init_alerts(self) -> None:
        """No open alert, and their (empty) indexes."""
        self._episodes: dict[str, _Episode] = {}
        # Lower bounds of every open alert's rescored_at and last_alive: while the clock is
        # less than a minute past the first (and no cell got a call) no alert is due a
        # re-score, and while it is less than close_after_min past the second none can close,
        # so a round skips the loops over the open alerts (hundreds in a storm, twice a call).
        self._rescored_floor = -math.inf
        self._alive_floor = -math.inf
        # The open alerts by footprint cell and by region, so that a round finds the few a
        # call's regions touch without testing every open alert (both rebuilt, not pickled),
        # and the county-wide ones.
        self._eps_by_cell: dict[str, set[str]] = {}
        self._eps_by_region: dict[str, set[str]] = {}
        self._opened = 0
        self._county_ids: set[str] = set()

    # ------------------------------------------------------------------ state

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

    def __getstate__(self) -> dict[str, Any]:
        # the counts cache is rebuilt as rounds need it, the alert indexes on restore: not worth a checkpoint's bytes
        return {k: v for k, v in self.__dict__.items() if k not in _DERIVED}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({k: v for k, v in state.items() if k not in _RETIRED})
        self._count_cache = {}
        self._county = None
        self._reindex()  # checkpoints hold the alerts, not their order or indexes

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
        if incident:
            bisect.insort(self._incident_times, t)
            bisect.insort(self._inc_by_cell.setdefault(x.cell, []), t)
        insort_by_time(self._calls, call)
        if self._county is not None:
            self._county.learn(call)
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
        for key, cells in regions(x.cell):
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
        kept = self._county
        if kept is not None and kept.pending >= _COUNTY_PENDING_MAX:
            kept.move(now, self._calls)  # in steps, not a minute of a storm's calls at once at the next test
        if not self.ready:
            self._dirty.clear()
            self._jurisdiction_dirty = False
            return []
        findings: dict[str, list[_Finding]] = {}
        at = _Round(self, now)
        for cell in sorted(self._dirty):
            for key, cells in regions(cell):
                if key not in findings:
                    findings[key] = self._evaluate(key, cells, now, at=at)
        self._rescore(now, findings, at)
        alerts = self._lifecycle(now, findings, jurisdiction=False)
        self._dirty.clear()
        # The jurisdiction moves slowly: it is tested at most once a minute of event time.
        due = now >= self._next_jurisdiction
        if self.jurisdiction_windows_min and due and (self._jurisdiction_dirty or self._county_ids):
            county_findings = self._evaluate_jurisdiction(now)
            if self.jurisdiction_cusum is not None:
                county_findings += self._cusum_finding(now)
            alerts += self._lifecycle(now, {JURISDICTION: county_findings}, jurisdiction=True)
            self._jurisdiction_dirty = False
            self._next_jurisdiction = now + _JURISDICTION_STEP_S
        if self.control is not None:
            opened = [a for a in alerts if a.state is AlertState.OPEN]
            county = sum(1 for a in opened if a.id.startswith("surge:jurisdiction:"))
            self.threshold, self.jurisdiction_threshold = self.control.observe(
                now, len(opened) - county, county, self.threshold, self.jurisdiction_threshold
            )
        return alerts

    def _cusum_finding(self, now: float) -> list[_Finding]:
        """The jurisdiction's Poisson CUSUM brought to ``now``, as a finding when it is above zero.

        Over the incidents ``x`` since the last update and the ``mu = rho E`` expected, the statistic
        ``S = max(0, S + x log(1 + r) - r mu)`` (``r = jurisdiction_cusum``) is the log-likelihood ratio of a
        rate ``1 + r`` times the baseline's since ``S`` last left zero; its score is ``S / ln 10`` (log10 of
        that ratio), its window the minutes since then (at most the longest jurisdiction window).
        """
        r = float(self.jurisdiction_cusum or 0.0)
        last = self._cusum_at
        self._cusum_at = now
        if last is None or now <= last:
            self._cusum_start = now
            return []
        times = self._incident_times
        x = bisect.bisect_right(times, now) - bisect.bisect_right(times, last)
        mu = self.incident_ratio * self.baseline.total(last, now)
        s = max(0.0, self._cusum + x * math.log1p(r) - r * mu)
        if s == 0.0:
            self._cusum_start = now
        self._cusum = s
        if s <= 0.0:
            return []
        longest = 60.0 * max(self.jurisdiction_windows_min)
        start = max(self._cusum_start, now - longest)
        window = max(1, min(int(longest // 60), math.ceil((now - start) / 60.0)))
        start = now - 60.0 * window
        incidents = bisect.bisect_right(times, now) - bisect.bisect_right(times, start)
        expected = self.baseline.total(start, now)
        f = _finding(JURISDICTION, window, now, -s / math.log(10.0), None, incidents, expected, ())
        calls = self._calls
        f.observed = len(calls) - bisect.bisect_right(calls, start, key=time_of)
        f.left_out = (start, ())
        f.method = f"CUSUM of a {1.0 + r:g}-fold rate: {10.0**f.score:.0e} times likelier than the usual rate"
        return [f]

    def _rescore(self, now: float, findings: dict[str, list[_Finding]], at: _Round) -> None:
        """Add to ``findings`` the open alerts' regions due a re-score.

        An open alert's regions without new calls are re-scored once a minute (so
        that it closes, and reports its strongest region); when it gets a call, its
        best region so far is re-scored with the regions of the call, so that an
        update still reports the strongest. Re-scoring all of an alert's regions on
        every call in it made a storm quadratic: its alert grows to hundreds of regions.
        """
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
                    findings[best] = self._evaluate(best, region_cells(best), now, at=at)
                continue
            ep.rescored_at = now
            for key in sorted(ep.regions):
                if key not in findings and key != JURISDICTION:
                    findings[key] = self._evaluate(key, region_cells(key), now, at=at)
                    budget -= 1
        if every:
            self._rescored_floor = min((ep.rescored_at for ep in self._episodes.values()), default=math.inf)

    # ------------------------------------------------------------------ windows

    def _is_incident(self, cell: str, t: float) -> bool:
        """Whether a call at ``t`` in ``cell`` is a new incident (:func:`~detectors.surge.incidents.is_incident`) given the windows."""
        times = self._inc_by_cell.get(cell)
        last_incident = None
        if times:
            i = bisect.bisect_right(times, t)
            if i:
                last_incident = times[i - 1]
        return is_incident(cell, t, last_incident, self._last_call, self.repeat_s, self.same_instant_s)

    def _last_call(self, cell: str) -> float | None:
        """The time of the latest call in ``cell`` in the windows (None for none)."""
        calls = self._by_cell.get(cell)
        return calls[-1][0] if calls else None

    def _expire(self, now: float) -> None:
        self._drop_through(now - self._horizon_s)

    def _drop_through(self, cutoff: float) -> int:
        """Drop the calls at or before ``cutoff`` from the windows and the indexes; how many went."""
        calls = self._calls
        expired = calls[: bisect.bisect_right(calls, cutoff, key=time_of)]
        if not expired:
            return 0
        drop_expired(calls, self._by_cell, cutoff)
        if self._county is not None:
            self._county.forget(expired)
        times = self._incident_times
        del times[: bisect.bisect_right(times, cutoff)]
        every, incidents = {c[1] for c in expired}, {c[1] for c in expired if c[3]}
        for cell in every:
            self._count_cache.pop(cell, None)
        for index, keys in ((self._times_by_cell, every), (self._inc_by_cell, incidents)):
            for key in keys:
                times = index[key]
                del times[: bisect.bisect_right(times, cutoff)]
                if not times:
                    del index[key]
        return len(expired)


def _check_windows(name: str, value: object, *, allow_empty: bool) -> tuple[int, ...]:
    windows = tuple(value) if isinstance(value, (tuple, list)) else None
    if windows is None or (not windows and not allow_empty) or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in windows):
        what = "a tuple" if allow_empty else "a non-empty tuple"
        raise ValueError(f"{name} must be {what} of whole minutes >= 1, got {value!r}")
    return windows


def _check_number(name: str, value: object, *, low: float, strict: bool = False) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or (value <= low if strict else value < low)
    ):
        raise ValueError(f"{name} must be a finite number {'>' if strict else '>='} {low:g}, got {value!r}")
