"""One surge, one alert: the surge detector's open alerts, opened, grown, kept alive and closed (pure).

An exceedance whose region shares a cell with an open alert's footprint
belongs to that alert; otherwise it opens one (exceedances overlapping each
other open one alert). ``UPDATE`` is emitted when an alert grows: a fraction
``update_growth`` more calls than it ever reported in its strongest region and
window, or calls in cells it never reported. An alert closes (``CLOSED``) once
none of its regions has scored ``close_threshold`` for ``close_after_min``
minutes. Its id, ``surge:<centre cell or 'jurisdiction'>:<started_at>``, holds
for its whole life and across replays of the same input.

:class:`Lifecycle` keeps the open alerts (``_Episode``) and their indexes by
footprint cell and by region, so that a round finds the few a call's regions
touch without testing every open alert.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from detectors.surge.explanation import surge_alert
from detectors.surge.regions import region_cells
from detectors.surge.scan import _call_cells, _Finding, _rank
from detectors.types import Alert, AlertState


@dataclass
class _Episode:
    """An open surge alert: its regions, its footprint (local alerts) and what it reported."""

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


def _opening(ep: _Episode) -> int:
    return ep.order


class Lifecycle:
    """The surge detector's open alerts (a part of :class:`~detectors.surge.SurgeDetector`).

    Reads the configuration and :meth:`_explain` of the detector (declared
    below); keeps the open alerts, their indexes and the floors that let a
    round skip the alerts nothing touches.
    """

    threshold: float
    jurisdiction_threshold: float
    close_threshold: float
    close_after_min: float
    update_growth: float
    _episodes: dict[str, _Episode]
    _eps_by_cell: dict[str, set[str]]
    _eps_by_region: dict[str, set[str]]
    _county_ids: set[str]
    _opened: int
    _rescored_floor: float
    _alive_floor: float

    if TYPE_CHECKING:

        def _explain(self, f: _Finding) -> _Finding: ...  # Scan._explain

    def _lifecycle(self, now: float, findings: dict[str, list[_Finding]], *, jurisdiction: bool) -> list[Alert]:
        """Open, update and close the local (or the jurisdiction's) alerts from this evaluation's findings."""
        threshold = self.jurisdiction_threshold if jurisdiction else self.threshold
        best_by_key = {key: fs[0] if len(fs) == 1 else max(fs, key=_rank) for key, fs in findings.items() if fs}
        exceed = sorted((f for f in best_by_key.values() if f.score >= threshold), key=_rank, reverse=True)
        close_s = 60.0 * self.close_after_min
        if not best_by_key and now - self._alive_floor < close_s:
            return []  # nothing to open, update or keep alive, and no alert quiet for long enough to close
        for f in exceed:
            self._attach(f, jurisdiction)
        out = self._judge(now, best_by_key, jurisdiction)
        out.sort(key=lambda pair: pair[0])  # in the order of the alerts' ids, whatever the order they opened in
        return [alert for _, alert in out]

    def _attach(self, f: _Finding, jurisdiction: bool) -> None:
        """Add exceedance ``f`` to the first open alert (of its kind, in opening order) it shares a cell with, or open one."""
        region = set(f.cells) if jurisdiction else set(region_cells(f.key))
        if jurisdiction:
            mine = sorted((self._episodes[i] for i in self._county_ids), key=_opening)
        else:
            mine = self._touching(self._eps_by_cell, region)
        ep = mine[0] if mine else self._open(f, jurisdiction)
        if not jurisdiction:
            ep.footprint |= region
            for c in region:
                self._eps_by_cell.setdefault(c, set()).add(ep.id)
        ep.regions.add(f.key)
        self._eps_by_region.setdefault(f.key, set()).add(ep.id)

    def _open(self, f: _Finding, jurisdiction: bool) -> _Episode:
        """A new alert for exceedance ``f``, started at the minute of the first call of its window."""
        calls = self._explain(f).calls
        assert calls is not None
        started = math.floor(min(c[0] for c in calls) / 60.0) * 60.0
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
        return ep

    def _judge(self, now: float, best_by_key: dict[str, _Finding], jurisdiction: bool) -> list[tuple[str, Alert]]:
        """Keep alive, report growth of, or close each open alert of this kind; ``(id, alert)`` of each record.

        An alert is alive if one of its regions scored ``close_threshold`` in this
        round's findings (a call's few regions, against an alert's hundreds in a
        storm), closed after ``close_after_min`` without. A round looks at every
        open alert only when one may close (the alive floor); otherwise at those
        the findings' regions touch (the index).
        """
        keys = best_by_key.keys()
        out: list[tuple[str, Alert]] = []
        close_s = 60.0 * self.close_after_min
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
            state = self._report(ep, max(alive, key=_rank), jurisdiction)
            if state is not None:
                out.append((ep.id, self._alert(ep, state, now)))
        if every:
            self._alive_floor = min((ep.last_alive for ep in self._episodes.values()), default=math.inf)
        return out

    def _report(self, ep: _Episode, current: _Finding, jurisdiction: bool) -> AlertState | None:
        """Make ``current`` the alert's reported finding if it opens or grows it (the state to emit), else None."""
        state = None
        if ep.best is None:
            state = AlertState.OPEN
        elif (current.observed > ep.peak and current.observed >= ep.peak * (1.0 + self.update_growth)) or not (
            jurisdiction or _call_cells(current) <= ep.reported
        ):
            # grown: update_growth more calls than ever reported, or (locally) calls in cells it never reported
            state = AlertState.UPDATE
        if state is not None:
            ep.best = self._explain(current)
        assert ep.best is not None
        ep.peak = max(ep.peak, ep.best.observed)
        ep.reported |= _call_cells(ep.best)
        return state

    def _alert(self, ep: _Episode, state: AlertState, now: float) -> Alert:
        return surge_alert(ep, state, now, self.close_threshold, self.close_after_min)

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
