"""Seeded surges injected into a real background, and the split of its days into warm-up, injection and clean days.

Examples
--------
>>> from zoneinfo import ZoneInfo
>>> from detectors.evaluation.calls import Calls
>>> from detectors.evaluation.injection import merge, plan_injections
>>> background = Calls.from_history((86400.0 * d + 3600.0 * h, 40.1, -75.3, "EMS", None) for d in range(12) for h in range(24))
>>> plan = plan_injections(background, n=4, seed=1, warmup_days=2, per_day=2, tz=ZoneInfo("UTC"), wide=2)
>>> len(plan.injections), len(plan.injection_days), len(plan.warmup_days), len(plan.wide_days)
(4, 2, 2, 2)
>>> calls = merge(background, plan.injections, plan.wide)
>>> len(calls) == len(background) + sum(i.size for i in plan.injections) + sum(len(w.times) for w in plan.wide)
True
"""

from __future__ import annotations

import math
import random
import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta, tzinfo
from zoneinfo import ZoneInfo

import h3

from detectors.evaluation.calls import Calls
from detectors.evaluation.events import KNOWN_OUTAGES, REAL_SURGES, local_day
from detectors.evaluation.wide import WideInjection, plan_wide

#: Extra calls of an injected surge.
SIZES = (5, 10, 20)
#: Minutes over which an injected surge's calls are spread.
DURATIONS_MIN = (15, 30, 60)
#: 0: all in one res-8 cell; 1: in a cell and its ring of six neighbours.
SPREADS = (0, 1)
#: The headline case: 10 extra calls within 60 minutes in a cell and its ring.
HEADLINE = (10, 1)
#: A date with fewer calls than this share of the median date's is left out as near-empty (a stray record).
NEAR_EMPTY_SHARE = 0.1


@dataclass(frozen=True)
class Injection:
    """One injected surge: ``size`` calls of ``category`` at ``times`` in ``call_cells`` (drawn from ``cells``)."""

    index: int
    day: date
    start: float
    duration_s: float
    size: int
    spread: int
    category: str
    cells: tuple[str, ...]
    times: tuple[float, ...]
    call_cells: tuple[str, ...]

    @property
    def first(self) -> float:
        """Time of its first call."""
        return self.times[0]

    @property
    def end(self) -> float:
        """End of its duration."""
        return self.start + self.duration_s


@dataclass
class Plan:
    """The injections and how the background's local dates (in ``tz``, the jurisdiction's zone) are used."""

    injections: list[Injection]
    clean_days: list[date]
    injection_days: list[date]
    warmup_days: list[date]
    excluded_days: dict[date, str]
    tz: tzinfo = field(default_factory=lambda: ZoneInfo("UTC"))
    #: jurisdiction-wide surges (:mod:`detectors.evaluation.wide`), one on each of ``wide_days``
    wide: list[WideInjection] = field(default_factory=list)
    wide_days: list[date] = field(default_factory=list)

    def day(self, t: float) -> date:
        """The local date of epoch seconds ``t`` in the plan's zone."""
        return local_day(t, self.tz)


def _excluded_days(by_day: dict[date, list[int]], days: list[date], tz: tzinfo) -> dict[date, str]:
    """Dates neither clean nor injected, with the reason: real surges, feed outages, partial and near-empty dates."""
    excluded: dict[date, str] = {}
    for ev in REAL_SURGES:
        for d in ev.dates:
            if d in by_day:
                excluded[d] = ev.name
    for s in KNOWN_OUTAGES:  # in their own zone, as data: their dates in the jurisdiction's
        d = s.start.astimezone(tz).date()
        while d <= s.end.astimezone(tz).date():
            if d in by_day and d not in excluded:
                excluded[d] = f"feed outage ({s.source})"
            d += timedelta(days=1)
    # the first and last dates of the file are partial
    for d in (days[0], days[-1]):
        excluded.setdefault(d, "partial first/last date of the file")
    # a date with a handful of calls against the city's usual day (a stray record in a sampled export) is no
    # background to inject into; relative to the median date, so a city of 8 calls a day keeps its ordinary dates
    floor = NEAR_EMPTY_SHARE * statistics.median(len(by_day[d]) for d in days)
    for d in days:
        if len(by_day[d]) < floor:
            excluded.setdefault(d, f"only {len(by_day[d])} calls (the median date has {floor / NEAR_EMPTY_SHARE:g})")
    return excluded


def plan_injections(calls: Calls, n: int, seed: int, warmup_days: int, per_day: int, tz: tzinfo, wide: int = 0) -> Plan:
    """Choose injection days, clean days, ``n`` injected local surges and ``wide`` jurisdiction-wide ones (seeded by ``seed``).

    Days are local dates in ``tz``, the jurisdiction's zone. The first ``warmup_days`` of them are warm-up
    only; the other ordinary dates are shuffled and split into injection days (up to ``per_day`` local
    surges each), wide-surge days (one jurisdiction-wide surge each, :func:`detectors.evaluation.wide.plan_wide`;
    at most a third of the days left after the injection days) and clean days. Sizes, durations and spreads cycle
    through every combination in shuffled batches; each surge's centre and start are those of a background
    call of its day, slot ``k`` of ``per_day`` anchored in the ``k``-th part of the day's calls (surges hours apart).
    """
    rng = random.Random(seed)
    by_day: dict[date, list[int]] = defaultdict(list)
    for i, t in enumerate(calls.t):
        by_day[local_day(t, tz)].append(i)
    days = sorted(by_day)
    warm = days[:warmup_days]
    excluded = _excluded_days(by_day, days, tz)
    eligible = [d for d in days[warmup_days:] if d not in excluded]
    rng.shuffle(eligible)
    n_days = min(len(eligible) // 2, max(1, math.ceil(n / per_day))) if n else 0
    n_wide = min(wide, (len(eligible) - n_days) // 3)
    inj_days = sorted(eligible[:n_days])
    wide_days = sorted(eligible[n_days : n_days + n_wide])
    clean = sorted(eligible[n_days + n_wide :])
    combos = [(s, d, sp) for s in SIZES for d in DURATIONS_MIN for sp in SPREADS]
    order: list[tuple[int, int, int]] = []
    while len(order) < n:
        batch = combos[:]
        rng.shuffle(batch)
        order += batch
    cat_counts = Counter(calls.category)
    cats = sorted(cat_counts)
    weights = [cat_counts[c] for c in cats]
    injections: list[Injection] = []
    slots = [(d, k) for k in range(per_day) for d in inj_days][:n]
    for idx, (d, k) in enumerate(sorted(slots)):
        members = by_day[d]
        lo = len(members) * k // per_day
        hi = max(lo + 1, len(members) * (k + 1) // per_day - len(members) // (4 * per_day))
        anchor = members[rng.randrange(lo, min(hi, len(members)))]
        size, dur_min, spread = order[idx]
        centre = calls.cell[anchor]
        cells = (centre,) if spread == 0 else (centre, *sorted(c for c in h3.grid_disk(centre, 1) if c != centre))
        start = calls.t[anchor] + rng.random() * 60.0
        times = tuple(sorted(start + rng.random() * dur_min * 60.0 for _ in range(size)))
        call_cells = tuple(rng.choice(cells) for _ in range(size))
        category = rng.choices(cats, weights)[0]
        injections.append(Injection(idx, d, start, dur_min * 60.0, size, spread, category, cells, times, call_cells))
    wides = plan_wide(calls, wide_days, n_wide, tz, random.Random(seed + 1), start_index=len(injections))
    return Plan(injections, clean, inj_days, warm, excluded, tz, wides, wide_days)


def merge(background: Calls, injections: list[Injection], wide: Sequence[WideInjection] = ()) -> Calls:
    """The background with the injected calls added (no dispatch time), in event-time order (real calls first on ties)."""
    rows = list(zip(background.t, background.cell, background.category, background.dispatch_s, background.inj, strict=True))
    for inj in injections:
        rows += [(t, c, inj.category, None, inj.index) for t, c in zip(inj.times, inj.call_cells, strict=True)]
    for w in wide:
        rows += [(t, c, k, None, w.index) for t, c, k in zip(w.times, w.call_cells, w.categories, strict=True)]
    rows.sort(key=lambda r: (r[0], r[4]))
    out = Calls()
    for t, c, k, d, j in rows:
        out.append(t, c, k, d, j)
    return out
