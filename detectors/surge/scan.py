"""The scan: each region's counts in its windows, its test, and the calls that explain a finding (pure).

:class:`Scan` holds the surge detector's reading of its windows: a cell's
calls and incidents per window (bisections of sorted times, kept from round to
round while they cannot change), one region's best window under the Poisson
test, the jurisdiction's windows under the negative-binomial test (its busiest
disk left out), and, only for a finding that explains an alert, its calls.
:class:`_Round` is what the regions evaluated at one instant share. The
windows themselves are kept and trimmed by
:class:`~detectors.surge.detector.SurgeDetector`; see :mod:`detectors.surge`
for the test.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from detectors.surge.county import _OTHER, CountyWindows
from detectors.surge.regions import JURISDICTION, disk
from detectors.tails import MAX_SCORE, log10_negbin_sf, log10_poisson_sf
from detectors.windows import time_of
from streams.ingest.schema import CATEGORIES, CATEGORY_INDEX

if TYPE_CHECKING:
    from detectors.baseline import ExpectedCounts

#: A call in the windows: ``(t, cell, category, incident)``. A plain tuple of atoms, which Python's
#: garbage collector stops tracking: a storm holds one per call (200,000 at the cap), and as
#: objects each was walked by every full collection (100 ms pauses of the detection worker).
_Rec = tuple[float, str, str, bool]

#: seconds by which a cell's cached counts expire before a window's start reaches its first call:
#: far above the rounding of ``now - 60 * w`` (a fraction of a microsecond at today's epoch)
_COUNT_MARGIN_S = 1e-3
#: cells whose counts are kept at most (then the cache starts again; the cells of a county are far fewer)
_COUNT_CACHE_MAX = 200_000


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
    #: the window's calls; None until the finding explains an alert (see ``Scan._explain``)
    calls: list[_Rec] | None
    cells: tuple[str, ...]
    category: str | None = None
    #: the cell or disk region's cells with calls in the window (None for the jurisdiction's: use ``calls``)
    present: frozenset[str] | None = None
    #: the jurisdiction's window start and the cells it left out, to list its calls when explained
    left_out: tuple[float, tuple[str, ...]] | None = None
    #: how the score was reached when it is not a scan's p-value (the CUSUM's), for the alert's reason
    method: str | None = None


def _score(log10p: float) -> float:
    return min(max(0.0, -log10p), MAX_SCORE)


def _finding(
    key: str,
    w: int,
    now: float,
    log10p: float,
    calls: list[_Rec] | None,
    incidents: int,
    expected: float,
    cells: Iterable[str],
    category: str | None = None,
) -> _Finding:
    score = _score(log10p)
    observed = len(calls) if calls is not None else 0
    return _Finding(key, w, now, score, 10.0 ** (-score), observed, incidents, expected, calls, tuple(cells), category)


def _call_cells(f: _Finding) -> frozenset[str] | set[str]:
    """The cells with calls in ``f``'s window (an explained finding's, for the jurisdiction)."""
    return f.present if f.present is not None else {c[1] for c in f.calls or ()}


def _rank(f: _Finding) -> tuple[float, int, str]:
    """Findings rank by score, then the shorter window, then the key."""
    return (f.score, -f.window_min, f.key)


class Scan:
    """The surge detector's reading of its windows (a part of :class:`~detectors.surge.SurgeDetector`).

    Reads the windows and indexes the detector keeps (declared below) and its
    configuration; changes nothing but the counts cache.
    """

    baseline: ExpectedCounts
    min_incidents: int
    jurisdiction_shape: float
    jurisdiction_windows_min: tuple[int, ...]
    _windows_desc: tuple[int, ...]
    _calls: list[_Rec]
    _by_cell: dict[str, list[_Rec]]
    _times_by_cell: dict[str, list[float]]
    _inc_by_cell: dict[str, list[float]]
    _incident_times: list[float]
    _county_ids: set[str]
    _count_cache: dict[str, tuple[float, float, tuple[int, ...]]]
    _county: CountyWindows | None

    if TYPE_CHECKING:

        @property
        def incident_ratio(self) -> float: ...  # SurgeDetector.incident_ratio

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
            log10p = log10_poisson_sf(incidents, mean)
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
        whole county look busy. The windows' sums are kept as calls enter and
        leave them (:class:`~detectors.surge.county.CountyWindows`), built again
        from the calls after a restore or a change of windows.
        """
        windows = tuple(sorted(self.jurisdiction_windows_min))
        county = self._county
        if county is None or county.windows_min != windows or now < county.at:
            county = self._county = CountyWindows(windows, self._calls, now)
        else:
            county.move(now, self._calls)
        if not county.calls(len(windows) - 1)[0]:
            return []
        out: list[_Finding] = []
        outside_of: dict[str, float] = {}
        for i, w in enumerate(windows):
            out += self._jurisdiction_window(now, w, county.busiest(i), county.calls(i), county.incidents(i), outside_of)
        return out

    def _jurisdiction_window(
        self, now: float, w: int, top: str, n_calls: list[int], n_inc: list[int], outside_of: dict[str, float]
    ) -> list[_Finding]:
        """The jurisdiction's findings in window ``w`` (all calls, then each category), the disk centred on ``top``
        (its busiest; "" for none) left out; ``n_calls`` and ``n_inc`` are its counts (index 0 all, then per
        category), changed here.

        ``outside_of`` keeps, by disk centre, the baseline's share outside that disk (shared by the windows).
        """
        start = now - 60.0 * w
        excluded = disk(top) if top else ()
        if top not in outside_of:
            share = self.baseline.shares()  # what the cells' shares have in common, computed once
            outside_of[top] = max(0.0, 1.0 - sum(share(c) for c in excluded))
        outside = outside_of[top]
        left_out = [c for cell in excluded for c in self._by_cell.get(cell, ()) if start < c[0] <= now]
        for _, _, left_category, incident in left_out:
            j = CATEGORY_INDEX.get(left_category, _OTHER) + 1
            n_calls[0] -= 1
            n_calls[j] -= 1
            if incident:
                n_inc[0] -= 1
                n_inc[j] -= 1
        total = self.baseline.total(start, now) * outside
        rho = self.incident_ratio
        out = []
        for j in range(len(CATEGORIES) + 1):
            incidents = n_inc[j]
            if incidents < self.min_incidents:
                continue
            category = None if j == 0 else CATEGORIES[j - 1]
            expected = total if category is None else total * self.baseline.category_share(category, 0.5 * (start + now))
            mean = rho * expected
            # at or below the mean the tail is above 0.3: reported as 1 (score 0), not computed
            log10p = log10_negbin_sf(incidents, mean, self.jurisdiction_shape) if incidents > mean else 0.0
            # its calls (and cells) are listed only if it explains an alert (see _explain)
            f = _finding(JURISDICTION, w, now, log10p, None, incidents, expected, (), category)
            f.observed, f.left_out = n_calls[j], (start, excluded)
            out.append(f)
        return out


class _Round:
    """What the regions evaluated at one instant share, each computed once.

    A call's eight regions overlap (a disk of radius two holds 19 cells, counted
    56 times), and every region of a round reads the same window totals, so
    each is read once per round. Valid while the windows and the baseline do
    not change (within one ``advance`` or ``score_one``).
    """

    __slots__ = ("_det", "now", "_counts", "_shares", "_share", "_totals", "_county")

    def __init__(self, det: Scan, now: float) -> None:
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
