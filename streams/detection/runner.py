"""Feed the detectors from the worker's batches (pure: bytes in, alerts out).

The counting agent publishes, for every batch it commits, one message on
``{prefix}.detector-input`` with the calls it accepted (event time, res-8 cell,
category, priority, and where each came from). :class:`DetectionRunner` turns
those messages into :class:`detectors.types.CallPoint` s, drops the copies a
redelivery can cause (by source partition and offset), restores event-time
order by the source partitions' low watermark (:class:`streams.detection.reorder.WatermarkMerge`,
told by each message which source partitions are caught up),
and runs the detector suite.
The Faust agent around it only moves bytes.

Event zones come from the gateway's records in Redis (``P:zones``, see
:mod:`streams.counting.keys`): :func:`parse_zones` turns the event-kind records into
:class:`detectors.zones.WatchedZone` s and :meth:`DetectionRunner.set_zones`
hands them to the suite's zone watch.

The runner also owns the forecaster (:class:`streams.forecasting.issuer.ForecastIssuer`:
a :class:`detectors.forecast.ShiftForecaster` and its monitor), fed every call
the detectors are fed, in the same order, and pickled with them in the
checkpoint; a forecast set is due every 15 minutes of event time
(:meth:`DetectionRunner.forecasts_due`). The event zones' expected extra loads
(an optional ``expected_calls_per_hour`` in the zone's record) reach it through
:func:`parse_event_loads`.
"""

from __future__ import annotations

import json
import math
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from detectors.anomaly import MixAnomalyDetector
from detectors.baseline import ExpectedCounts
from detectors.calibration import BudgetControl
from detectors.drift import ResidualDriftMonitor
from detectors.forecast import ShiftForecaster
from detectors.outage import FeedMonitor
from detectors.suite import DetectorSuite
from detectors.surge import SurgeDetector
from detectors.types import Alert, AlertState, CallPoint
from detectors.zones import WatchedZone, ZoneWatch
from streams.detection.reorder import WatermarkMerge
from streams.forecasting.issuer import EventLoad, ForecastIssuer, Issue
from streams.jurisdiction import Profile

INPUT_VERSION = 1


Point = tuple[int, int, float, str, str, int | None]


def encode_points(points: list[Point], *, status: dict[int, bool] | None = None, timing: dict[str, Any] | None = None) -> bytes:
    """One detector-input message: ``[[partition, offset, t, cell, category, priority], ...]``.

    ``status`` (optional): the source partitions the counting worker reads, each
    caught up (True: every record up to the broker's end of its log is published
    on the detector input, by this message or an earlier one) or behind (False)
    when the message was sent (see :class:`streams.detection.reorder.WatermarkMerge`).
    ``timing`` (optional, ``WF_STAGE_TIMING``): the counting agent's stamps
    (:mod:`streams.detection.stages`): ``in`` and ``closed`` per point, ``sending``.
    A reader that knows neither key ignores them.

    >>> decode_points(encode_points([(2, 17, 1453564931.0, "882aac95d1fffff", "EMS", None)]))
    [(2, 17, 1453564931.0, '882aac95d1fffff', 'EMS', None)]
    >>> m = decode_message(encode_points([], status={0: True, 3: False}))
    >>> m.points, m.status, m.timing
    ([], {0: True, 3: False}, None)
    """
    msg: dict[str, Any] = {"v": INPUT_VERSION, "points": points}
    if status is not None:
        msg["status"] = [[p, int(caught_up)] for p, caught_up in sorted(status.items())]
    if timing is not None:
        msg["timing"] = timing
    return json.dumps(msg, separators=(",", ":")).encode()


@dataclass
class DetectorInput:
    """One decoded detector-input message (see :func:`encode_points`)."""

    points: list[Point]
    #: source partition -> caught up (empty: the message says nothing of them)
    status: dict[int, bool]
    timing: dict[str, Any] | None = None


def decode_message(raw: bytes) -> DetectorInput:
    """The points, partitions' status and timing of one detector-input message; ValueError for another version."""
    msg = json.loads(raw)
    if msg.get("v") != INPUT_VERSION:
        raise ValueError(f"detector input version {msg.get('v')!r} is not {INPUT_VERSION}")
    # interned: a storm holds thousands of calls per cell, and a checkpoint pickles one shared string per cell, not one per call
    points = [(int(p), int(o), float(t), sys.intern(str(c)), sys.intern(str(k)), pr) for p, o, t, c, k, pr in msg["points"]]
    status = {int(p): bool(c) for p, c in msg.get("status", ())}
    timing = msg.get("timing")
    return DetectorInput(points, status, timing if isinstance(timing, dict) else None)


def decode_points(raw: bytes) -> list[Point]:
    return decode_message(raw).points


def default_suite(
    timezone: str = "UTC",
    holidays: Iterable[date] = (),
    *,
    thresholds: tuple[float, float] | None = None,
    budget: float | None = None,
) -> DetectorSuite:
    """The worker's detectors: surges, feed outages, event zones (on the surge baseline) and the call-mix anomaly.

    ``timezone`` is the jurisdiction's IANA zone (its profile's): the expected
    counts learn their hour-of-week rhythm on that local clock; ``holidays``
    (local dates) are expected like Sundays. ``thresholds`` are the surge
    detector's ``(threshold, jurisdiction_threshold)`` (the shipped ones when
    None; a calibration's, :func:`detectors.calibration.calibrate`); an alert
    closes below the lower of 3.0 and them. ``budget`` (alerts a day) keeps them
    at that rate online (:class:`detectors.calibration.BudgetControl`, its floor
    no higher than the thresholds given); None leaves them fixed.

    >>> default_suite("America/Los_Angeles").surge.baseline.timezone
    'America/Los_Angeles'
    >>> s = default_suite(thresholds=(4.5, 2.5), budget=1.0).surge
    >>> s.threshold, s.jurisdiction_threshold, s.close_threshold, s.control.floor, s.control.budget_per_day
    (4.5, 2.5, 2.5, (4.0, 2.5), 1.0)
    """
    holidays = tuple(holidays)
    surge_options: dict[str, Any] = {}
    if thresholds is not None:
        local, county = thresholds
        default_close = SurgeDetector().close_threshold
        surge_options = {"threshold": local, "jurisdiction_threshold": county, "close_threshold": min(default_close, local, county)}
    if budget is not None:
        floor = BudgetControl().floor
        if thresholds is not None:
            floor = (min(floor[0], thresholds[0]), min(floor[1], thresholds[1]))
        surge_options["control"] = BudgetControl(budget_per_day=budget, floor=floor)
    surge = SurgeDetector(baseline=ExpectedCounts(timezone=timezone, holidays=holidays), **surge_options)
    zones = ZoneWatch(baseline=surge.baseline, learn_baseline=False)
    feed = FeedMonitor(baseline=ExpectedCounts(timezone=timezone, holidays=holidays))
    return DetectorSuite(surge=surge, feed=feed, zones=zones, extra=(MixAnomalyDetector(),), score=False)


def profile_suite(profile: Profile, thresholds: tuple[float, float] | None = None) -> DetectorSuite:
    """:func:`default_suite` on the jurisdiction's clock, its special days of kind ``holiday`` expected like Sundays,
    its surge thresholds kept online at its false-alert budget (``[detection] false_alerts_per_day``), from
    ``thresholds`` (a calibration's, at bootstrap) or the shipped ones.

    >>> import datetime
    >>> from streams.jurisdiction import Profile, SpecialDay
    >>> p = Profile(id="x", name="X", timezone="America/Chicago", false_alerts_per_day=2.0,
    ...             special_days=(SpecialDay(datetime.date(2016, 7, 4), "Independence Day", "holiday"),
    ...                           SpecialDay(datetime.date(2016, 7, 3), "Fireworks", "event")))
    >>> suite = profile_suite(p)
    >>> suite.surge.baseline.holidays, suite.surge.control.budget_per_day
    ((datetime.date(2016, 7, 4),), 2.0)
    """
    holidays = [d.date for d in profile.special_days if d.kind == "holiday"]
    return default_suite(profile.timezone, holidays, thresholds=thresholds, budget=profile.false_alerts_per_day)


def profile_forecaster(profile: Profile) -> ShiftForecaster:
    """The worker's forecaster: on the jurisdiction's clock, its special days of kind ``holiday`` expected like Sundays
    (as the detectors' baseline expects them; an ``event`` day is not a Sunday).

    >>> from streams.jurisdiction import Profile
    >>> profile_forecaster(Profile(id="x", name="X", timezone="America/Chicago")).timezone
    'America/Chicago'
    """
    return ShiftForecaster(profile.timezone, [d.date for d in profile.special_days if d.kind == "holiday"])


def parse_event_loads(entries: Iterable[dict[str, Any]]) -> list[EventLoad]:
    """The expected extra loads of the event zones among the gateway's zone records.

    A zone record may carry ``expected_calls_per_hour`` (a number >= 0): the
    extra calls its event is expected to bring each hour it is active. Zones
    without it (or with 0), not of kind ``event``, or malformed (see
    :func:`parse_zones`, which reports them) add nothing.

    >>> cell = "882aac941dfffff"
    >>> parse_event_loads([
    ...     {"id": "a", "name": "Parade", "kind": "event", "cells": [cell], "active_from": 0, "active_until": 3600,
    ...      "expected_calls_per_hour": 4},
    ...     {"id": "b", "name": "Fair", "kind": "event", "cells": [cell], "active_from": 0, "active_until": 60},
    ... ])
    [EventLoad(id='a', start=0.0, end=3600.0, cells=frozenset({'882aac941dfffff'}), per_hour=4.0)]
    """
    loads: list[EventLoad] = []
    for entry in entries:
        rate = entry.get("expected_calls_per_hour") if isinstance(entry, dict) and entry.get("kind") == "event" else None
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate < math.inf:
            continue
        try:
            zone = WatchedZone.from_json(entry)
        except ValueError:
            continue  # parse_zones reports it
        loads.append(EventLoad(zone.id, zone.active_from, zone.active_until, zone.cells, float(rate)))
    return loads


def parse_zones(entries: Iterable[dict[str, Any]]) -> tuple[list[WatchedZone], list[str]]:
    """The event zones among the gateway's zone records, and one line per record skipped as malformed.

    Records of another ``kind`` (partner zones) are left out silently; a
    record that is not a valid zone is left out with the reason.

    >>> cell = "882aac941dfffff"
    >>> zones, problems = parse_zones([
    ...     {"id": "a", "name": "Parade", "kind": "event", "cells": [cell], "active_from": 0, "active_until": 60, "threshold": None},
    ...     {"id": "b", "name": "Agency", "kind": "partner", "cells": [cell]},
    ...     {"id": "c", "name": "Fair", "kind": "event", "cells": [cell], "active_from": 60, "active_until": 0},
    ... ])
    >>> [z.id for z in zones], problems
    (['a'], ["zone 'c': active_from (60) must be before active_until (0)"])
    """
    zones: dict[str, WatchedZone] = {}
    problems: list[str] = []
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("kind") != "event":
            if not isinstance(entry, dict):
                problems.append(f"a zone record must be a JSON object, got {type(entry).__name__}")
            continue
        try:
            zone = WatchedZone.from_json(entry)
        except ValueError as exc:
            problems.append(str(exc))
            continue
        if zone.id in zones:
            problems.append(f"zone {zone.id!r} appears twice; the first is kept")
            continue
        zones[zone.id] = zone
    return list(zones.values()), problems


@dataclass
class DetectionRunner:
    """Detector suite plus de-duplication and event-time ordering.

    Call :meth:`feed` with each detector-input message; it returns the alert
    lifecycle records (open / update / closed) produced, in order. Call
    :meth:`set_zones` whenever the event zones change.
    """

    suite: DetectorSuite = field(default_factory=default_suite)
    #: drift of the expected-count model (hourly jurisdiction residuals) and alert rates per model
    drift: ResidualDriftMonitor = field(default_factory=ResidualDriftMonitor)
    #: event-time disorder tolerated within one source partition, seconds
    reorder_s: float = 0.0
    #: wall-clock seconds after which a silent source partition no longer holds the others back (one the counting agent does not report)
    partition_idle_s: float = 2.0
    #: source partitions of the calls topic (the worker's WF_PARTITIONS); 0 if unknown
    partitions: int = 0
    #: wall-clock seconds without input after which the buffer is flushed and
    #: the event clock runs on with the wall clock (a silent feed is news too)
    idle_s: float = 30.0
    counters: Counter[str] = field(default_factory=Counter)
    #: with ``WF_STAGE_TIMING``: the points run since the caller last took them (not checkpointed; None: not kept)
    trace: list[CallPoint] | None = None
    #: the forecaster and its monitor, fed every call the detectors are fed
    forecasting: ForecastIssuer = field(default_factory=ForecastIssuer)
    #: the journal (:class:`streams.detection.journal.Journal`) that stamped this runner's checkpoint, and the sequence
    #: number of the last entry it had seen (None, -1: not stamped, or a checkpoint from before journals)
    journal_id: str | None = None
    journal_seq: int = -1
    _seen: dict[int, int] = field(default_factory=dict)
    _last_t: float | None = None
    _last_wall: float | None = None
    _hour: int | None = None
    _hour_calls: int = 0
    _merge: WatermarkMerge[CallPoint] = field(init=False)

    def __post_init__(self) -> None:
        self._merge = WatermarkMerge(self.reorder_s, self.partition_idle_s, self.partitions)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("trace", None)  # the stage timing's, not the detectors'
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "forecasting" not in state:
            # a checkpoint from before the forecaster: one that starts now, on the detectors' clock and holidays
            baseline = state["suite"].surge.baseline
            state["forecasting"] = ForecastIssuer(ShiftForecaster(baseline.timezone, baseline.holidays))
        self.__dict__.update(state)

    def feed(self, raw: bytes, wall: float) -> list[Alert]:
        """Process one detector-input message received at wall-clock time ``wall``.

        Its points are merged with what is held, the partitions' status it
        carries is applied, then what every active partition has reached is
        released (a message is one batch: its points need no order among themselves).
        """
        msg = decode_message(raw)
        self._last_wall = wall
        merge = self._merge
        late = 0
        for partition, offset, t, cell, category, priority in msg.points:
            if offset <= self._seen.get(partition, -1):
                self.counters["detector_input_duplicates_total"] += 1
                continue
            self._seen[partition] = offset
            self._last_t = t if self._last_t is None else max(self._last_t, t)
            late += merge.add(partition, t, CallPoint(t=t, cell=cell, category=category, priority=priority), wall)
        for partition, caught_up in msg.status.items():
            merge.report(partition, caught_up, wall)
        self.counters["detector_input_late_total"] += late
        return self._run(merge.release(wall))

    def tick(self, wall: float) -> list[Alert]:
        """Call periodically. After ``idle_s`` without input, flush the buffer and let the
        event clock follow the wall clock from the last event, so outages are seen live
        (not while replaying history: event time far behind the wall clock)."""
        alerts = self._run(self._merge.poll(wall))
        if self._last_wall is None or self._last_t is None or wall - self._last_wall < self.idle_s:
            return alerts
        alerts += self._run(self._merge.flush())
        if self._last_t < wall - self._merge.live_s:
            return alerts  # replaying history: a pause in the input is the worker's, not the feed's
        now = self._last_t + (wall - self._last_wall)
        self.forecasting.advance(now)
        return alerts + self.suite.advance(now)

    def flush(self) -> list[Alert]:
        """Run what the reorder buffer still holds (at shutdown)."""
        return self._run(self._merge.flush())

    def set_zones(self, zones: Iterable[WatchedZone]) -> None:
        """Watch these event zones from now on, in place of the previous ones (see :meth:`ZoneWatch.set_zones`).

        The suite must have a zone watch (:func:`default_suite` has one); a
        :class:`ValueError` says so otherwise.
        """
        if self.suite.zones is None:
            raise ValueError("the detector suite has no zone watch (DetectorSuite(zones=None)): it cannot watch event zones")
        self.suite.zones.set_zones(zones)

    def set_event_loads(self, loads: Iterable[EventLoad]) -> None:
        """Forecast these planned events' extra loads from the next set on, in place of the previous ones."""
        self.forecasting.set_events(loads)

    def forecasts_due(self) -> Issue | None:
        """The forecast set due (the forecaster's snapshot at the last quarter hour crossed), or None; taking it clears it."""
        return self.forecasting.take()

    def shed(self) -> dict[str, int]:
        """Calls each windowed detector dropped early because its windows held their cap (``max_window_calls``)."""
        out = {"surge": self.suite.surge.shed_calls}
        if self.suite.zones is not None:
            out["zones"] = self.suite.zones.shed_calls
        return out

    def metrics(self) -> dict[str, float]:
        """Counters of the runner, calls shed, per-model error, drift and alert rate, and the surge thresholds in force."""
        shed = {f"detector_calls_shed_total|{name}": n for name, n in self.shed().items()}
        surge = self.suite.surge
        thresholds = {"surge_threshold|local": surge.threshold, "surge_threshold|jurisdiction": surge.jurisdiction_threshold}
        return {**self.counters, **shed, **self.drift.metrics(), **thresholds, **self.forecasting.metrics()}

    def _run(self, points: list[CallPoint]) -> list[Alert]:
        alerts: list[Alert] = []
        if self.trace is not None:
            self.trace += points
        for point in points:
            self._track_hour(point.t)
            alerts += self.suite.process(point)
            self.forecasting.learn_one(point)
            self.drift.record_time(point.t)
        for a in alerts:
            if a.state is AlertState.OPEN:
                self.drift.record_alert(a.model, a.at)
        self.counters["detector_points_total"] += len(points)
        return alerts

    def _track_hour(self, t: float) -> None:
        """Feed the drift monitor one residual per closed hour: calls seen minus calls expected."""
        hour = int(t // 3600)
        if self._hour is None:
            self._hour = hour
        if hour > self._hour:
            baseline = self.suite.surge.baseline
            if baseline.ready:
                expected = baseline.total(self._hour * 3600.0, (self._hour + 1) * 3600.0)
                self.drift.update("expected-counts", self._hour_calls - expected)
            self._hour, self._hour_calls = hour, 0
        self._hour_calls += 1
