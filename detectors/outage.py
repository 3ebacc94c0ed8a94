"""Feed outages: the whole feed silent for longer than its own rate makes plausible.

A county's calls never stop for an hour in the afternoon; when they do, the
feed is broken, not the county quiet. :class:`FeedMonitor` learns the
jurisdiction's call rate by hour of the week
(:class:`detectors.baseline.ExpectedCounts`) and, on the event-time clock,
computes the calls expected since the last call. Under the Poisson model of
the rate, a silence in which ``E`` calls were expected has probability
``exp(-E)``; once ``E >= min_expected`` (default 10: ``p < 5e-5``) the monitor
opens a ``FEED_OUTAGE`` alert. The next call closes it. The alert says what
was expected and that nothing came: it is never a "drop in calls", and the
surge detector's baseline does not count the silence as time in which the
county was quiet (see the exposure rule in :mod:`detectors.baseline`).

Working on event time, the monitor needs the clock to move while no call
arrives: the worker calls :meth:`FeedMonitor.advance` periodically with the
event clock following the wall clock (``streams.detection.runner``); an offline
replay ticks it every minute.

Warm-up: nothing is reported until the baseline is ready (``warmup_calls``
calls and ``warmup_hours`` hours of live feed), because a silence is only
implausible against a known rate.

Examples
--------
>>> import random
>>> from detectors.types import CallPoint
>>> rng = random.Random(1)
>>> mon = FeedMonitor(baseline=ExpectedCounts(warmup_calls=200, warmup_hours=24, timezone="America/New_York"))
>>> t, alerts = 1_700_000_000.0, []
>>> for _ in range(1200):                                   # three days at 16 calls an hour
...     t += rng.expovariate(16 / 3600)
...     mon.learn_one(CallPoint(t=t, cell="882aac941dfffff", category="EMS"))
...     alerts += mon.advance(t)
>>> alerts
[]
>>> for minute in range(1, 121):                            # two silent hours
...     alerts += mon.advance(t + 60.0 * minute)
>>> a = alerts[0]
>>> a.kind.value, a.state.value, a.observed, round(a.expected, 1), round((a.at - t) / 60)
('feed_outage', 'open', 0, 15.0, 57)
>>> mon.learn_one(CallPoint(t=t + 7200.0, cell="882aac941dfffff", category="EMS"))
>>> [(b.state.value, b.window_min, round(b.expected)) for b in mon.advance(t + 7200.0)]
[('closed', 120, 30)]
"""

from __future__ import annotations

import math

from detectors.base import Detector
from detectors.baseline import ExpectedCounts
from detectors.types import Alert, AlertKind, AlertState, CallPoint

MODEL = "feed-silence-poisson"
#: Bump when the rule changes.
MODEL_VERSION = "1.0"


class FeedMonitor(Detector):
    """Reports a ``FEED_OUTAGE`` when no call arrives for longer than the learned rate makes plausible.

    Parameters
    ----------
    min_expected : float
        Calls the rate must have expected in the silence before it is an outage (> 0);
        the silence then had probability ``exp(-min_expected)``.
    baseline : ExpectedCounts or None
        The rate model (learnt by this monitor); ``None`` for the defaults.
    """

    def __init__(self, min_expected: float = 15.0, baseline: ExpectedCounts | None = None) -> None:
        if (
            isinstance(min_expected, bool)
            or not isinstance(min_expected, (int, float))
            or not (math.isfinite(min_expected) and min_expected > 0)
        ):
            raise ValueError(f"min_expected must be a finite number > 0, got {min_expected!r}")
        if baseline is not None and not isinstance(baseline, ExpectedCounts):
            raise ValueError(f"baseline must be an ExpectedCounts or None, got {type(baseline).__name__}")
        self.min_expected = min_expected
        self.baseline = baseline if baseline is not None else ExpectedCounts()
        self._last_t: float | None = None
        self._now = -math.inf
        self._open: Alert | None = None
        self._closing: Alert | None = None

    def state_size(self) -> int:
        return 1 + self.baseline.state_size()

    def learn_one(self, x: CallPoint) -> None:
        """Count a call; it ends a silence (an open outage closes at the next :meth:`advance`)."""
        t = float(x.t)
        if self._open is not None and t > self._open.started_at and self._closing is None:
            # the silence's numbers, before this call teaches the baseline anything
            self._closing = self._alert(AlertState.CLOSED, self._open.started_at, t)
        self.baseline.learn_one(x)
        if self._last_t is None or t > self._last_t:
            self._last_t = t

    def score_one(self, x: CallPoint) -> float:
        """``-log10`` of the probability of the silence that ``x`` ends (0.0 during warm-up)."""
        if self._last_t is None or not self.baseline.ready or x.t <= self._last_t:
            return 0.0
        return self.baseline.total(self._last_t, float(x.t)) / math.log(10.0)

    def advance(self, now: float) -> list[Alert]:
        """Move the event-time clock to ``now``: open an outage on an implausible silence, close it on resumption."""
        now = max(float(now), self._now)
        self._now = now
        out: list[Alert] = []
        if self._closing is not None:
            out.append(self._closing)
            self._open = None
            self._closing = None
        if self._open is None and self._last_t is not None and self.baseline.ready and now > self._last_t:
            expected = self.baseline.total(self._last_t, now)
            if expected >= self.min_expected:
                self._open = self._alert(AlertState.OPEN, self._last_t, now)
                out.append(self._open)
        return out

    def _alert(self, state: AlertState, start: float, at: float) -> Alert:
        expected = self.baseline.total(start, at)
        score = expected / math.log(10.0)
        minutes = (at - start) / 60.0
        if state is AlertState.CLOSED:
            reason = f"feed resumed after {minutes:.0f} min without any call ({expected:.1f} calls expected)"
        else:
            reason = f"no call for {minutes:.0f} min while {expected:.1f} were expected: the feed, not the county, went quiet"
        return Alert(
            id=f"feed_outage:{int(start)}",
            kind=AlertKind.FEED_OUTAGE,
            state=state,
            started_at=start,
            at=at,
            cells=(),
            window_min=round(minutes),
            observed=0,
            expected=round(expected, 3),
            score=round(score, 3),
            p_value=math.exp(-expected),
            categories={},
            model=MODEL,
            model_version=MODEL_VERSION,
            reason=reason,
        )
