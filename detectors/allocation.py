"""A recommended distribution of the next shift's units across areas, with its safeguards (pure: no I/O).

Given the units on the next shift, each area's forecast for the shift (its mean and 80 % interval,
from the worker's forecast set: :mod:`detectors.forecast`), :func:`allocate` recommends whole units
per area **proportional to forecast demand**, under two safeguards:

- a **floor**: every area keeps at least ``floor`` units. The default is 1 unit per area when there are
  at least as many units as areas, else 0 (no area can be promised a unit that does not exist);
- a **cap** on change: no area's share of the units moves more than ``cap`` (default 0.10, ten
  percentage points) from the previous shift's adopted plan. The first time (``previous`` None), and for
  an area the previous plan did not have, nothing is capped.

Why the cap. Ensign et al. (2018, "Runaway feedback loops in predictive policing", FAT*) show that when
a model is fed the incidents that its own deployment discovers, it concentrates on the same places
whatever the true rates. Calls for service are reported by residents rather than found by patrols,
which weakens that loop but does not remove it (units on scene generate self-initiated calls and
follow-ups). The cap bounds how fast any area's share can run away from one shift to the next, and
the skew report (:func:`skew`) shows allocation against calls and population so a drift is seen.

How. The shares are the forecast's shares clipped to each area's bounds (floor, and previous share
plus or minus the cap) and re-normalized: one multiplier ``lam`` such that
``sum(clip(lam * demand_share, lo, hi)) == 1`` (found by bisection; the clipped areas keep their bound
and the others share the rest in proportion to demand). Those shares times the units are rounded by
the largest-remainder (Hamilton) method, within the whole-unit bounds each floor and cap allows.
When the caps cannot all hold (they ask for more or fewer than all the units, e.g. a new area), the
cap is dropped for this shift and every row says so; the floor always holds.

Examples
--------
>>> plan = allocate(12, [AreaDemand("a", "North", 30.0, 24, 37), AreaDemand("b", "South", 10.0, 6, 14)])
>>> [(r.key, r.units) for r in plan.rows]
[('a', 9), ('b', 3)]
>>> plan.rows[1].explanation
'South: 3 of 12 units (25 %). Forecast about 10 calls (80 %: 6-14), 25 % of the expected calls; floor 1 unit; no previous shift, so no cap.'

With the previous shift's shares, no area's share moves more than 10 points:

>>> plan = allocate(10, [AreaDemand("a", "North", 30.0, 24, 37), AreaDemand("b", "South", 10.0, 6, 14)],
...                 previous={"a": 0.5, "b": 0.5})
>>> [(r.key, r.units, r.cap_bound) for r in plan.rows]
[('a', 6, True), ('b', 4, True)]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: the default cap on an area's change of share from one shift to the next (ten percentage points)
DEFAULT_CAP = 0.10
#: bisection steps for the share multiplier (2**-80 of its range: far below one unit)
_STEPS = 80
_EPS = 1e-9


@dataclass(frozen=True)
class AreaDemand:
    """One area's forecast for the shift: ``mean`` calls, 80 % interval ``lo80``..``hi80``."""

    key: str
    name: str
    mean: float
    lo80: int
    hi80: int

    def __post_init__(self) -> None:
        if not math.isfinite(self.mean) or self.mean < 0:
            raise ValueError(f"area {self.key!r}: mean must be a finite number >= 0, got {self.mean!r}")


@dataclass(frozen=True)
class Row:
    """One area's recommendation and what made it."""

    key: str
    name: str
    units: int
    share: float
    demand_share: float
    mean: float
    lo80: int
    hi80: int
    floor: int
    previous_share: float | None
    #: the floor raised it above its demand share
    floor_bound: bool
    #: the cap held its share at the previous share plus or minus the cap
    cap_bound: bool
    explanation: str

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "name": self.name,
            "units": self.units,
            "share": round(self.share, 4),
            "demand_share": round(self.demand_share, 4),
            "mean": round(self.mean, 2),
            "lo80": self.lo80,
            "hi80": self.hi80,
            "floor": self.floor,
            "previous_share": None if self.previous_share is None else round(self.previous_share, 4),
            "floor_bound": self.floor_bound,
            "cap_bound": self.cap_bound,
            "explanation": self.explanation,
        }


@dataclass(frozen=True)
class Allocation:
    """:func:`allocate`'s answer: the rows (in the order the areas were given) and the settings used."""

    units: int
    floor: int
    cap: float
    #: False when the caps could not all hold this shift and were dropped (every row says so)
    cap_held: bool
    rows: tuple[Row, ...]

    def shares(self) -> dict[str, float]:
        """Area key -> share of the units: what the next shift's cap is measured against."""
        return {r.key: r.units / self.units if self.units else 0.0 for r in self.rows}

    def to_json(self) -> dict[str, Any]:
        return {
            "units": self.units,
            "floor": self.floor,
            "cap": self.cap,
            "cap_held": self.cap_held,
            "rows": [r.to_json() for r in self.rows],
        }


def default_floor(units: int, areas: int) -> int:
    """1 unit per area when every area can have one, else 0.

    >>> default_floor(12, 10), default_floor(9, 10)
    (1, 0)
    """
    return 1 if areas and units >= areas else 0


def allocate(
    units: int,
    demands: Sequence[AreaDemand],
    *,
    floor: int | None = None,
    cap: float = DEFAULT_CAP,
    previous: Mapping[str, float] | None = None,
) -> Allocation:
    """Recommend whole units per area, proportional to forecast demand, with a floor and a cap (module docstring).

    Parameters
    ----------
    units
        Units on the next shift (>= 0).
    demands
        Each area's forecast for the shift; keys distinct.
    floor
        Units every area keeps at least (default :func:`default_floor`); ``floor * len(demands)`` must not exceed ``units``.
    cap
        Largest change of an area's share from ``previous``, 0 < cap <= 1 (1: no cap).
    previous
        Area key -> share of the units in the previous shift's adopted plan (None: the first shift).

    Raises ``ValueError`` naming the bad parameter and what is accepted.

    >>> allocate(3, [AreaDemand("a", "A", 1.0, 0, 3)] * 2)
    Traceback (most recent call last):
    ...
    ValueError: area keys must be distinct, 'a' is given twice
    >>> allocate(2, [AreaDemand("a", "A", 1.0, 0, 3), AreaDemand("b", "B", 1.0, 0, 3)], floor=2)
    Traceback (most recent call last):
    ...
    ValueError: floor 2 for 2 areas needs 4 units, only 2 given: lower the floor or add units
    """
    if isinstance(units, bool) or not isinstance(units, int) or units < 0:
        raise ValueError(f"units must be a whole number >= 0, got {units!r}")
    if not isinstance(cap, int | float) or isinstance(cap, bool) or not 0 < cap <= 1:
        raise ValueError(f"cap must be a share of the units above 0 and at most 1 (0.1 is ten points), got {cap!r}")
    keys = [d.key for d in demands]
    seen: set[str] = set()
    for k in keys:
        if k in seen:
            raise ValueError(f"area keys must be distinct, {k!r} is given twice")
        seen.add(k)
    n = len(demands)
    floor = default_floor(units, n) if floor is None else floor
    if isinstance(floor, bool) or not isinstance(floor, int) or floor < 0:
        raise ValueError(f"floor must be a whole number of units >= 0, got {floor!r}")
    if floor * n > units:
        raise ValueError(f"floor {floor} for {n} areas needs {floor * n} units, only {units} given: lower the floor or add units")
    if not n:
        return Allocation(units, floor, cap, True, ())
    total = sum(d.mean for d in demands)
    demand = [d.mean / total for d in demands] if total > 0 else [1.0 / n] * n
    prev = [None if previous is None else previous.get(k) for k in keys]
    floor_share = floor / units if units else 0.0

    def bounds(capped: bool) -> tuple[list[float], list[float]]:
        lo, hi = [], []
        for p in prev:
            low, high = floor_share, 1.0
            if capped and p is not None:
                low, high = max(low, p - cap), min(high, p + cap)
            lo.append(low)
            hi.append(max(low, high))  # the floor wins over the cap
        return lo, hi

    cap_held = True
    lo, hi = bounds(True)
    shares = _fill(demand, lo, hi)
    whole = None if shares is None or not units else _round(units, shares, lo, hi)
    if shares is None or (units and whole is None):
        cap_held = False
        lo, hi = bounds(False)
        shares = _fill(demand, lo, hi)
        assert shares is not None  # without caps: floors sum to at most 1, no upper bound below 1
        whole = _round(units, shares, lo, hi) if units else None
    counts = whole if whole is not None else [0] * n
    rows = []
    for i, d in enumerate(demands):
        share = counts[i] / units if units else 0.0
        floor_bound = floor > 0 and counts[i] <= floor and demand[i] * units < floor - _EPS
        p = prev[i]
        # held at a bound the cap set (not the floor, not the whole): the share it would have had lies beyond it
        at_high = p is not None and p + cap < 1 - _EPS and shares[i] >= hi[i] - _EPS
        at_low = p is not None and p - cap > floor_share + _EPS and shares[i] <= lo[i] + _EPS
        cap_bound = cap_held and not floor_bound and (at_high or at_low)
        rows.append(
            Row(
                d.key,
                d.name,
                counts[i],
                share,
                demand[i],
                d.mean,
                d.lo80,
                d.hi80,
                floor,
                p,
                floor_bound,
                cap_bound,
                _explain(d, counts[i], units, share, demand[i], floor, floor_bound, p, cap, cap_bound, cap_held),
            )
        )
    return Allocation(units, floor, cap, cap_held, tuple(rows))


def _fill(demand: Sequence[float], lo: Sequence[float], hi: Sequence[float]) -> list[float] | None:
    """Shares ``clip(lam * demand, lo, hi)`` summing to 1, or None when the bounds cannot make 1."""
    if sum(lo) > 1 + _EPS or sum(h if t > 0 else lo_ for t, h, lo_ in zip(demand, hi, lo, strict=True)) < 1 - _EPS:
        return None

    def total(lam: float) -> float:
        return sum(min(h, max(low, lam * t)) for t, low, h in zip(demand, lo, hi, strict=True))

    low_lam, high_lam = 0.0, 1.0
    while total(high_lam) < 1 - _EPS:
        high_lam *= 2
    for _ in range(_STEPS):
        mid = (low_lam + high_lam) / 2
        if total(mid) < 1:
            low_lam = mid
        else:
            high_lam = mid
    shares = [min(h, max(low, high_lam * t)) for t, low, h in zip(demand, lo, hi, strict=True)]
    s = sum(shares)
    return [x / s for x in shares]


def _round(units: int, shares: Sequence[float], lo: Sequence[float], hi: Sequence[float]) -> list[int] | None:
    """Whole units by largest remainder within each area's whole-unit bounds; None when the bounds cannot sum to ``units``."""
    low = [math.ceil(x * units - _EPS) for x in lo]
    high = [math.floor(x * units + _EPS) for x in hi]
    if sum(low) > units or sum(high) < units:
        return None
    quota = [s * units for s in shares]
    got = [min(high[i], max(low[i], math.floor(q + _EPS))) for i, q in enumerate(quota)]
    # largest remainder: the next unit to the area furthest below its quota (ties: the earlier area)
    while sum(got) < units:
        i = max((i for i in range(len(got)) if got[i] < high[i]), key=lambda i: (quota[i] - got[i], -i))
        got[i] += 1
    while sum(got) > units:
        i = min((i for i in range(len(got)) if got[i] > low[i]), key=lambda i: (quota[i] - got[i], i))
        got[i] -= 1
    return got


def _pct(x: float) -> str:
    return f"{round(100 * x)} %"


def _explain(
    d: AreaDemand,
    units: int,
    total: int,
    share: float,
    demand: float,
    floor: int,
    floor_bound: bool,
    previous: float | None,
    cap: float,
    cap_bound: bool,
    cap_held: bool,
) -> str:
    head = f"{d.name}: {units} of {total} unit{'' if total == 1 else 's'} ({_pct(share)})."
    forecast = f" Forecast about {round(d.mean)} calls (80 %: {d.lo80}-{d.hi80}), {_pct(demand)} of the expected calls;"
    floor_text = f" floor {floor} unit{'' if floor == 1 else 's'}" + (", which raised it" if floor_bound else "") + ";"
    if previous is None:
        cap_text = " no previous shift, so no cap."
    elif not cap_held:
        points = round(100 * cap)
        cap_text = (
            f" previous shift {_pct(previous)}; the cap of {points} points could not hold for every area this shift, so none was applied."
        )
    else:
        lo, hi = max(0.0, previous - cap), min(1.0, previous + cap)
        held = "held it there" if cap_bound else "not reached"
        cap_text = f" previous shift {_pct(previous)}, the cap of {round(100 * cap)} points allows {_pct(lo)}-{_pct(hi)}: {held}."
    return head + forecast + floor_text + cap_text


@dataclass(frozen=True)
class SkewRow:
    """One area's share of the units against its share of calls and, when configured, of population."""

    key: str
    name: str
    allocation_share: float
    calls_share: float | None
    population_share: float | None
    explanation: str

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "name": self.name,
            "allocation_share": _round4(self.allocation_share),
            "calls_share": _round4(self.calls_share),
            "population_share": _round4(self.population_share),
            "explanation": self.explanation,
        }


def skew(
    plan: Allocation, calls: Mapping[str, float] | None, population: Mapping[str, float] | None = None, *, calls_label: str = "recent calls"
) -> list[SkewRow]:
    """Each area's share of the units against its share of ``calls`` (area key -> calls, e.g. the last 24 h; None:
    not known) and of ``population`` (area key -> residents; None: "population not configured"; never invented).

    >>> plan = allocate(12, [AreaDemand("a", "North", 30.0, 24, 37), AreaDemand("b", "South", 10.0, 6, 14)])
    >>> [row.explanation for row in skew(plan, {"a": 50, "b": 50})]  # doctest: +NORMALIZE_WHITESPACE
    ['North: 75 % of the units, 50 % of recent calls (25 points more); population not configured.',
     'South: 25 % of the units, 50 % of recent calls (25 points less); population not configured.']
    """
    calls_total = sum(calls.values()) if calls else 0
    pop_total = sum(population.values()) if population else 0
    shares = plan.shares()
    out = []
    for row in plan.rows:
        a = shares[row.key]
        c = calls.get(row.key, 0) / calls_total if calls is not None and calls_total > 0 else None
        p = population.get(row.key) if population is not None and pop_total > 0 else None
        ps = None if p is None else p / pop_total
        text = f"{row.name}: {_pct(a)} of the units, "
        text += f"{_pct(c)} of {calls_label}{_versus(a, c)}; " if c is not None else f"{calls_label} not known; "
        text += f"{_pct(ps)} of the population{_versus(a, ps)}." if ps is not None else "population not configured."
        out.append(SkewRow(row.key, row.name, a, c, ps, text))
    return out


def _round4(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def _versus(a: float, b: float) -> str:
    diff = round(100 * (a - b))
    if diff == 0:
        return " (about the same)"
    return f" ({abs(diff)} point{'' if abs(diff) == 1 else 's'} {'more' if diff > 0 else 'less'})"
