"""Calls replayed in event time through the worker's :class:`detectors.suite.DetectorSuite`, the clock ticking every minute.

Examples
--------
>>> from detectors.evaluation.calls import Calls
>>> from detectors.evaluation.replay import make_suite, replay
>>> calls = Calls.from_history((600.0 * k, 40.1, -75.3, "EMS", None) for k in range(10))
>>> alerts, seconds = replay(make_suite("America/New_York"), calls)
>>> alerts  # still warming up
[]
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any

from detectors.baseline import ExpectedCounts
from detectors.evaluation.calls import Calls
from detectors.outage import FeedMonitor
from detectors.suite import DetectorSuite
from detectors.surge import SurgeDetector
from detectors.types import Alert

#: The worker's event clock ticks every minute between calls.
TICK_S = 60.0

#: Wraps an iterable to show progress: ``track(items, desc, total)`` yields the same items.
Track = Callable[[Iterable[Any], str, "int | None"], Iterable[Any]]


def no_track(items: Iterable[Any], desc: str, total: int | None = None) -> Iterable[Any]:
    """The default :data:`Track`: no progress shown."""
    return items


def make_suite(timezone: str, threshold: float | None = None, jurisdiction_threshold: float | None = None, **options: Any) -> DetectorSuite:
    """The worker's suite (surge detector and feed monitor, no scoring) on the local clock of ``timezone``
    (IANA name, the jurisdiction's), the surge thresholds optionally changed and other surge detector
    parameters given in ``options`` (e.g. ``jurisdiction_cusum=1.0``)."""
    default = SurgeDetector()
    local = default.threshold if threshold is None else threshold
    county = default.jurisdiction_threshold if jurisdiction_threshold is None else jurisdiction_threshold
    # an alert closes below the lower of 3.0 (the default) and the thresholds, which calibration may set lower
    close = min(default.close_threshold, local, county)
    surge = SurgeDetector(
        threshold=local, jurisdiction_threshold=county, close_threshold=close, baseline=ExpectedCounts(timezone=timezone), **options
    )
    return DetectorSuite(surge=surge, feed=FeedMonitor(baseline=ExpectedCounts(timezone=timezone)), score=False)


def replay(suite: DetectorSuite, calls: Calls, track: Track = no_track, desc: str = "replaying") -> tuple[list[Alert], float]:
    """Every call through ``suite.process``, the clock ticking every minute in between; the alerts and the seconds taken."""
    alerts: list[Alert] = []
    started = time.perf_counter()
    last = None
    for i in track(range(len(calls)), desc, len(calls)):
        t = calls.t[i]
        if last is not None:
            tick = (math.floor(last / TICK_S) + 1) * TICK_S
            while tick < t:
                alerts += suite.advance(tick)
                tick += TICK_S
        alerts += suite.process(calls.point(i))
        last = t
    return alerts, time.perf_counter() - started


#: One replay of a sweep: ``(threshold, calls, timezone, jurisdiction_threshold or None, other options)``.
Job = tuple[float, Calls, str, "float | None", "dict[str, Any]"]


def replay_threshold(job: Job) -> tuple[float, list[Alert], float]:
    """``replay`` of a fresh suite (:func:`make_suite`) at surge threshold ``job[0]`` (and jurisdiction threshold
    ``job[3]``, default when None; options ``job[4]``) over ``job[1]`` in zone ``job[2]``; picklable, for a
    process pool's ``map``."""
    threshold, calls, timezone, jurisdiction_threshold, options = job
    alerts, seconds = replay(make_suite(timezone, threshold, jurisdiction_threshold, **options), calls)
    return threshold, alerts, seconds
