"""Feed the detectors from the worker's batches (pure: bytes in, alerts out).

The counting agent publishes, for every batch it commits, one message on
``{prefix}.detector-input`` with the calls it accepted (event time, res-8 cell,
category, priority, and where each came from). :class:`DetectionRunner` turns
those messages into :class:`detectors.types.CallPoint` s, drops the copies a
redelivery can cause (by source partition and offset), restores event-time
order (:class:`streams.reorder.ReorderBuffer`), and runs the detector suite.
The Faust agent around it only moves bytes.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

from detectors.anomaly import MixAnomalyDetector
from detectors.drift import ResidualDriftMonitor
from detectors.suite import DetectorSuite
from detectors.types import Alert, AlertState, CallPoint
from streams.reorder import ReorderBuffer

INPUT_VERSION = 1


def encode_points(points: list[tuple[int, int, float, str, str, int | None]]) -> bytes:
    """One detector-input message: ``[[partition, offset, t, cell, category, priority], ...]``.

    >>> decode_points(encode_points([(2, 17, 1453564931.0, "882aac95d1fffff", "EMS", None)]))
    [(2, 17, 1453564931.0, '882aac95d1fffff', 'EMS', None)]
    """
    return json.dumps({"v": INPUT_VERSION, "points": points}, separators=(",", ":")).encode()


def decode_points(raw: bytes) -> list[tuple[int, int, float, str, str, int | None]]:
    msg = json.loads(raw)
    if msg.get("v") != INPUT_VERSION:
        raise ValueError(f"detector input version {msg.get('v')!r} is not {INPUT_VERSION}")
    return [(int(p), int(o), float(t), str(c), str(k), pr) for p, o, t, c, k, pr in msg["points"]]


@dataclass
class DetectionRunner:
    """Detector suite plus de-duplication and event-time ordering.

    Call :meth:`feed` with each detector-input message; it returns the alert
    lifecycle records (open / update / closed) produced, in order.
    """

    suite: DetectorSuite = field(default_factory=lambda: DetectorSuite(extra=(MixAnomalyDetector(),), score=False))
    #: drift of the expected-count model (hourly jurisdiction residuals) and alert rates per model
    drift: ResidualDriftMonitor = field(default_factory=ResidualDriftMonitor)
    reorder_s: float = 120.0
    #: wall-clock seconds without input after which the buffer is flushed and
    #: the event clock runs on with the wall clock (a silent feed is news too)
    idle_s: float = 30.0
    counters: Counter = field(default_factory=Counter)
    _seen: dict[int, int] = field(default_factory=dict)
    _last_t: float | None = None
    _last_wall: float | None = None
    _hour: int | None = None
    _hour_calls: int = 0
    _buffer: ReorderBuffer = field(init=False)

    def __post_init__(self) -> None:
        self._buffer = ReorderBuffer(self.reorder_s)

    def feed(self, raw: bytes, wall: float) -> list[Alert]:
        """Process one detector-input message received at wall-clock time ``wall``."""
        alerts: list[Alert] = []
        self._last_wall = wall
        for partition, offset, t, cell, category, priority in decode_points(raw):
            if offset <= self._seen.get(partition, -1):
                self.counters["detector_input_duplicates_total"] += 1
                continue
            self._seen[partition] = offset
            self._last_t = t if self._last_t is None else max(self._last_t, t)
            released, late = self._buffer.push(t, CallPoint(t=t, cell=cell, category=category, priority=priority))
            self.counters["detector_input_late_total"] += len(late)
            alerts += self._run(released)
        return alerts

    def tick(self, wall: float) -> list[Alert]:
        """Call periodically. After ``idle_s`` without input, flush the buffer and let the
        event clock follow the wall clock from the last event, so outages are seen live."""
        if self._last_wall is None or self._last_t is None or wall - self._last_wall < self.idle_s:
            return []
        alerts = self._run(self._buffer.flush())
        return alerts + self.suite.advance(self._last_t + (wall - self._last_wall))

    def flush(self) -> list[Alert]:
        """Run what the reorder buffer still holds (at shutdown)."""
        return self._run(self._buffer.flush())

    def metrics(self) -> dict[str, float]:
        """Counters of the runner and per-model error, drift and alert rate."""
        return {**self.counters, **self.drift.metrics()}

    def _run(self, points: list[CallPoint]) -> list[Alert]:
        alerts: list[Alert] = []
        for point in points:
            self._track_hour(point.t)
            alerts += self.suite.process(point)
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
