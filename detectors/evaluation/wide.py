"""Sustained jurisdiction-wide surges: the calls of a few hours raised by half, doubled or tripled, all over the place.

A jurisdiction-wide surge of rate ``r`` over ``h`` hours adds ``r`` times the
calls the jurisdiction usually has in those hours, where and as it usually
has them: each extra call is a copy of a background call drawn at random
(seeded) from the same local hours of other days of the same weekday (of any
weekday when fewer than two such days have calls then), keeping its cell, its
category and its offset in the window. So the extra calls follow the
background's places, categories and within-window rhythm (a storm falls where
people call from), and their number is the background's mean count in those
hours times ``r``. Each starts at a background call of its day (busy hours are
chosen as often as they are busy) and ends the same local day.

A surge is *detected* by the first surge alert (open or update) from its first
extra call to its end plus :data:`~detectors.evaluation.scoring.DETECT_GRACE_S`
that is the jurisdiction's alert or whose cells hold one of its extra calls;
the target is detection within :data:`WIDE_WITHIN_S` of its first call.

The *ideal test* beside it (:func:`ideal_pod`) bounds what any detector can
do: one Poisson test of the jurisdiction's total over the first 30 minutes,
knowing the expected count exactly and ignoring day-to-day variation, at the
false-alert budget (``budget / 48`` per half-hour test). A +100 % surge in a
city with 8 calls a day adds one call in three hours: no test flags it.

Examples
--------
>>> import random
>>> from datetime import date
>>> from zoneinfo import ZoneInfo
>>> from detectors.evaluation.calls import Calls
>>> from detectors.evaluation.wide import plan_wide
>>> bg = Calls.from_history((86400.0 * d + 600.0 * k, 40.1, -75.3, "EMS", None) for d in range(21) for k in range(144))
>>> [w] = plan_wide(bg, [date(1970, 1, 15)], 1, ZoneInfo("UTC"), random.Random(1), start_index=0)
>>> w.rate, w.hours, w.expected, len(w.times)  # +100 % over 3 hours: six calls an hour usually, 18 more
(1.0, 3, 18.0, 18)
>>> [round(ideal_pod(1.0, 1.0, e), 2) for e in (8 / 48, 6.0, 60.0)]  # 8 calls a day; 12 an hour; 120 an hour
[0.04, 0.54, 1.0]
"""

from __future__ import annotations

import bisect
import math
import random
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any

import numpy as np

from detectors.evaluation.calls import Calls
from detectors.tails import log10_poisson_sf

#: Extra calls as a fraction of the usual ones: +50 %, +100 %, +200 %.
RATES = (0.5, 1.0, 2.0)
#: Hours a jurisdiction-wide surge lasts.
HOURS = (1, 2, 3)
#: The headline case: +100 % over 3 hours.
WIDE_HEADLINE = (1.0, 3)
#: The target delay: flagged within 30 minutes of its first call.
WIDE_WITHIN_S = 1800.0


@dataclass(frozen=True)
class WideInjection:
    """One jurisdiction-wide surge: ``len(times)`` extra calls (``rate`` times the ``expected`` usual ones) over ``hours``."""

    index: int
    day: date
    start: float
    hours: int
    rate: float
    expected: float
    times: tuple[float, ...]
    call_cells: tuple[str, ...]
    categories: tuple[str, ...]

    @property
    def duration_s(self) -> float:
        return 3600.0 * self.hours

    @property
    def first(self) -> float:
        """Time of its first extra call (its start when it has none)."""
        return self.times[0] if self.times else self.start

    @property
    def end(self) -> float:
        return self.start + self.duration_s


def _local_midnight(d: date, tz: tzinfo) -> datetime:
    return datetime.combine(d, time(0), tzinfo=tz)


def plan_wide(calls: Calls, days: list[date], n: int, tz: tzinfo, rng: random.Random, start_index: int) -> list[WideInjection]:
    """``n`` jurisdiction-wide surges on ``days`` (one a day, cycling through :data:`RATES` x :data:`HOURS`
    in shuffled batches), drawn from the background ``calls`` (local dates in ``tz``); indexes from ``start_index``."""
    t = calls.t
    by_day: dict[date, list[int]] = defaultdict(list)
    for i, ti in enumerate(t):
        by_day[datetime.fromtimestamp(ti, tz).date()].append(i)
    combos = [(r, h) for r in RATES for h in HOURS]
    order: list[tuple[float, int]] = []
    while len(order) < n:
        batch = combos[:]
        rng.shuffle(batch)
        order += batch
    out: list[WideInjection] = []
    for k, d in enumerate(sorted(days)[:n]):
        rate, hours = order[k]
        midnight = _local_midnight(d, tz)
        latest = (midnight + timedelta(days=1) - timedelta(hours=hours)).timestamp()
        anchors = [i for i in by_day[d] if t[i] <= latest] or by_day[d][:1]
        if not anchors:
            continue
        start = t[rng.choice(anchors)]
        offset = datetime.fromtimestamp(start, tz) - midnight  # wall-clock offset into its day
        pool = _pool(calls, by_day, d, offset, hours, tz)
        windows = len(pool)
        drawn: list[tuple[float, int]] = [(s, i) for w in pool for s, i in w]
        expected = len(drawn) / windows if windows else 0.0
        size = round(rate * expected)
        picks = sorted((rng.choice(drawn) for _ in range(size)), key=lambda p: p[0]) if drawn else []
        out.append(
            WideInjection(
                start_index + k, d, start, hours, rate, round(expected, 2),
                tuple(start + s for s, _ in picks), tuple(calls.cell[i] for _, i in picks), tuple(calls.category[i] for _, i in picks),
            )
        )  # fmt: skip
    return out


def _pool(
    calls: Calls, by_day: dict[date, list[int]], day: date, offset: timedelta, hours: int, tz: tzinfo
) -> list[list[tuple[float, int]]]:
    """The background calls of the same local hours on other days: per day with calls then, ``(seconds into
    the window, call index)``; days of the same weekday when at least two have calls then, else any day."""
    per_day: dict[date, list[tuple[float, int]]] = {}
    for other in by_day:
        if other == day:
            continue
        lo = (_local_midnight(other, tz) + offset).timestamp()
        hi = lo + 3600.0 * hours
        a, b = bisect.bisect_left(calls.t, lo), bisect.bisect_left(calls.t, hi)
        if b > a:
            per_day[other] = [(calls.t[i] - lo, i) for i in range(a, b)]
    same = [w for o, w in per_day.items() if o.weekday() == day.weekday()]
    return same if len(same) >= 2 else list(per_day.values())


def ideal_pod(rate: float, budget_per_day: float, expected_30min: float) -> float:
    """Power of the ideal 30-minute test (see the module): P(Poisson((1 + rate) E) >= c), with ``c`` the
    smallest count whose tail under Poisson(E) is at most ``budget_per_day / 48``."""
    if expected_30min <= 0:
        return 0.0
    log_alpha = math.log10(budget_per_day / 48.0)
    c = 1
    while log10_poisson_sf(c, expected_30min) > log_alpha:
        c += 1
    return float(10.0 ** log10_poisson_sf(c, (1.0 + rate) * expected_30min))


def sequential_delay_min(rate: float, budget_per_day: float, usual_per_min: float) -> float:
    """About the shortest mean delay (minutes) of any detector watching all the time at ``budget_per_day`` false
    alerts a day, for a rise of ``rate`` (1.0: +100 %) over ``usual_per_min`` calls a minute (Lorden's bound,
    first order: ``ln(minutes between false alerts) / KL``, the Kullback-Leibler divergence a minute of
    Poisson((1 + rate) u) from Poisson(u) being ``u ((1 + rate) ln(1 + rate) - rate)``). Unlike the ideal test,
    it does not know when the surge starts: it is what watching every minute costs.

    >>> round(sequential_delay_min(1.0, 1.0, 70.4 / 180))  # Montgomery, +100 %: about 48 minutes, not 30
    48
    >>> round(sequential_delay_min(1.0, 1.0, 8 / 1440) / 1440, 1)  # a city of 8 calls a day: days (2.4)
    2.4
    """
    if usual_per_min <= 0 or rate <= 0:
        return math.inf
    kl = usual_per_min * ((1.0 + rate) * math.log1p(rate) - rate)
    return math.log(1440.0 / budget_per_day) / kl


def wide_delays(
    injections: list[WideInjection], reports: list[tuple[float, tuple[str, ...], bool]], grace_s: float
) -> dict[int, tuple[float | None, float | None]]:
    """Per surge, seconds from its first extra call to the first report ``(time, cells, is_jurisdiction)``
    (sorted by time) detecting it (any region holding one of its calls, or the jurisdiction), and to the first
    jurisdiction report; None when none does before its end plus ``grace_s``."""
    times = [r[0] for r in reports]
    out: dict[int, tuple[float | None, float | None]] = {}
    for w in injections:
        lo = bisect.bisect_left(times, w.first)
        hi = bisect.bisect_right(times, w.end + grace_s)
        cells = set(w.call_cells)
        anyone = next((reports[k][0] - w.first for k in range(lo, hi) if reports[k][2] or cells.intersection(reports[k][1])), None)
        county = next((reports[k][0] - w.first for k in range(lo, hi) if reports[k][2]), None)
        out[w.index] = (anyone, county)
    return out


def _share(delays: list[float | None], within_s: float = math.inf) -> float:
    return round(sum(d is not None and d <= within_s for d in delays) / len(delays), 3) if delays else float("nan")


def wide_summary(injections: list[WideInjection], delays: dict[int, tuple[float | None, float | None]], budget: float) -> dict[str, Any]:
    """POD (within the surge and its grace; within 30 minutes), delays and the ideal test's POD, per rate and duration."""
    rows: dict[str, Any] = {}
    for r in RATES:
        for h in HOURS:
            chosen = [w for w in injections if w.rate == r and w.hours == h]
            if not chosen:
                continue
            anyone = [delays[w.index][0] for w in chosen]
            county = [delays[w.index][1] for w in chosen]
            found = [d / 60.0 for d in anyone if d is not None]
            rows[f"+{r:.0%}/{h}h"] = {
                "n": len(chosen),
                "extra_calls_mean": round(float(np.mean([len(w.times) for w in chosen])), 1),
                "usual_calls_mean": round(float(np.mean([w.expected for w in chosen])), 1),
                "pod": _share(anyone),
                "pod_30min": _share(anyone, WIDE_WITHIN_S),
                "jurisdiction_alert_pod_30min": _share(county, WIDE_WITHIN_S),
                "delay_median_min": round(float(np.median(found)), 1) if found else None,
                "ideal_pod_30min": round(float(np.mean([ideal_pod(r, budget, w.expected * 1800.0 / w.duration_s) for w in chosen])), 3),
                "sequential_bound_min": round(
                    float(np.mean([sequential_delay_min(r, budget, w.expected * 60.0 / w.duration_s) for w in chosen])), 1
                ),
            }
    return rows
