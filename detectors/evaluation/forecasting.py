"""Forecast evaluation, the pure parts: hourly counts per area, baseline forecasters, error metrics, hot-spot scores.

A rolling-origin backtest (``python bench/forecast_eval.py``) asks, at each
origin hour ``o`` and each horizon ``h`` (hours), for the number of calls in
``[o, o + h)`` in every area of a level (the jurisdiction, res-6 and res-7 H3
cells) and compares it with what came. Everything here works on an
:class:`HourlyCounts` matrix (areas x hours, hour 0 at ``start``) and integer
hour indices; no file, clock or network.

Baselines (each gives a mean; its intervals are **Poisson quantiles around that
mean**, :func:`poisson_interval`: with 4 same-slot weeks behind MEDIC empirical
2.5 % and 97.5 % quantiles would be the extremes of four numbers):

- :func:`seasonal_naive`: the same ``h`` hours one week earlier;
- :func:`medic`: the EMS industry's MEDIC method, the mean of the same hours of the
  same weekday over the previous 4 weeks and over the 4 weeks before the same date
  (52 weeks earlier, so the same weekday) of each earlier year the history holds;
  a file of one year gives the previous 4 weeks only;
- :func:`hour_of_week_mean`: the mean over every earlier week of the history.

Weeks are 168 hours of the grid (UTC hours): across a daylight-saving change the
"same hour last week" is one wall-clock hour off for a week.

Metrics: :func:`mae`, :func:`rmse`, :func:`mase` (scale :func:`mase_scale`, the
in-sample MAE of the weekly seasonal naive at the same horizon, Hyndman and
Koehler 2006), :func:`coverage` and :func:`mean_width` of intervals.

Hot spots: rank the cells of a grid by forecast, flag the top ``k`` =
:func:`flagged_cells` of the grid's ``A`` cells (H3 cells of one resolution are
nearly equal in area, so a share of cells is a share of area), then
:func:`pai` = (n / N) / (k / A) and :func:`pei` = n / n* (Chainey et al. 2008;
Hunt 2016), n* the calls of the ``k`` busiest cells in hindsight. The KDE
baseline (:func:`kde_scores`) is a Gaussian kernel over the past four weeks'
calls, each at its res-8 cell centre, evaluated at the cell centres.

Examples
--------
>>> import numpy as np
>>> week = [(3600.0 * h, "8828308281fffff", "EMS") for h in range(0, 24 * 7 * 5, 5)]
>>> counts = hourly_counts(week, "jurisdiction", start=0.0, hours=24 * 7 * 5)
>>> counts.keys, int(counts.counts.sum())
(('jurisdiction',), 168)
>>> origin = 24 * 7 * 4
>>> float(seasonal_naive(counts, origin, 24)[0]), float(medic(counts, origin, 24)[0])
(5.0, 4.75)
>>> lo, hi = poisson_interval(np.array([4.75]), 0.8)
>>> float(lo[0]), float(hi[0])
(2.0, 8.0)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import h3
import numpy as np
import numpy.typing as npt
from scipy import stats  # type: ignore[import-untyped]  # river's dependency (no stubs)

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

HOUR_S = 3600.0
#: Hours in a week: the season of every baseline.
WEEK_H = 168
#: 52 weeks: the same weekday a year earlier (MEDIC's "same date in earlier years").
YEAR_H = 52 * WEEK_H
#: The level of the whole jurisdiction (one area) and its one key.
JURISDICTION = "jurisdiction"
#: The H3 resolution of each cell level.
LEVEL_RESOLUTION = {"res6": 6, "res7": 7, "res8": 8}
#: Shares of the jurisdiction's area flagged as hot spots (issue 22: 0.5 % and 1 %).
HOTSPOT_SHARES = (0.005, 0.01)
#: Default KDE bandwidth, km: about one res-8 cell's centre spacing (0.8 km), so a call spreads to its ring.
KDE_BANDWIDTH_KM = 0.75
#: Weeks of calls behind the KDE hot spots.
KDE_WEEKS = 4


@dataclass
class HourlyCounts:
    """Calls per area per hour: ``counts[i, j]`` is area ``keys[i]`` in hour ``j`` (``start + j`` hours, epoch seconds)."""

    start: float
    keys: tuple[str, ...]
    counts: Ints
    _cum: Ints | None = field(default=None, init=False, repr=False)

    @property
    def hours(self) -> int:
        return int(self.counts.shape[1])

    def index(self, t: float) -> int:
        """The hour index holding epoch second ``t``."""
        return math.floor((t - self.start) / HOUR_S)

    def window(self, first: int, hours: int) -> Ints:
        """Calls per area in hours ``[first, first + hours)`` (which must lie in the grid)."""
        if first < 0 or first + hours > self.hours or hours <= 0:
            raise ValueError(f"window [{first}, {first + hours}) is not inside the grid of {self.hours} hours")
        if self._cum is None:
            cum = np.zeros((len(self.keys), self.hours + 1), dtype=np.int64)
            np.cumsum(self.counts, axis=1, out=cum[:, 1:])
            self._cum = cum
        result: Ints = self._cum[:, first + hours] - self._cum[:, first]
        return result


def area_of(cell: str, level: str) -> str:
    """The key of the area of ``level`` holding res-8 ``cell``: the jurisdiction, or its parent cell."""
    if level == JURISDICTION:
        return JURISDICTION
    return str(h3.cell_to_parent(cell, LEVEL_RESOLUTION[level]))


def hourly_counts(
    calls: Iterable[tuple[float, str, str]], level: str, start: float, hours: int, keys: Sequence[str] | None = None
) -> HourlyCounts:
    """Calls ``(t, res-8 cell, category)`` counted per hour in each area of ``level`` (``"jurisdiction"``,
    ``"res6"``, ``"res7"`` or ``"res8"``), hour 0 at ``start``, ``hours`` hours. With ``keys`` the areas are
    those (in that order; calls elsewhere are dropped), else every area with a call, sorted. Calls outside the
    grid are dropped."""
    if level != JURISDICTION and level not in LEVEL_RESOLUTION:
        raise ValueError(f"level must be {JURISDICTION!r} or one of {sorted(LEVEL_RESOLUTION)}, got {level!r}")
    parents: dict[str, str] = {}
    rows: list[tuple[str, int]] = []
    for t, cell, _category in calls:
        j = math.floor((t - start) / HOUR_S)
        if 0 <= j < hours:
            area = parents.get(cell)
            if area is None:
                area = parents[cell] = area_of(cell, level)
            rows.append((area, j))
    ordered = tuple(keys) if keys is not None else tuple(sorted({a for a, _ in rows}))
    position = {k: i for i, k in enumerate(ordered)}
    kept = [(position[a], j) for a, j in rows if a in position]
    counts = np.zeros((len(ordered), hours), dtype=np.int64)
    if kept:
        idx = np.array(kept, dtype=np.int64)
        np.add.at(counts, (idx[:, 0], idx[:, 1]), 1)
    return HourlyCounts(start=start, keys=ordered, counts=counts)


def _check(origin: int, hours: int) -> None:
    if not 0 < hours <= WEEK_H:
        raise ValueError(f"horizon must be 1 to {WEEK_H} hours (a week's season), got {hours}")
    if origin < WEEK_H:
        raise ValueError(f"origin hour {origin} has no week of history before it")


def _lag_mean(counts: HourlyCounts, origin: int, hours: int, lags: Iterable[int]) -> Floats:
    windows = [counts.window(origin - lag, hours) for lag in lags if origin - lag >= 0]
    if not windows:
        raise ValueError(f"origin hour {origin}: no history at the lags asked")
    result: Floats = np.mean(np.array(windows, dtype=np.float64), axis=0)
    return result


def seasonal_naive(counts: HourlyCounts, origin: int, hours: int) -> Floats:
    """Forecast of the calls in ``[origin, origin + hours)`` per area: the same hours one week earlier."""
    _check(origin, hours)
    return _lag_mean(counts, origin, hours, [WEEK_H])


def medic_lags(origin: int, weeks: int = 4) -> list[int]:
    """MEDIC's lags in hours: 1..``weeks`` weeks back, and the same ``weeks`` weeks before the same date of each
    earlier year (52 weeks per year) that the history starting at hour 0 holds in full.

    >>> medic_lags(24 * 7 * 5)
    [168, 336, 504, 672]
    >>> len(medic_lags(YEAR_H + 4 * WEEK_H))
    8
    """
    lags: list[int] = []
    year = 0
    while origin - (year * YEAR_H + weeks * WEEK_H) >= 0:
        lags.extend(year * YEAR_H + k * WEEK_H for k in range(1, weeks + 1))
        year += 1
    return lags


def medic(counts: HourlyCounts, origin: int, hours: int, weeks: int = 4) -> Floats:
    """MEDIC forecast per area: the mean of the same hours over :func:`medic_lags` (fewer weeks while the history
    is shorter than ``weeks`` weeks)."""
    _check(origin, hours)
    lags = medic_lags(origin, weeks) or [k * WEEK_H for k in range(1, weeks + 1)]
    return _lag_mean(counts, origin, hours, lags)


def hour_of_week_mean(counts: HourlyCounts, origin: int, hours: int) -> Floats:
    """Forecast per area: the mean of the same hours of the week over every earlier week of the history."""
    _check(origin, hours)
    return _lag_mean(counts, origin, hours, range(WEEK_H, origin + 1, WEEK_H))


#: The baseline forecasters of counts, by the method names results use.
BASELINES = {"seasonal_naive": seasonal_naive, "medic": medic, "hour_of_week_mean": hour_of_week_mean}


def poisson_interval(mean: Floats, level: float) -> tuple[Floats, Floats]:
    """The central ``level`` interval of a Poisson count of each ``mean``: the ``(1 - level) / 2`` and
    ``(1 + level) / 2`` quantiles (the smallest counts whose CDF reaches them)."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    mu = np.maximum(np.asarray(mean, dtype=np.float64), 1e-12)
    lo_q, hi_q = (1 - level) / 2, (1 + level) / 2
    lo: Floats = np.asarray(stats.poisson.ppf(lo_q, mu), dtype=np.float64)
    hi: Floats = np.asarray(stats.poisson.ppf(hi_q - 1e-12, mu), dtype=np.float64)
    return lo, hi


def mae(actual: npt.ArrayLike, forecast: npt.ArrayLike) -> float:
    """Mean absolute error.

    >>> mae([1, 2, 3], [2, 2, 5])
    1.0
    """
    return float(np.mean(np.abs(np.asarray(actual, dtype=np.float64) - np.asarray(forecast, dtype=np.float64))))


def rmse(actual: npt.ArrayLike, forecast: npt.ArrayLike) -> float:
    """Root mean squared error.

    >>> rmse([0, 0], [3, 4]) == (12.5) ** 0.5
    True
    """
    return float(np.sqrt(np.mean((np.asarray(actual, dtype=np.float64) - np.asarray(forecast, dtype=np.float64)) ** 2)))


def mase_scale(counts: HourlyCounts, end: int, hours: int, period: int = WEEK_H) -> Floats:
    """The MASE scale per area: the in-sample mean absolute error of the seasonal naive forecast of period
    ``period`` hours for ``hours``-hour windows, over every window start ``j`` with ``period <= j`` and
    ``j + hours <= end`` (hourly steps): mean |W(j) - W(j - period)|. NaN where no such window exists."""
    first = np.arange(period, end - hours + 1)
    if len(first) == 0:
        return np.full(len(counts.keys), np.nan)
    counts.window(0, 1)  # builds the cumulative sums
    cum = counts._cum
    assert cum is not None
    now = cum[:, first + hours] - cum[:, first]
    before = cum[:, first - period + hours] - cum[:, first - period]
    result: Floats = np.mean(np.abs(now - before), axis=1).astype(np.float64)
    return result


def mase(actual: npt.ArrayLike, forecast: npt.ArrayLike, scale: npt.ArrayLike) -> float:
    """Mean absolute scaled error: mean of |actual - forecast| / scale over the entries whose scale is positive
    (an area that never had a call has no scale); NaN when none has.

    >>> mase([4, 0, 5], [2, 1, 5], [2.0, 0.0, 1.0])
    0.5
    """
    a, f, s = (np.asarray(x, dtype=np.float64) for x in (actual, forecast, scale))
    a, f, s = np.broadcast_arrays(a, f, s)
    ok = s > 0
    if not ok.any():
        return math.nan
    return float(np.mean(np.abs(a[ok] - f[ok]) / s[ok]))


def coverage(actual: npt.ArrayLike, lo: npt.ArrayLike, hi: npt.ArrayLike) -> float:
    """Share of the actuals inside their closed interval ``[lo, hi]``.

    >>> coverage([1, 5, 9, 3], [0, 0, 0, 3], [2, 5, 8, 4])
    0.75
    """
    a = np.asarray(actual, dtype=np.float64)
    return float(np.mean((a >= np.asarray(lo)) & (a <= np.asarray(hi))))


def pit_coverage(actual: npt.ArrayLike, mean: npt.ArrayLike, dispersion: npt.ArrayLike, level: float) -> float:
    """The share of forecasts whose randomized PIT falls in the central ``level`` band, in expectation.

    A count's predictive CDF ``F`` jumps at each integer, so the plain PIT ``F(y)``
    is not uniform and an interval of integers holds at least its nominal share
    (a mean of 0.05 has the 80 % interval [0, 0], which holds 95 %). The randomized
    PIT ``u ~ U(F(y - 1), F(y))`` is uniform when the forecast is right (Czado,
    Gneiting and Held 2009); this returns the mean over forecasts of
    ``P((1 - level) / 2 <= u <= (1 + level) / 2)``, which is ``level`` for a
    calibrated forecaster whatever its means. The predictive distribution is
    negative binomial with variance ``mean + dispersion mean^2`` (Poisson where
    ``dispersion`` is 0).

    >>> round(pit_coverage([0, 0, 0, 0], [0.05] * 4, [0.0] * 4, 0.8), 3)   # F(0) = 0.951: 0.8 of it in [0.1, 0.9]
    0.841
    """
    y = np.asarray(actual, dtype=np.float64)
    mu = np.maximum(np.asarray(mean, dtype=np.float64), 1e-12)
    alpha = np.broadcast_to(np.asarray(dispersion, dtype=np.float64), y.shape)
    nb = alpha > 0
    r = np.where(nb, 1.0 / np.where(nb, alpha, 1.0), 1.0)
    p = np.where(nb, 1.0 / (1.0 + alpha * mu), 0.5)
    upper = np.where(nb, stats.nbinom.cdf(y, r, p), stats.poisson.cdf(y, mu))
    lower = np.where(y > 0, np.where(nb, stats.nbinom.cdf(y - 1, r, p), stats.poisson.cdf(y - 1, mu)), 0.0)
    lo_q, hi_q = (1 - level) / 2, (1 + level) / 2
    inside = np.clip(np.minimum(upper, hi_q) - np.maximum(lower, lo_q), 0.0, None)
    jump = upper - lower
    share = np.where(jump > 0, inside / np.where(jump > 0, jump, 1.0), ((lower >= lo_q) & (lower <= hi_q)).astype(np.float64))
    return float(np.mean(share))


def mean_width(lo: npt.ArrayLike, hi: npt.ArrayLike) -> float:
    """Mean width ``hi - lo`` of intervals.

    >>> mean_width([0, 2], [4, 4])
    3.0
    """
    return float(np.mean(np.asarray(hi, dtype=np.float64) - np.asarray(lo, dtype=np.float64)))


def flagged_cells(share: float, total: int) -> int:
    """How many of ``total`` equal-area cells make ``share`` of the area: the floor, at least one.

    >>> flagged_cells(0.005, 1700), flagged_cells(0.01, 1700), flagged_cells(0.01, 20)
    (8, 17, 1)
    """
    if not 0 < share <= 1 or total <= 0:
        raise ValueError(f"need 0 < share <= 1 and a positive number of cells, got {share} and {total}")
    return max(1, math.floor(share * total + 1e-9))


def top_cells(scores: npt.ArrayLike, k: int) -> Ints:
    """Indices of the ``k`` highest scores, highest first (ties: the lower index first).

    >>> top_cells([0.1, 3.0, 0.5, 3.0], 2).tolist()
    [1, 3]
    """
    order: Ints = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")[:k].astype(np.int64)
    return order


def pai(actual: npt.ArrayLike, flagged: npt.ArrayLike, total: int) -> float:
    """Predictive accuracy index: (n / N) / (k / A), n the calls in the ``k`` flagged cells, N all calls of the
    grid ``actual`` (calls per cell), A = ``total`` cells; NaN when N is 0.

    >>> pai([5, 0, 1, 4], [0], 4)
    2.0
    """
    a = np.asarray(actual, dtype=np.float64)
    n_all = float(a.sum())
    idx = np.asarray(flagged, dtype=np.int64)
    if n_all == 0 or len(idx) == 0:
        return math.nan
    return (float(a[idx].sum()) / n_all) / (len(idx) / total)


def pei(actual: npt.ArrayLike, flagged: npt.ArrayLike) -> float:
    """Predictive efficiency index: n / n*, n the calls in the flagged cells, n* the calls of the same number of
    cells chosen in hindsight (the busiest); NaN when n* is 0.

    >>> pei([5, 0, 1, 4], [3])
    0.8
    """
    a = np.asarray(actual, dtype=np.float64)
    idx = np.asarray(flagged, dtype=np.int64)
    best = float(np.sort(a)[::-1][: len(idx)].sum())
    if best == 0:
        return math.nan
    return float(a[idx].sum()) / best


def cell_xy_km(cells: Sequence[str]) -> Floats:
    """The centres of ``cells`` in km on a local equirectangular plane (fine over a county)."""
    latlng = np.array([h3.cell_to_latlng(c) for c in cells], dtype=np.float64).reshape(-1, 2)
    lat0 = float(np.mean(latlng[:, 0])) if len(latlng) else 0.0
    xy: Floats = np.column_stack([latlng[:, 1] * 111.32 * math.cos(math.radians(lat0)), latlng[:, 0] * 110.57])
    return xy


def kde_kernel(xy_km: Floats, bandwidth_km: float = KDE_BANDWIDTH_KM) -> Floats:
    """The Gaussian kernel between cell centres: ``exp(-d^2 / (2 b^2))``, cells x cells (compute once per grid)."""
    if bandwidth_km <= 0:
        raise ValueError(f"bandwidth must be positive, got {bandwidth_km}")
    d2 = np.sum((xy_km[:, None, :] - xy_km[None, :, :]) ** 2, axis=2)
    kernel: Floats = np.exp(-d2 / (2 * bandwidth_km**2))
    return kernel


def kde_scores(counts: HourlyCounts, origin: int, kernel: Floats, weeks: int = KDE_WEEKS) -> Floats:
    """KDE hot-spot scores per cell of ``counts`` (a res-8 grid, the cells of ``kernel`` in order): the density
    of the calls of the ``weeks`` weeks before ``origin`` (each at its cell centre), at each cell centre.

    >>> import numpy as np
    >>> grid = HourlyCounts(0.0, ("a", "b", "c"), np.array([[1] * 700, [0] * 700, [0] * 700]))
    >>> k = np.array([[1.0, 0.5, 0.0], [0.5, 1.0, 0.0], [0.0, 0.0, 1.0]])
    >>> kde_scores(grid, 700, k).tolist()
    [672.0, 336.0, 0.0]
    """
    first = max(0, origin - weeks * WEEK_H)
    weights = counts.window(first, origin - first).astype(np.float64)
    scores: Floats = kernel @ weights
    return scores


@dataclass
class Scores:
    """The forecasts and actuals of one method at one horizon and level, gathered over origins."""

    actual: list[Floats] = field(default_factory=list)
    mean: list[Floats] = field(default_factory=list)
    bounds: list[Floats] = field(default_factory=list)  # rows lo80, hi80, lo95, hi95
    scale: list[Floats] = field(default_factory=list)
    dispersion: list[Floats] = field(default_factory=list)

    def add(
        self,
        actual: npt.ArrayLike,
        mean: npt.ArrayLike,
        bounds: Sequence[npt.ArrayLike],
        scale: npt.ArrayLike,
        dispersion: npt.ArrayLike | None = None,
    ) -> None:
        """One origin: per area the actual count, the mean forecast, ``(lo80, hi80, lo95, hi95)``, the MASE scale
        and the ``alpha`` of the predictive negative binomial (None: Poisson) the bounds come from."""
        a = np.asarray(actual, dtype=np.float64).ravel()
        self.dispersion.append(
            np.zeros(len(a)) if dispersion is None else np.broadcast_to(np.asarray(dispersion, dtype=np.float64), a.shape).ravel()
        )
        self.actual.append(a)
        self.mean.append(np.asarray(mean, dtype=np.float64).ravel())
        self.bounds.append(np.array([np.asarray(b, dtype=np.float64).ravel() for b in bounds]).reshape(4, len(a)))
        self.scale.append(np.asarray(scale, dtype=np.float64).ravel())

    def area_mase(self) -> Floats:
        """MASE per area (the areas must be the same, in the same order, at every origin): its mean absolute
        error over the origins divided by its scale; NaN where the scale is not positive."""
        errors = np.abs(np.array(self.actual) - np.array(self.mean)).mean(axis=0)
        scale = self.scale[0]
        result: Floats = np.where(scale > 0, errors / np.where(scale > 0, scale, 1.0), np.nan)
        return result

    def summary(self) -> dict[str, float]:
        """mae, rmse, mase (the mean of every scaled error), mase_median_area (the median over areas of each
        area's MASE: near-empty areas, whose scale is tiny, weigh no more than busy ones), coverage80,
        coverage95, pit80 and pit95 (:func:`pit_coverage`: the randomized-PIT coverage, which a calibrated
        forecaster brings to the nominal share even where the count is small), width80, width95 and n
        (forecasts scored), rounded."""
        if not self.actual:
            return {"n": 0}
        a, m = np.concatenate(self.actual), np.concatenate(self.mean)
        b, s = np.concatenate(self.bounds, axis=1), np.concatenate(self.scale)
        d = np.concatenate(self.dispersion)
        out = {
            "mae": mae(a, m), "rmse": rmse(a, m), "mase": mase(a, m, s),
            "mase_median_area": float(np.nanmedian(self.area_mase())) if np.isfinite(self.area_mase()).any() else math.nan,
            "coverage80": coverage(a, b[0], b[1]), "coverage95": coverage(a, b[2], b[3]),
            "pit80": pit_coverage(a, m, d, 0.8), "pit95": pit_coverage(a, m, d, 0.95),
            "width80": mean_width(b[0], b[1]), "width95": mean_width(b[2], b[3]),
        }  # fmt: skip
        return {**{k: round(v, 4) for k, v in out.items()}, "n": int(len(a))}


@dataclass
class HotspotScores:
    """PAI and PEI of one method at one horizon, per flagged share, gathered over origins (windows with calls)."""

    pai: dict[float, list[float]] = field(default_factory=dict)
    pei: dict[float, list[float]] = field(default_factory=dict)

    def add(self, actual: npt.ArrayLike, scores: npt.ArrayLike, total: int, shares: Sequence[float]) -> None:
        """One origin: calls per cell of the grid, the method's scores for the same cells, the grid's ``total``
        cells (the denominator A) and the shares of area to flag."""
        a = np.asarray(actual, dtype=np.float64)
        if a.sum() == 0:
            return
        for share in shares:
            flagged = top_cells(scores, flagged_cells(share, total))
            self.pai.setdefault(share, []).append(pai(a, flagged, total))
            self.pei.setdefault(share, []).append(pei(a, flagged))

    def summary(self) -> dict[str, dict[str, float]]:
        """``{"pai": {share: mean}, "pei": {share: mean}}``, shares as strings such as ``"0.005"``."""
        return {
            "pai": {f"{s:g}": round(float(np.mean(v)), 4) for s, v in self.pai.items()},
            "pei": {f"{s:g}": round(float(np.mean(v)), 4) for s, v in self.pei.items()},
        }
