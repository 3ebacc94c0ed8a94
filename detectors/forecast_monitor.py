"""How the published forecasts fare: error, bias, interval coverage and drift per level and horizon (pure).

:class:`ForecastMonitor` is told the forecasts that were published
(:meth:`~ForecastMonitor.watch`: a level, an area key, a horizon and its
:class:`detectors.forecast.Forecast`), learns every call
(:meth:`~ForecastMonitor.learn_one`), and once the event-time clock has passed
a window's end compares the calls that came with the forecast. Per
``level|horizon`` (levels ``jurisdiction``, ``cell6``, ``cell7``; horizons 1, 8
and 24 hours) it keeps:

* ``mae``: mean absolute error ``|y - mean|``;
* ``bias``: mean of ``y - mean`` (actual minus forecast, as the drift monitor's
  residuals: positive means more calls came than were forecast);
* ``coverage80`` / ``coverage95``: the share of windows whose count fell inside
  ``[lo80, hi80]`` / ``[lo95, hi95]``;
* ``drift``: drifts :class:`detectors.drift.ResidualDriftMonitor` (ADWIN) found in the
  standardized residuals ``(y - mean) / sd``.

**Recent, not lifelong.** The four figures are means over the scored windows
weighted by ``2 ** (-age / half_life_days)``, the age in event time since the
window ended. Decayed in time rather than over a fixed count of windows so
that every level answers for the same stretch of time whatever its number of
areas (the jurisdiction scores one window an hour, ``cell7`` hundreds); the
default half-life of a week spans every hour of the week, so a model that
misses on weekend nights cannot hide behind its weekdays. ``n`` is the windows
scored since the start.

**Standardized residuals.** ``sd`` is the interval's implied standard deviation,
``(hi95 - lo95) / (2 * 1.96)``, floored at the Poisson ``sqrt(mean)`` (the
forecaster's negative binomial is never narrower; a small mean's discrete
interval can be): under a calibrated forecaster they have mean 0 and about
unit variance, so ADWIN's mean test reads a drift in bias on every level alike.

**Bounded memory.** Calls are counted per 15-minute bin (the forecasts are
issued on quarter hours; a window must start and end on one) for the
jurisdiction and each res-6 and res-7 cell, and bins older than the longest
watched window (at least a day) plus ``slack_s`` are dropped. Of the forecasts issued every
15 minutes it keeps one set per ``every_s`` of event time (an hour by default:
consecutive windows overlap and say little more) per level and horizon, and at
most ``max_windows`` pending windows in all (:attr:`dropped` counts the rest).

Examples
--------
>>> from detectors.forecast import Forecast
>>> from detectors.types import CallPoint
>>> m = ForecastMonitor()
>>> t0 = 1_700_000_000.0 - 1_700_000_000.0 % 3600
>>> for hour in range(40):                       # forecast 10 in [7, 13] (80 %) and [5, 16] (95 %); 8 or 12 come
...     kept = m.watch("jurisdiction", "jurisdiction", 1, Forecast(t0 + 3600 * hour, t0 + 3600 * (hour + 1), 10.0, 7, 13, 5, 16))
...     for i in range(8 if hour % 2 else 12):
...         m.learn_one(CallPoint(t=t0 + 3600 * hour + 300 * i, cell="882aac941dfffff", category="EMS"))
>>> m.advance(t0 + 3600 * 40)
>>> s = m.summary()["jurisdiction|1"]
>>> s["n"], s["mae"], s["coverage80"], s["coverage95"], s["drift"]
(40, 2.0, 1.0, 1.0, 0)
>>> m.metrics()["forecast_coverage|jurisdiction|1|0.8"]
1.0
"""

from __future__ import annotations

import heapq
import itertools
import math
from typing import Protocol

import h3

from detectors.base import Detector
from detectors.drift import ResidualDriftMonitor
from detectors.types import CallPoint

#: The levels a window may be watched at: the whole jurisdiction, a res-6 or a res-7 cell.
LEVELS: tuple[str, ...] = ("jurisdiction", "cell6", "cell7")
#: The key of the jurisdiction's one area.
JURISDICTION = "jurisdiction"
#: Seconds per counting bin: forecasts are issued on quarter hours.
BIN_S = 900.0
#: The resolution of each cell level.
_RESOLUTION = {"cell6": 6, "cell7": 7}
#: Calls are kept at least this long (a day: the longest horizon), so a forecast built while calls came is still counted.
_MIN_KEEP_S = 86400.0
#: z of the 97.5 % quantile: a 95 % interval spans about 2 * 1.96 standard deviations.
_Z95 = 1.959963984540054


class Window(Protocol):
    """What the monitor reads of a forecast (:class:`detectors.forecast.Forecast` has it)."""

    @property
    def start(self) -> float: ...
    @property
    def end(self) -> float: ...
    @property
    def mean(self) -> float: ...
    @property
    def lo80(self) -> float: ...
    @property
    def hi80(self) -> float: ...
    @property
    def lo95(self) -> float: ...
    @property
    def hi95(self) -> float: ...


class _Figures:
    """Decayed sums of one level and horizon: weight, |error|, error, hits at 80 % and 95 %."""

    __slots__ = ("n", "at", "w", "abs", "err", "in80", "in95", "drifts")

    def __init__(self) -> None:
        self.n = 0
        self.at: float | None = None
        self.w = self.abs = self.err = self.in80 = self.in95 = 0.0
        self.drifts = 0

    def add(self, at: float, y: int, w: Window, decay_s: float) -> None:
        if self.at is not None and at > self.at:
            f = 2.0 ** (-(at - self.at) / decay_s)
            self.w, self.abs, self.err, self.in80, self.in95 = (v * f for v in (self.w, self.abs, self.err, self.in80, self.in95))
        self.at = at if self.at is None else max(self.at, at)
        self.n += 1
        self.w += 1.0
        self.abs += abs(y - w.mean)
        self.err += y - w.mean
        self.in80 += 1.0 if w.lo80 <= y <= w.hi80 else 0.0
        self.in95 += 1.0 if w.lo95 <= y <= w.hi95 else 0.0


class ForecastMonitor(Detector):
    """Scores published forecasts against the calls that came: MAE, bias, 80 % and 95 % coverage, drift.

    Parameters
    ----------
    half_life_days : float
        Half-life, in event time, of a scored window's weight in the figures (> 0).
    every_s : float
        Event-time seconds between two watched sets of one level and horizon (>= 0; 0 keeps every set).
    max_windows : int
        Most pending windows held at once (>= 1); watching more drops them.
    slack_s : float
        How long, past the longest window, call counts are kept for a forecast watched late (>= 0).
    delta : float
        ADWIN's significance on the standardized residuals (see :class:`detectors.drift.ResidualDriftMonitor`).

    Notes
    -----
    Call :meth:`watch` with each published forecast, :meth:`learn_one` with
    every call in event-time order (score before learn does not apply: a call
    is only counted), and :meth:`advance` when the clock moves without calls.
    A window is scored once the clock reaches its end; a call later than that
    is not in its count. A forecast may be watched after calls of its window
    were learnt (they are counted from the bins), as long as its start is
    within the bins kept. Nothing is scored before the first window ends.
    """

    def __init__(
        self,
        half_life_days: float = 7.0,
        every_s: float = 3600.0,
        max_windows: int = 50_000,
        slack_s: float = 3600.0,
        delta: float = 0.002,
    ) -> None:
        if not (_finite(half_life_days) and half_life_days > 0):
            raise ValueError(f"half_life_days must be a finite number > 0, got {half_life_days!r}")
        if not (_finite(every_s) and every_s >= 0):
            raise ValueError(f"every_s must be a finite number >= 0 (seconds between watched sets), got {every_s!r}")
        if isinstance(max_windows, bool) or not isinstance(max_windows, int) or max_windows < 1:
            raise ValueError(f"max_windows must be an integer >= 1, got {max_windows!r}")
        if not (_finite(slack_s) and slack_s >= 0):
            raise ValueError(f"slack_s must be a finite number >= 0 (seconds), got {slack_s!r}")
        self.half_life_days = half_life_days
        self.every_s = every_s
        self.max_windows = max_windows
        self.slack_s = slack_s
        self.delta = delta
        self._drift = ResidualDriftMonitor(delta=delta)  # validates delta
        self._clock: float | None = None
        #: calls per bin: bin index -> area key -> calls
        self._bins: dict[int, dict[str, int]] = {}
        #: windows not yet scored, a heap by end: (end, tie-breaker, level, key, horizon, forecast)
        self._pending: list[tuple[float, int, str, str, int, Window]] = []
        self._order = itertools.count()
        #: (level, horizon) -> start of the set being watched
        self._sampled: dict[tuple[str, int], float] = {}
        self._figures: dict[tuple[str, int], _Figures] = {}
        self._longest_s = 0.0
        #: windows not watched: over ``max_windows``, or starting before the bins kept
        self.dropped = 0

    # ----------------------------------------------------------------- input

    def watch(self, level: str, key: str, horizon: int, forecast: Window) -> bool:
        """Score ``forecast`` of area ``key`` (``"jurisdiction"``, or the res-6 / res-7 cell of ``level``) once its window ends.

        Returns whether it is kept: False when another set of this level and
        horizon was watched less than ``every_s`` ago, when ``max_windows`` are
        pending, or when its start is older than the bins kept.
        """
        if level not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
        if level == JURISDICTION:
            if key != JURISDICTION:
                raise ValueError(f"the jurisdiction level's key is {JURISDICTION!r}, got {key!r}")
        elif not (isinstance(key, str) and h3.is_valid_cell(key) and h3.get_resolution(key) == _RESOLUTION[level]):
            raise ValueError(f"a {level} key must be a res-{_RESOLUTION[level]} H3 cell, got {key!r}")
        start, end = float(forecast.start), float(forecast.end)
        if not (_finite(start) and _finite(end) and end > start and start % BIN_S == 0 and end % BIN_S == 0):
            raise ValueError(f"a watched window must start and end on a quarter hour (start < end), got [{start!r}, {end!r})")
        sampled = self._sampled.get((level, horizon))
        if sampled is None or start >= sampled + self.every_s:
            self._sampled[(level, horizon)] = sampled = start
        if start != sampled:
            return False
        if len(self._pending) >= self.max_windows or (self._clock is not None and start < self._kept_from()):
            self.dropped += 1
            return False
        self._longest_s = max(self._longest_s, end - start)
        heapq.heappush(self._pending, (end, next(self._order), level, key, horizon, forecast))
        return True

    def learn_one(self, x: CallPoint) -> None:
        """Count one call in its bin (the jurisdiction, its res-6 and res-7 cells), then score the windows that ended."""
        t = float(x.t)
        self.advance(t)
        held = self._bins.setdefault(int(t // BIN_S), {})
        held[JURISDICTION] = held.get(JURISDICTION, 0) + 1
        res = int(h3.get_resolution(x.cell))
        for r in (6, 7):
            if res >= r:
                cell = x.cell if res == r else str(h3.cell_to_parent(x.cell, r))
                held[cell] = held.get(cell, 0) + 1

    def advance(self, t: float) -> None:
        """Move the event-time clock to ``t`` (never back) and score every window that ended by then."""
        if self._clock is not None and t <= self._clock:
            return
        moved_bin = self._clock is None or t // BIN_S != self._clock // BIN_S
        self._clock = t
        while self._pending and self._pending[0][0] <= t:
            end, _, level, key, horizon, forecast = heapq.heappop(self._pending)
            self._score(end, level, key, horizon, forecast)
        if moved_bin:
            first = self._kept_from() // BIN_S
            for b in [b for b in self._bins if b < first]:
                del self._bins[b]

    # ----------------------------------------------------------------- output

    def summary(self) -> dict[str, dict[str, float | int]]:
        """``{"level|horizon": {"n", "mae", "bias", "coverage80", "coverage95", "drift"}}`` of every pair scored so far."""
        out: dict[str, dict[str, float | int]] = {}
        for (level, horizon), f in sorted(self._figures.items(), key=lambda kv: (LEVELS.index(kv[0][0]), kv[0][1])):
            out[f"{level}|{horizon}"] = {
                "n": f.n,
                "mae": round(f.abs / f.w, 4),
                "bias": round(f.err / f.w, 4),
                "coverage80": round(f.in80 / f.w, 4),
                "coverage95": round(f.in95 / f.w, 4),
                "drift": f.drifts,
            }
        return out

    def metrics(self) -> dict[str, float]:
        """The summary as ``/metrics`` counters (``name|level|horizon``; coverage also ``|nominal``, see :mod:`streams.runtime.metrics`).

        >>> ForecastMonitor().metrics()
        {}
        """
        out: dict[str, float] = {}
        for pair, s in self.summary().items():
            out[f"forecast_mae|{pair}"] = s["mae"]
            out[f"forecast_bias|{pair}"] = s["bias"]
            out[f"forecast_coverage|{pair}|0.8"] = s["coverage80"]
            out[f"forecast_coverage|{pair}|0.95"] = s["coverage95"]
            out[f"forecast_drift_total|{pair}"] = s["drift"]
            out[f"forecast_windows_total|{pair}"] = s["n"]
        return out

    def state_size(self) -> int:
        """Entries held: counts in the bins and pending windows."""
        return sum(len(b) for b in self._bins.values()) + len(self._pending)

    # ----------------------------------------------------------------- scoring

    def _kept_from(self) -> float:
        """The earliest time whose calls are still counted."""
        assert self._clock is not None
        return math.floor((self._clock - max(self._longest_s, _MIN_KEEP_S) - self.slack_s) / BIN_S) * BIN_S

    def _score(self, end: float, level: str, key: str, horizon: int, w: Window) -> None:
        first, stop = int(w.start // BIN_S), int(end // BIN_S)
        y = sum(self._bins.get(b, {}).get(key, 0) for b in range(first, stop))
        figures = self._figures.setdefault((level, horizon), _Figures())
        figures.add(end, y, w, self.half_life_days * 86400.0)
        sd = max((w.hi95 - w.lo95) / (2.0 * _Z95), math.sqrt(max(w.mean, 0.0)))
        if sd > 0.0 and self._drift.update(f"{level}-{horizon}h", (y - w.mean) / sd):
            figures.drifts += 1


def _finite(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
