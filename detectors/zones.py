"""Event zones: more calls inside a watched place, while it is watched, than its expected count makes plausible.

An event commander (or a supervisor) draws a zone around a large gathering (a
parade route, a stadium and its car parks) and gives it a time window; while
the zone is active, :class:`ZoneWatch` tests it on its own, with its own
threshold, and its alerts name it. A zone is a :class:`WatchedZone`: an id, a
name, its res-8 H3 cells, ``active_from`` / ``active_until`` in event time
(epoch seconds; a zone is active for ``active_from <= now < active_until``)
and an optional threshold. The worker replaces the watched zones with
:meth:`ZoneWatch.set_zones` whenever the gateway changes them.

The test
--------
For each active zone and each window ``w`` of ``windows_min`` (5, 15 and 30
minutes) ending at ``now``, with ``O`` calls observed in the zone's cells and
``E = baseline.expected(zone cells, now - w, now)``::

    p     = P(X >= O),  X ~ Poisson(E)
    score = -log10 p

The zone exceeds when ``O >= min_calls`` and ``score`` reaches the zone's
threshold, or ``threshold`` (3.0) when it has none. The default is lower than
the surge detector's 6.0 because a zone is one region tested on purpose, not
one of thousands scanned for anything unusual: at 3.0 a zone tested every
minute of a four-hour event has a false alarm probability of a few percent per
window, not per city.

Calls, not incidents: the zone counts every call record, where
:class:`~detectors.surge.SurgeDetector` counts incidents. During an event the
commander manages load, and a second caller or a second agency's record of
one incident is load too; the baseline also expects calls, so ``O`` and ``E``
count the same thing. The cost is that one incident recorded three times can
reach ``min_calls`` in a quiet zone; ``min_calls`` and the zone's threshold
are the knobs.

Alerts: one zone surge, one alert
---------------------------------
A zone has at most one open alert (kind ``zone_surge``). It opens when the zone
exceeds, is updated (``UPDATE``) when it grows: more calls than it ever
reported, or calls in zone cells it never reported. It closes (``CLOSED``)
after ``close_after_min`` minutes without exceeding, or at the first
:meth:`ZoneWatch.advance` at which the zone is no longer active or no longer
watched; the closing reason says which. Its id, ``zone:<zone id>:<started_at>``
(the minute of the first call in the window that fired), holds for its whole
life and across replays of the same input.

Every alert explains itself like a surge alert: ``observed`` calls of the
zone in the window ``(at - window_min, at]`` of the strongest window,
``expected`` the calls expected there, ``cells`` the zone cells that had
those calls (busiest first), ``categories``, ``score`` and ``p_value``,
``model`` and ``model_version``, ``zone`` the zone's id, and a one-sentence
``reason`` naming the zone.

The baseline: shared or own
---------------------------
In the worker the zone watch reads the surge detector's
:class:`~detectors.baseline.ExpectedCounts` without learning it
(``learn_baseline=False``; :class:`~detectors.suite.DetectorSuite` checks that
the baseline is the surge detector's), so each call is learnt once. Alone (in
tests, in the evaluation) it learns its own.

Warm-up: nothing scores or alerts until the baseline is ready; calls are
kept meanwhile, so a zone watched from the start of the stream is judged on
its full windows as soon as the baseline is.

Cost: the calls of the last ``max(windows_min)`` minutes in the whole
jurisdiction (a zone created now sees the last half hour at once), indexed by
cell; an evaluation reads the calls of one zone's cells. Zones are evaluated
when a call lands in one of their cells, when they become active, and while
they have an open alert.

Examples
--------
Three days of calls over a small town (127 cells), a parade route of 7 cells
watched for the whole stream, then 9 calls in 12 minutes on the route. The
third opens the alert; each call that adds calls or cells updates it:

>>> import random
>>> import h3
>>> from detectors.types import CallPoint
>>> rng = random.Random(3)
>>> town = sorted(h3.grid_disk("882aac941dfffff", 6))
>>> route = frozenset(h3.grid_disk(town[30], 1))
>>> watch = ZoneWatch(baseline=ExpectedCounts(warmup_calls=500, warmup_hours=24, timezone="America/New_York"))
>>> t, alerts = 1_700_000_000.0, []
>>> watch.set_zones([WatchedZone("z1", "Phillies parade", route, t, t + 5 * 86400)])
>>> for _ in range(1200):
...     t += rng.expovariate(15 / 3600)
...     alerts += watch.process(CallPoint(t=t, cell=rng.choice(town), category="EMS"))
>>> alerts
[]
>>> for i in range(9):
...     alerts += watch.process(CallPoint(t=t + 80.0 * (i + 1), cell=rng.choice(sorted(route)), category="TRAFFIC"))
>>> [(a.state.value, a.observed, a.window_min) for a in alerts][:3]
[('open', 3, 5), ('update', 4, 5), ('update', 4, 5)]
>>> a = alerts[-1]
>>> a.kind.value, a.id, a.zone, a.observed, a.window_min, a.expected, a.categories
('zone_surge', 'zone:z1:1700282280', 'z1', 9, 15, 0.21, {'TRAFFIC': 9})
>>> a.reason
"9 calls in 15 min in event zone 'Phillies parade', 0.21 expected (p = 2e-12)"
>>> alerts += watch.advance(t + 3600.0)
>>> alerts[-1].state.value, alerts[-1].id == alerts[0].id, alerts[-1].reason
('closed', True, "closed: event zone 'Phillies parade' has not scored 3 for 20 min")
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, cast

import h3

from detectors.base import Detector
from detectors.baseline import ExpectedCounts
from detectors.tails import MAX_SCORE, log10_poisson_sf
from detectors.types import DETECTION_RESOLUTION, Alert, AlertKind, AlertState, CallPoint
from detectors.windows import MAX_WINDOW_CALLS, check_cap, drop_expired, insort_by_time, shed_cutoff

__all__ = ["MODEL", "MODEL_VERSION", "WatchedZone", "ZoneWatch"]

MODEL = "zone-watch"
#: Bump when the test, the counting or the alert lifecycle change.
MODEL_VERSION = "1.0"


@dataclass(frozen=True)
class WatchedZone:
    """An event zone as the detectors see it: where, when, and how sensitive.

    ``cells`` are H3 cells at :data:`~detectors.types.DETECTION_RESOLUTION`
    (any iterable; kept as a frozenset). The zone is active for
    ``active_from <= t < active_until`` (event time, epoch seconds).
    ``threshold`` is its score threshold (``-log10 p``, > 0), or None for the
    watch's default. Invalid values raise ``ValueError`` naming the field.

    >>> z = WatchedZone("z1", "Parade", ["882aac941dfffff"], 100.0, 200.0)
    >>> z.active(100.0), z.active(200.0), z.threshold
    (True, False, None)
    """

    id: str
    name: str
    cells: frozenset[str]
    active_from: float
    active_until: float
    threshold: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ValueError(f"zone id must be a non-empty string, got {self.id!r}")
        if not isinstance(self.name, str):
            raise ValueError(f"zone {self.id!r}: name must be a string, got {self.name!r}")
        if isinstance(self.cells, (str, bytes)) or not isinstance(self.cells, Iterable):
            raise ValueError(f"zone {self.id!r}: cells must be a list of H3 cell ids, got {self.cells!r}")
        cells = frozenset(self.cells)
        if not cells:
            raise ValueError(f"zone {self.id!r}: cells is empty; a zone needs at least one H3 cell")
        bad = sorted(repr(c) for c in cells if not (isinstance(c, str) and _is_detection_cell(c)))
        if bad:
            raise ValueError(f"zone {self.id!r}: cells must be H3 res-{DETECTION_RESOLUTION} cell ids, got {', '.join(bad[:3])}")
        for name in ("active_from", "active_until"):
            if not _finite_number(getattr(self, name)):
                raise ValueError(f"zone {self.id!r}: {name} must be epoch seconds (a finite number), got {getattr(self, name)!r}")
        if not self.active_from < self.active_until:
            raise ValueError(f"zone {self.id!r}: active_from ({self.active_from!r}) must be before active_until ({self.active_until!r})")
        if self.threshold is not None and not (_finite_number(self.threshold) and self.threshold > 0):
            raise ValueError(f"zone {self.id!r}: threshold must be a finite number > 0 or null, got {self.threshold!r}")
        object.__setattr__(self, "cells", cells)
        object.__setattr__(self, "active_from", float(self.active_from))
        object.__setattr__(self, "active_until", float(self.active_until))
        if self.threshold is not None:
            object.__setattr__(self, "threshold", float(self.threshold))

    def active(self, t: float) -> bool:
        """Whether the zone is watched at event time ``t``."""
        return self.active_from <= t < self.active_until

    @classmethod
    def from_json(cls, obj: object) -> WatchedZone:
        """A zone from the gateway's JSON object (``id``, ``name``, ``cells``, ``active_from``, ``active_until``, ``threshold``).

        ``threshold`` may be null or absent; other keys (``kind``, the polygon,
        ...) are ignored. Raises ``ValueError`` naming what is missing or wrong.

        >>> WatchedZone.from_json({"id": "z1", "name": "Parade", "kind": "event", "cells": ["882aac941dfffff"],
        ...                        "active_from": 100, "active_until": 200.5, "threshold": None})
        WatchedZone(id='z1', name='Parade', cells=frozenset({'882aac941dfffff'}), active_from=100.0, active_until=200.5, threshold=None)
        """
        if not isinstance(obj, dict):
            raise ValueError(f"a zone must be a JSON object, got {type(obj).__name__}")
        missing = [k for k in ("id", "name", "cells", "active_from", "active_until") if k not in obj]
        if missing:
            raise ValueError(f"zone {obj.get('id')!r} lacks {', '.join(missing)}")
        if not isinstance(obj["cells"], list):
            raise ValueError(f"zone {obj['id']!r}: cells must be a JSON list of H3 cell ids, got {obj['cells']!r}")
        cells = cast(frozenset[str], obj["cells"])  # a list: __post_init__ makes it a frozenset and checks its cells
        return cls(obj["id"], obj["name"], cells, obj["active_from"], obj["active_until"], obj.get("threshold"))


#: A call in the windows: ``(t, cell, category)``, a plain tuple of atoms, which Python's garbage
#: collector stops tracking (a storm holds one per call; see ``detectors.surge.scan._Rec``).
_Rec = tuple[float, str, str]


@dataclass
class _Finding:
    """One zone and window evaluated at ``at``."""

    window_min: int
    at: float
    score: float
    p: float
    expected: float
    calls: list[_Rec]

    @property
    def observed(self) -> int:
        return len(self.calls)


@dataclass
class _Episode:
    id: str
    zone: WatchedZone
    started_at: float
    best: _Finding
    peak: int
    last_alive: float
    reported: set[str] = field(default_factory=set)
    #: when it was last evaluated without new calls in its zone (to decay and close)
    rescored_at: float = -math.inf


class ZoneWatch(Detector):
    """Poisson test of each active event zone over short windows, one alert per zone surge.

    Call :meth:`set_zones` with the zones to watch (again whenever they
    change), then :meth:`learn_one` and :meth:`advance` for each call in
    event-time order (or :meth:`process`, which does both), and :meth:`advance`
    with the event clock while the feed is quiet, so that alerts close and
    zones end.

    Parameters
    ----------
    threshold : float
        Score (``-log10 p``) at which a zone without its own threshold exceeds (> 0).
    windows_min : tuple of int
        Windows of the test, minutes (each >= 1; at least one).
    min_calls : int
        Fewest calls in a zone's window for it to exceed (>= 1).
    close_after_min : float
        Minutes without exceeding before a zone's alert closes (>= 0).
    baseline : ExpectedCounts or None
        The expected-count model; ``None`` for a default one of its own.
    learn_baseline : bool
        Whether :meth:`learn_one` teaches ``baseline``. False when the baseline
        is shared with a detector that learns it (the surge detector's, in the
        suite), so that no call is learnt twice.
    max_window_calls : int
        Most calls the windows hold (>= 1). Beyond it the oldest go early
        (counted in ``shed_calls``), so memory is bounded at any rate.
    """

    def __init__(
        self,
        threshold: float = 3.0,
        windows_min: tuple[int, ...] = (5, 15, 30),
        min_calls: int = 3,
        close_after_min: float = 20.0,
        baseline: ExpectedCounts | None = None,
        learn_baseline: bool = True,
        max_window_calls: int = MAX_WINDOW_CALLS,
    ) -> None:
        if not (_finite_number(threshold) and threshold > 0):
            raise ValueError(f"threshold must be a finite number > 0, got {threshold!r}")
        windows = tuple(windows_min) if isinstance(windows_min, (tuple, list)) else ()
        if not windows or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in windows):
            raise ValueError(f"windows_min must be a non-empty tuple of whole minutes >= 1, got {windows_min!r}")
        if isinstance(min_calls, bool) or not isinstance(min_calls, int) or min_calls < 1:
            raise ValueError(f"min_calls must be an integer >= 1, got {min_calls!r}")
        if not (_finite_number(close_after_min) and close_after_min >= 0):
            raise ValueError(f"close_after_min must be a finite number >= 0, got {close_after_min!r}")
        if baseline is not None and not isinstance(baseline, ExpectedCounts):
            raise ValueError(f"baseline must be an ExpectedCounts or None, got {type(baseline).__name__}")
        if not isinstance(learn_baseline, bool):
            raise ValueError(f"learn_baseline must be True or False, got {learn_baseline!r}")
        if baseline is None and not learn_baseline:
            raise ValueError("learn_baseline=False needs the baseline another detector learns (baseline=surge.baseline), got None")
        self.threshold = threshold
        self.windows_min = windows
        self.min_calls = min_calls
        self.close_after_min = close_after_min
        self.baseline = baseline if baseline is not None else ExpectedCounts()
        self.learn_baseline = learn_baseline
        self.max_window_calls = check_cap(max_window_calls)
        #: calls dropped from the windows early because they held ``max_window_calls``
        self.shed_calls = 0
        self._windows_desc = tuple(sorted(set(windows), reverse=True))
        self._horizon_s = 60.0 * self._windows_desc[0]
        self._zones: dict[str, WatchedZone] = {}
        self._zone_cells: dict[str, tuple[str, ...]] = {}  # sorted: sums over cells in a fixed order
        self._calls: list[_Rec] = []  # every call of the last max window, in time order
        self._by_cell: dict[str, list[_Rec]] = {}
        self._dirty: set[str] = set()
        self._active: set[str] = set()
        self._episodes: dict[str, _Episode] = {}  # by zone id
        self._now = -math.inf

    # ------------------------------------------------------------------ configuration

    def clone(self, new_params: dict[str, Any] | None = None) -> ZoneWatch:
        """A fresh watch with the same configuration, watching the same zones, having learnt nothing.

        An own baseline is cloned fresh; a shared one (``learn_baseline=False``)
        is kept, since another detector learns it. ``new_params`` overrides
        parameters, e.g. ``{"baseline": new_surge.baseline}`` for a cloned suite.
        """
        shared = {} if self.learn_baseline else {"baseline": self.baseline}
        fresh = super().clone({**shared, **(new_params or {})})
        fresh.set_zones(self._zones.values())
        return fresh

    def set_zones(self, zones: Iterable[WatchedZone]) -> None:
        """Watch these zones from now on, in place of the previous ones.

        An open alert of a zone no longer in the set, or whose window no longer
        covers the clock, closes at the next :meth:`advance`. Raises
        ``ValueError`` for anything but :class:`WatchedZone` s or a repeated id
        (and then keeps the previous zones).
        """
        new: dict[str, WatchedZone] = {}
        for i, z in enumerate(zones):
            if not isinstance(z, WatchedZone):
                raise ValueError(f"zones[{i}] must be a WatchedZone, got {type(z).__name__}")
            if z.id in new:
                raise ValueError(f"zones[{i}]: zone id {z.id!r} appears twice")
            new[z.id] = z
        self._zones = dict(sorted(new.items()))
        self._zone_cells = {zid: tuple(sorted(z.cells)) for zid, z in self._zones.items()}

    @property
    def zones(self) -> tuple[WatchedZone, ...]:
        """The watched zones, by id."""
        return tuple(self._zones.values())

    @property
    def ready(self) -> bool:
        """True once the baseline has warmed up (before that nothing scores or alerts)."""
        return self.baseline.ready

    def state_size(self) -> int:
        """Calls held in the windows, cells with calls, watched zones and open alerts (plus an own baseline's entries)."""
        own = self.baseline.state_size() if self.learn_baseline else 0
        return len(self._calls) + len(self._by_cell) + len(self._zones) + len(self._episodes) + own

    # ------------------------------------------------------------------ River verbs

    def learn_one(self, x: CallPoint) -> None:
        """Add a call to the windows (and to the baseline, if this watch learns it). Alerts come from :meth:`advance`."""
        t = float(x.t)
        if self.learn_baseline:
            self.baseline.learn_one(x)
        if t <= max(self._now, self._calls[-1][0] if self._calls else -math.inf) - self._horizon_s:
            return  # too old for every window
        call = (t, x.cell, x.category)
        insort_by_time(self._calls, call)
        insort_by_time(self._by_cell.setdefault(x.cell, []), call)
        self._dirty.add(x.cell)
        cutoff = shed_cutoff(self._calls, self.max_window_calls)
        if cutoff is not None:
            self.shed_calls += drop_expired(self._calls, self._by_cell, cutoff)

    def score_one(self, x: CallPoint) -> float:
        """Highest score, at ``x.t``, of the active zones containing ``x.cell`` over ``windows_min``, with ``x`` counted.

        Pure (nothing is learnt). 0.0 during warm-up, outside every active zone,
        and below ``min_calls``.
        """
        if not self.ready:
            return 0.0
        t = float(x.t)
        extra = (t, x.cell, x.category)
        best = 0.0
        for zid, z in self._zones.items():
            if z.active(t) and x.cell in z.cells:
                for f in self._evaluate(zid, t, extra):
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

        Closes the alerts of zones that ended or were removed, then evaluates the
        active zones that got calls since the last evaluation or just became
        active, and once a minute of event time those with an open alert. A
        ``now`` earlier than the clock is treated as the clock.
        """
        now = max(float(now), self._now)
        self._now = now
        self._expire(now)
        alerts: list[Alert] = []
        active = {zid for zid, z in self._zones.items() if z.active(now)}
        for zid in sorted(self._episodes):
            if zid not in active:
                gone = self._episodes.pop(zid)
                alerts.append(self._alert(gone, AlertState.CLOSED, now, self._gone_reason(gone, now)))
        if self.ready:
            # A zone with an open alert and no new call is re-scored once a minute of event
            # time (so that it closes), not on every call elsewhere (a storm made that the
            # bulk of the detectors' work).
            for zid in sorted(active):
                ep = self._episodes.get(zid)
                if zid not in self._active or not self._dirty.isdisjoint(self._zones[zid].cells):
                    alerts += self._lifecycle(zid, now)
                elif ep is not None and now - ep.rescored_at >= _RESCORE_S:
                    ep.rescored_at = now
                    alerts += self._lifecycle(zid, now)
        self._active = active if self.ready else set()  # once ready, every active zone is evaluated once
        self._dirty.clear()
        return alerts

    # ------------------------------------------------------------------ internals

    def _expire(self, now: float) -> None:
        drop_expired(self._calls, self._by_cell, now - self._horizon_s)

    def _evaluate(self, zone_id: str, now: float, extra: _Rec | None = None) -> list[_Finding]:
        """Findings of one zone for each window (none below ``min_calls``), longest window first."""
        cells = self._zone_cells[zone_id]
        start = now - self._horizon_s
        calls = [c for cell in cells for c in self._by_cell.get(cell, ()) if start < c[0] <= now]
        if extra is not None and extra[1] in self._zones[zone_id].cells:
            calls.append(extra)
        calls.sort()
        out = []
        for w in self._windows_desc:
            start = now - 60.0 * w
            calls = [c for c in calls if c[0] > start]
            if len(calls) < self.min_calls:
                break
            expected = self.baseline.expected(cells, start, now)
            score = min(max(0.0, -log10_poisson_sf(len(calls), expected)), MAX_SCORE)
            out.append(_Finding(w, now, score, 10.0 ** (-score), expected, calls))
        return out

    def _lifecycle(self, zone_id: str, now: float) -> list[Alert]:
        """Open, update or close the alert of one active zone from its evaluation at ``now``."""
        zone = self._zones[zone_id]
        threshold = self.threshold if zone.threshold is None else zone.threshold
        findings = [f for f in self._evaluate(zone_id, now) if f.score >= threshold]
        best = max(findings, key=_rank) if findings else None
        ep = self._episodes.get(zone_id)
        if ep is None:
            if best is None:
                return []
            started = math.floor(best.calls[0][0] / 60.0) * 60.0
            ep = _Episode(f"zone:{zone_id}:{int(started)}", zone, started, best, best.observed, now)
            self._episodes[zone_id] = ep
            state = AlertState.OPEN
        elif best is not None:
            ep.zone, ep.last_alive = zone, now
            if best.observed <= ep.peak and _cells(best) <= ep.reported:
                return []
            ep.best = best  # grown: more calls than ever reported, or calls in cells it never reported
            state = AlertState.UPDATE
        elif now - ep.last_alive >= 60.0 * self.close_after_min:
            del self._episodes[zone_id]
            reason = f"closed: event zone '{zone.name}' has not scored {threshold:g} for {self.close_after_min:g} min"
            return [self._alert(ep, AlertState.CLOSED, now, reason)]
        else:
            return []  # quiet, but not for long enough to close
        ep.peak = max(ep.peak, best.observed)
        ep.reported |= _cells(best)
        return [self._alert(ep, state, now)]

    def _gone_reason(self, ep: _Episode, now: float) -> str:
        zone = self._zones.get(ep.zone.id)
        if zone is None:
            return f"closed: event zone '{ep.zone.name}' is no longer watched (removed)"
        if now >= zone.active_until:
            return f"closed: event zone '{zone.name}' ended"
        return f"closed: event zone '{zone.name}' is not active now (its window was moved)"

    def _alert(self, ep: _Episode, state: AlertState, now: float, reason: str | None = None) -> Alert:
        f = ep.best
        categories: dict[str, int] = {}
        per_cell: dict[str, int] = {}
        for c in f.calls:
            categories[c[2]] = categories.get(c[2], 0) + 1
            per_cell[c[1]] = per_cell.get(c[1], 0) + 1
        if reason is None:
            reason = f"{f.observed} calls in {f.window_min} min in event zone '{ep.zone.name}', {f.expected:.2g} expected (p = {f.p:.0e})"
        return Alert(
            id=ep.id,
            kind=AlertKind.ZONE_SURGE,
            state=state,
            started_at=ep.started_at,
            at=now,
            cells=tuple(sorted(per_cell, key=lambda c: (-per_cell[c], c))),
            window_min=f.window_min,
            observed=f.observed,
            expected=round(f.expected, 3),
            score=round(f.score, 3),
            p_value=f.p,
            categories=dict(sorted(categories.items(), key=lambda kv: (-kv[1], kv[0]))),
            model=MODEL,
            model_version=MODEL_VERSION,
            reason=reason,
            zone=ep.zone.id,
        )


# ---------------------------------------------------------------------- helpers

#: seconds of event time between re-scorings of a zone whose open alert got no call
_RESCORE_S = 60.0


def _rank(f: _Finding) -> tuple[float, int]:
    return (f.score, -f.window_min)


def _cells(f: _Finding) -> set[str]:
    return {c[1] for c in f.calls}


def _finite_number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _is_detection_cell(cell: str) -> bool:
    return bool(h3.is_valid_cell(cell)) and h3.get_resolution(cell) == DETECTION_RESOLUTION
