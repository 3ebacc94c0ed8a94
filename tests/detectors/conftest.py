"""Small seeded call streams for the detector tests (plain data, no services)."""

from __future__ import annotations

import math
import random

import h3

from detectors.baseline import ExpectedCounts
from detectors.types import CallPoint

#: A small town: a res-8 cell, 6 rings of neighbours (127 cells, about 90 km^2).
CENTRE = "882aac941dfffff"
TOWN = tuple(sorted(h3.grid_disk(CENTRE, 6)))
#: Monday 2023-11-13 00:00 America/New_York.
MONDAY = 1_699_851_600.0
CATEGORIES = ("EMS", "EMS", "TRAFFIC", "FIRE")


def day_profile(t: float) -> float:
    """Relative call rate by local hour (night a sixth of the afternoon), mean about 1."""
    hour = ((t - MONDAY) / 3600.0) % 24
    return 0.35 + 0.65 * (1 - math.cos(2 * math.pi * (hour - 4) / 24))


def background(
    seed: int, days: float, per_hour: float = 16.0, start: float = MONDAY, cells: tuple[str, ...] = TOWN, profile: bool = True
) -> list[CallPoint]:
    """Poisson calls over ``cells`` (some busier than others), with a daily rhythm, in time order."""
    rng = random.Random(seed)
    weights = [1.0 / (1 + i % 17) for i in range(len(cells))]  # a few busy cells, many quiet ones
    peak = per_hour * (2.0 if profile else 1.0) / 3600.0
    out = []
    t = start
    end = start + days * 86400.0
    while True:
        t += rng.expovariate(peak)  # thinning: a rate that never exceeds the peak
        if t >= end:
            return out
        if profile and rng.random() > day_profile(t) / 2.0:
            continue
        out.append(CallPoint(t=t, cell=rng.choices(cells, weights)[0], category=rng.choice(CATEGORIES)))


def burst(seed: int, start: float, n: int, minutes: float, cells: tuple[str, ...], category: str = "TRAFFIC") -> list[CallPoint]:
    """``n`` calls uniformly over ``minutes`` from ``start`` in ``cells``."""
    rng = random.Random(seed)
    return sorted(
        (CallPoint(t=start + rng.random() * minutes * 60.0, cell=rng.choice(cells), category=category) for _ in range(n)),
        key=lambda p: p.t,
    )


def merged(*streams: list[CallPoint]) -> list[CallPoint]:
    return sorted((p for s in streams for p in s), key=lambda p: p.t)


def quick_baseline() -> ExpectedCounts:
    """A baseline that is ready after a day and 300 calls (tests use days, not months)."""
    return ExpectedCounts(warmup_calls=300, warmup_hours=24)


def run(det, points: list[CallPoint], tick_s: float = 60.0) -> list:
    """Feed ``points`` to ``det.learn_one`` / ``det.advance`` with a clock ticking every ``tick_s`` between calls."""
    return [a for a, _ in run_tracked(det, points, tick_s)]


def run_tracked(det, points: list[CallPoint], tick_s: float = 60.0) -> list[tuple]:
    """Like :func:`run`; each alert comes with the number of points learnt when it was emitted."""
    alerts = []
    last = None
    for n, p in enumerate(points):
        if last is not None:
            tick = (math.floor(last / tick_s) + 1) * tick_s
            while tick < p.t:
                alerts += [(a, n) for a in det.advance(tick)]
                tick += tick_s
        alerts += [(a, n) for a in det.advance(p.t)]
        det.learn_one(p)
        alerts += [(a, n + 1) for a in det.advance(p.t)]
        last = p.t
    return alerts
