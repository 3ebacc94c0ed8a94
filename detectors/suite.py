"""The detector suite: every detector behind one entry point, for the worker and the evaluation alike.

:class:`DetectorSuite` holds a :class:`~detectors.surge.SurgeDetector`, a
:class:`~detectors.outage.FeedMonitor`, optionally a
:class:`~detectors.zones.ZoneWatch` for event zones (reading the surge
detector's baseline, so each call is learnt once) and any number of extra
detectors with the same protocol (``learn_one(x)``, ``advance(now) ->
list[Alert]``, and optionally ``score_one(x)``): the place for the anomaly
detector.

A suite may hold detectors it does not run (``skip``): when the detection
stage is split over several workers (:mod:`streams.detection.shards`), each
worker's suite holds every detector but runs only its share, so that the
alert records of all workers together are those of one suite running them all.

Calling contract: feed calls in event-time order to :meth:`DetectorSuite.process`
and, while no call arrives, call :meth:`DetectorSuite.advance` with the event
clock (the worker lets it follow the wall clock after a quiet spell, an offline
replay ticks it every minute) so that outages are seen and alerts close.

Examples
--------
>>> import random
>>> from detectors.types import CallPoint
>>> rng = random.Random(5)
>>> suite = DetectorSuite(
...     surge=SurgeDetector(baseline=ExpectedCounts(warmup_calls=300, warmup_hours=24)),
...     feed=FeedMonitor(baseline=ExpectedCounts(warmup_calls=300, warmup_hours=24)),
... )
>>> t, alerts = 1_700_000_000.0, []
>>> for _ in range(1500):
...     t += rng.expovariate(16 / 3600)
...     alerts += suite.process(CallPoint(t=t, cell="882aac941dfffff", category="EMS"))
>>> alerts, sorted(suite.last_scores)
([], ['feed', 'surge'])
>>> alerts = [a for minute in range(1, 91) for a in suite.advance(t + 60.0 * minute)]
>>> [(a.kind.value, a.state.value) for a in alerts]
[('feed_outage', 'open')]
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, Protocol

from detectors.base import Detector
from detectors.baseline import ExpectedCounts
from detectors.outage import FeedMonitor
from detectors.surge import SurgeDetector
from detectors.types import Alert, CallPoint
from detectors.zones import ZoneWatch

__all__ = ["DetectorSuite", "ExpectedCounts", "FeedMonitor", "StreamDetector", "SurgeDetector", "ZoneWatch"]


class StreamDetector(Protocol):
    """What the suite needs from a detector (``score_one`` is optional; ``clone`` for :meth:`DetectorSuite.clone`)."""

    def learn_one(self, x: CallPoint) -> None: ...

    def advance(self, now: float) -> list[Alert]: ...


class DetectorSuite(Detector):
    """Surge detector, feed monitor, zone watch and extra detectors behind ``process`` and ``advance``.

    Parameters
    ----------
    surge : SurgeDetector or None
        ``None`` for a default :class:`SurgeDetector`.
    feed : FeedMonitor or None
        ``None`` for a default :class:`FeedMonitor`.
    extra : sequence of detectors
        More detectors with ``learn_one`` and ``advance`` (and optionally
        ``score_one``), run after the others, in order: the anomaly detector
        goes here.
    score : bool
        Compute each detector's ``score_one`` in :meth:`process` (kept in
        :attr:`last_scores`); off saves the scoring pass when only alerts matter.
    zones : ZoneWatch or None
        The event-zone watch, run after the feed monitor; ``None`` for none. One
        that does not learn its baseline (``learn_baseline=False``) must read the
        surge detector's: ``ZoneWatch(baseline=surge.baseline, learn_baseline=False)``.
    skip : collection of str
        Names of detectors (as in :attr:`detectors`: ``surge``, ``feed``,
        ``zones``, ``extra0``, ...) held but not run: they neither learn nor
        alert (another worker runs them). A zone watch reading the surge
        detector's baseline cannot run without it.

    Examples
    --------
    >>> suite = DetectorSuite(zones=ZoneWatch(learn_baseline=True), skip=("surge", "feed"))
    >>> list(suite.detectors), suite.skip
    (['zones'], ('feed', 'surge'))
    >>> DetectorSuite(skip=("zone",))
    Traceback (most recent call last):
    ...
    ValueError: skip names ['zone'], which this suite does not hold; it holds surge, feed
    """

    def __init__(
        self,
        surge: SurgeDetector | None = None,
        feed: FeedMonitor | None = None,
        extra: Sequence[StreamDetector] = (),
        score: bool = True,
        zones: ZoneWatch | None = None,
        skip: Collection[str] = (),
    ) -> None:
        for i, det in enumerate(extra):
            if not (callable(getattr(det, "learn_one", None)) and callable(getattr(det, "advance", None))):
                raise ValueError(f"extra[{i}] ({type(det).__name__}) must have learn_one(x) and advance(now) methods")
        if surge is not None and not isinstance(surge, SurgeDetector):
            raise ValueError(f"surge must be a SurgeDetector or None, got {type(surge).__name__}")
        if feed is not None and not isinstance(feed, FeedMonitor):
            raise ValueError(f"feed must be a FeedMonitor or None, got {type(feed).__name__}")
        if zones is not None and not isinstance(zones, ZoneWatch):
            raise ValueError(f"zones must be a ZoneWatch or None, got {type(zones).__name__}")
        self.surge = surge if surge is not None else SurgeDetector()
        self.feed = feed if feed is not None else FeedMonitor()
        if zones is not None and not zones.learn_baseline and zones.baseline is not self.surge.baseline:
            raise ValueError(
                "zones does not learn its baseline and reads one no detector of this suite learns: "
                "pass ZoneWatch(baseline=surge.baseline, learn_baseline=False) with this suite's surge detector"
            )
        self.zones = zones
        self.extra = tuple(extra)
        self.score = bool(score)
        held = ("surge", "feed", *(("zones",) if zones is not None else ()), *(f"extra{i}" for i in range(len(self.extra))))
        unknown = sorted(set(skip) - set(held))
        if unknown:
            raise ValueError(f"skip names {unknown}, which this suite does not hold; it holds {', '.join(held)}")
        if zones is not None and not zones.learn_baseline and "surge" in skip and "zones" not in skip:
            raise ValueError(
                "zones reads the surge detector's baseline, which nothing learns when the surge detector is skipped: "
                "run them together (skip both or neither)"
            )
        self.skip = tuple(sorted(set(skip)))
        #: the detectors run, by name, in order (the held ones without ``skip``)
        self._run = tuple((name, d) for name, d in zip(held, self._held(), strict=True) if name not in self.skip)
        self._order = tuple(d for _, d in self._run)
        #: score_one of each detector for the last processed call, by name (surge, feed, zones, extra0, ...)
        self.last_scores: dict[str, float] = {}

    def clone(self, new_params: dict[str, Any] | None = None) -> DetectorSuite:
        """A fresh suite: every detector cloned from its configuration (a shared baseline stays shared)."""
        surge = self.surge.clone()
        zones = None
        if self.zones is not None:
            zones = self.zones.clone() if self.zones.learn_baseline else self.zones.clone({"baseline": surge.baseline})
        extra = tuple(d.clone() for d in self.extra)  # type: ignore[attr-defined]  # clone is optional in StreamDetector (needed only here)
        params = {**self._params(), "surge": surge, "feed": self.feed.clone(), "extra": extra, "zones": zones}
        return type(self)(**{**params, **(new_params or {})})

    @property
    def detectors(self) -> dict[str, StreamDetector]:
        """Every detector run (not skipped) by name, in the order they run."""
        return dict(self._run)

    def process(self, x: CallPoint) -> list[Alert]:
        """Advance every detector's clock to ``x.t``, score ``x``, learn it, and evaluate it.

        Returns the alert lifecycle records this caused, in detector order.
        """
        alerts = self.advance(x.t)
        if self.score:
            dets = self.detectors
            self.last_scores = {name: float(d.score_one(x)) for name, d in dets.items() if hasattr(d, "score_one")}
        for d in self._in_order():
            d.learn_one(x)
        return alerts + self.advance(x.t)

    def advance(self, now: float) -> list[Alert]:
        """Move every detector's event clock to ``now``; the alerts opened, updated or closed."""
        alerts: list[Alert] = []
        for d in self._in_order():
            alerts += d.advance(now)
        return alerts

    def _in_order(self) -> tuple[StreamDetector, ...]:
        """The detectors run, in order (:attr:`detectors` without the names, for the per-call path)."""
        return self._order

    def _held(self) -> tuple[StreamDetector, ...]:
        """Every detector held, run or skipped, in order."""
        if self.zones is None:
            return (self.surge, self.feed, *self.extra)
        return (self.surge, self.feed, self.zones, *self.extra)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if "skip" not in state:  # a checkpoint from before skip: every detector runs
            self.skip = ()
            names = ("surge", "feed", *(("zones",) if self.zones is not None else ()), *(f"extra{i}" for i in range(len(self.extra))))
            self._run = tuple(zip(names, self._held(), strict=True))
            self._order = tuple(d for _, d in self._run)
