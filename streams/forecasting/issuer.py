"""The forecaster and its monitor as the detection runner holds them: fed every call, a set due every 15 minutes (pure).

:class:`ForecastIssuer` learns every call the detectors learn
(:meth:`~ForecastIssuer.learn_one`) and, when the event-time clock crosses a
quarter hour (:00, :15, :30, :45: local quarter hours too, every time zone's
offset being a whole number of quarter hours), once the forecaster is
:meth:`~detectors.forecast.ShiftForecaster.ready`, takes a snapshot of it (a
pickle: about a millisecond for a county's forecaster) before learning the
call that crossed it: the set is made from what was known at the quarter hour.

Building the set from the snapshot (:func:`make_set`, a few hundred
milliseconds) is left to the caller, who may do it in a thread while calls go
on being learnt; it calls :meth:`~ForecastIssuer.take` for the snapshot due and
:meth:`~ForecastIssuer.published` with the set once published, which hands its
windows to the :class:`~detectors.forecast_monitor.ForecastMonitor`. One
snapshot waits at a time: a newer one replaces it (a fast replay of history
makes a set as often as the builder keeps up, not one per quarter hour;
``forecast_sets_skipped_total`` counts the others).

Planned events with an expected extra load (:class:`EventLoad`, from the event
zones) are added to each snapshot, not to the forecaster itself, so a zone
edited or removed takes effect in the next set (the forecaster can add an
event, not take one back); the price is that the calls of an event count as
ordinary errors when the forecaster learns its dispersion.

The snapshot is owed rather than taken at once: the calls after the quarter
hour are held (not yet learnt by the forecaster) until something reads the
issuer (:meth:`~ForecastIssuer.take`, a checkpoint, the metrics, the
forecaster itself), and a call crossing the next quarter hour first replaces
it. A replay's batch crossing a hundred quarter hours pickles the forecaster
once (the last quarter hour's, the one a caller taking after each batch
would get), not a hundred times: about 180 µs a call on a county's history.

A snapshot waiting is not pickled with the runner's checkpoint: after a
restart the next quarter hour makes the next set.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import h3

from detectors.forecast import ShiftForecaster
from detectors.forecast_monitor import ForecastMonitor
from detectors.types import CallPoint
from streams.forecasting.build import Places, build_set, monitored

#: Seconds of event time between two sets.
ISSUE_EVERY_S = 900.0
#: Cells without a call for this long are no longer areas of the set (the forecaster's units' memory).
RECENT_S = 28 * 86400.0


@dataclass(frozen=True)
class EventLoad:
    """A planned event's expected extra calls per hour in its cells (res 6 to 8) during ``[start, end)``."""

    id: str
    start: float
    end: float
    cells: frozenset[str]
    per_hour: float


@dataclass(frozen=True)
class Issue:
    """A set due: the event time it is issued at, and what it is made from."""

    issued: float
    #: the forecaster at ``issued``, pickled
    forecaster: bytes
    cells7: tuple[str, ...]
    seen8: tuple[str, ...]
    monitor: dict[str, Any]
    events: tuple[EventLoad, ...]


def make_set(issue: Issue, places: Places, made: float) -> dict[str, Any]:
    """The forecast set of ``issue`` (:func:`streams.forecasting.build.build_set`), its events added to the snapshot."""
    forecaster = pickle.loads(issue.forecaster)  # our own snapshot, taken in this process
    for e in issue.events:
        forecaster.add_event(e.start, e.end, e.cells, e.per_hour)
    return build_set(forecaster, issue.issued, places, cells7=issue.cells7, seen8=issue.seen8, monitor=issue.monitor, made=made)


class ForecastIssuer:
    """A :class:`~detectors.forecast.ShiftForecaster` and a :class:`~detectors.forecast_monitor.ForecastMonitor`, fed
    every call, with a snapshot due every ``every_s`` seconds of event time (see the module's text).

    >>> import random
    >>> rng, t = random.Random(3), 1_699_833_600.0
    >>> issuer = ForecastIssuer(ShiftForecaster(warmup_calls=200, warmup_hours=24))
    >>> while t < 1_699_833_600.0 + 3 * 86400:
    ...     t += rng.expovariate(10 / 3600)
    ...     issuer.learn_one(CallPoint(t=t, cell="882aac941dfffff", category="EMS"))
    >>> issue = issuer.take()
    >>> issue.issued % 900, issue.issued <= t, issue.cells7
    (0.0, True, ('872aac941ffffff',))
    >>> s = make_set(issue, Places("Town", "UTC"), made=0.0)
    >>> issuer.published(s, seconds=0.1)
    >>> s["areas"]["jurisdiction"]["by_horizon"]["8"]["mean"] > 0, issuer.metrics()["forecast_sets_total"]
    (True, 1)
    """

    def __init__(self, forecaster: ShiftForecaster | None = None, monitor: ForecastMonitor | None = None, every_s: float = ISSUE_EVERY_S):
        if not (isinstance(every_s, int | float) and math.isfinite(every_s) and every_s > 0):
            raise ValueError(f"every_s must be a finite number of seconds > 0, got {every_s!r}")
        self._forecaster = forecaster if forecaster is not None else ShiftForecaster()
        self._monitor = monitor if monitor is not None else ForecastMonitor()
        self.every_s = every_s
        self.events: tuple[EventLoad, ...] = ()
        self._next: float | None = None  # the next quarter hour to issue at
        self._day: int | None = None
        self._seen7: dict[str, float] = {}
        self._seen8: dict[str, float] = {}
        self._due: Issue | None = None
        #: the quarter hour whose snapshot is owed (taken from the state as it stands, before the calls held)
        self._owed: float | None = None
        #: calls learnt after the quarter hour owed, not yet by the forecaster, the monitor and the cells seen
        self._held: list[CallPoint] = []
        self.sets = 0
        self.skipped = 0
        self.last_issued: float | None = None
        self.last_build_s = 0.0

    def __getstate__(self) -> dict[str, Any]:
        self._settle()
        state = self.__dict__.copy()
        state["_due"] = None  # a snapshot waiting is not part of the checkpoint
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name in ("forecaster", "monitor"):  # a checkpoint from before the snapshot was owed
            if name in state:
                state["_" + name] = state.pop(name)
        state.setdefault("_owed", None)
        state.setdefault("_held", [])
        self.__dict__.update(state)

    @property
    def forecaster(self) -> ShiftForecaster:
        """The forecaster, having learnt every call given to :meth:`learn_one`."""
        self._settle()
        return self._forecaster

    @property
    def monitor(self) -> ForecastMonitor:
        """The forecast monitor, having learnt every call given to :meth:`learn_one`."""
        self._settle()
        return self._monitor

    # ------------------------------------------------------------ input

    def learn_one(self, x: CallPoint) -> None:
        """Take the snapshot due if ``x`` crosses a quarter hour, then learn ``x`` (forecaster, monitor, cells seen).

        The snapshot is owed, not taken, until something reads it or the state
        (:meth:`take`, a checkpoint, ...): the calls after it are held, and a
        call crossing the next quarter hour replaces it, as a newer snapshot
        replaces one not taken (counted in ``forecast_sets_skipped_total``). A
        batch of a replay crossing a hundred quarter hours pickles the
        forecaster once, not a hundred times; what is taken is the same.
        """
        t = float(x.t)
        if self._owed is not None:
            if self._next is not None and t < self._next:
                self._held.append(x)
                return
            # x crosses the next quarter hour: its snapshot replaces the one owed (a forecaster once ready stays
            # ready: ExpectedCounts.ready counts calls and hours learnt, which only grow)
            self._owed = None
            self.skipped += 1
            self._learn_held()
        self._clock(t)
        if self._owed is not None:
            self._held.append(x)
            return
        self._learn(x, t)

    def _learn(self, x: CallPoint, t: float) -> None:
        self._forecaster.learn_one(x)
        self._monitor.learn_one(x)
        self._see(x.cell, t)

    def _learn_held(self) -> None:
        held, self._held = self._held, []
        for x in held:
            self._learn(x, float(x.t))

    def _settle(self) -> None:
        """Take the snapshot owed, then learn the calls held after it."""
        if self._owed is None:
            return
        quarter, self._owed = self._owed, None
        self._due = self._snapshot(quarter)
        self._learn_held()

    def _snapshot(self, quarter: float) -> Issue:
        """The set due at ``quarter``, from the state as it stands."""
        return Issue(
            issued=quarter,
            forecaster=pickle.dumps(self._forecaster, protocol=pickle.HIGHEST_PROTOCOL),
            cells7=tuple(sorted(self._seen7)),
            seen8=tuple(sorted(self._seen8)),
            monitor=self._monitor.summary(),
            events=tuple(e for e in self.events if e.end > quarter),
        )

    def learn_history(self, points: Iterable[CallPoint]) -> None:
        """Learn past calls (a bootstrap, event-time order): the forecaster and the cells seen learn them, no set is made;
        the first call after them makes one."""
        self._settle()
        t: float | None = None
        for x in points:
            t = float(x.t)
            self._forecaster.learn_one(x)
            self._see(x.cell, t)
        if t is not None:
            self._next = math.floor(t / self.every_s) * self.every_s + self.every_s

    def advance(self, t: float) -> None:
        """The clock moves on without a call (a silent feed, live): sets stay due every quarter hour, windows are scored."""
        self._settle()
        self._clock(t)
        self._settle()
        self._monitor.advance(t)

    def set_events(self, events: Iterable[EventLoad]) -> None:
        """Expect these planned events' extra loads from the next set on, in place of the previous ones."""
        self._settle()
        self.events = tuple(events)

    # ------------------------------------------------------------ output

    def take(self) -> Issue | None:
        """The snapshot due (at most one, the newest), or None; taking it clears it."""
        self._settle()
        due, self._due = self._due, None
        return due

    def published(self, forecast_set: dict[str, Any], seconds: float) -> None:
        """Call once a set is published (``seconds``: how long it took to build): its windows are watched by the monitor."""
        self._settle()
        for level, key, horizon, f in monitored(forecast_set):
            self._monitor.watch(level, key, horizon, f)
        self.sets += 1
        self.last_issued = float(forecast_set["issued"])
        self.last_build_s = seconds

    def metrics(self) -> dict[str, float]:
        """The sets' counters and the monitor's figures, for ``/metrics``."""
        self._settle()
        out: dict[str, float] = {
            "forecast_sets_total": self.sets,
            "forecast_sets_skipped_total": self.skipped,
            "forecast_build_seconds": round(self.last_build_s, 4),
            "forecast_windows_dropped_total": self.monitor.dropped,
        }
        if self.last_issued is not None:
            out["forecast_issued_seconds"] = self.last_issued
        return {**out, **self.monitor.metrics()}

    # ------------------------------------------------------------ the clock

    def _see(self, cell: str, t: float) -> None:
        res = int(h3.get_resolution(cell))
        if res >= 7:
            self._seen7[cell if res == 7 else str(h3.cell_to_parent(cell, 7))] = t
        if res == 8:
            self._seen8[cell] = t

    def _clock(self, t: float) -> None:
        quarter = math.floor(t / self.every_s) * self.every_s
        if self._next is None:
            self._next = quarter + self.every_s
            return
        if t < self._next:
            return
        self._next = quarter + self.every_s
        day = int(t // 86400)
        if day != self._day:
            self._day = day
            for seen in (self._seen7, self._seen8):
                for cell in [c for c, at in seen.items() if at < t - RECENT_S]:
                    del seen[cell]
        if not self._forecaster.ready():
            return
        if self._due is not None:
            self.skipped += 1
            self._due = None
        self._owed = quarter  # taken by _settle from the state as it stands now
