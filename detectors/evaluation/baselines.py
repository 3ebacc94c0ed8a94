"""The baselines our detector is compared with: CDC EARS C1, C2, C3 and a fixed threshold.

They are computed on the same calls, the same regions (each res-8 cell and
each disk of a cell and its ring) and the same 15- and 60-minute windows as
our detector's, evaluated at every call. Exceedances are grouped into alerts
like ours (overlapping cells, less than :data:`BASELINE_MERGE_S` apart).

Examples
--------
>>> from detectors.evaluation.baselines import baseline_points
>>> from detectors.evaluation.calls import Calls
>>> calls = Calls.from_history((600.0 * k, 40.1, -75.3, "EMS", None) for k in range(5))
>>> points, regions = baseline_points(calls)
>>> len(regions), sorted(points.stats)  # the call's cell, and the seven disks holding it
(8, ['C1', 'C2', 'C3', 'fixed'])
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import h3
import numpy as np

from detectors.ears import ears_statistic
from detectors.evaluation.calls import Calls
from detectors.evaluation.injection import Plan
from detectors.evaluation.scoring import Score, injection_delays
from detectors.surge import incidents

#: Baseline exceedances this close in time (and overlapping in cells) are one alert:
#: our 60-minute window plus our 30 closing minutes.
BASELINE_MERGE_S = 5400.0
#: Windows of the baselines (the surge detector's local windows).
BASELINE_WINDOWS_S = (900, 3600)
#: Floor of the EARS standard deviation for sparse counts (see detectors/ears.py).
MIN_SIGMA = 0.5


@dataclass
class Points:
    """Evaluation points of the baselines: one per (region, call in it), with each statistic there."""

    t: np.ndarray
    region: np.ndarray  # region index
    stats: dict[str, np.ndarray]


def incident_mask(calls: Calls) -> np.ndarray:
    """Which calls our detector counts as new incidents (its repeat rule), for EARS on incidents."""
    return np.array(incidents(calls.point(i) for i in range(len(calls))), dtype=bool)


def _memberships(calls: Calls, incidents_only: np.ndarray | None) -> tuple[list[tuple[int, int]], list[tuple[str, ...]]]:
    """``(region, call index)`` for every region (cell or disk) holding each counted call, and the regions' cells."""
    regions: list[tuple[str, ...]] = []
    region_ids: dict[str, int] = {}

    def region(key: str, cells: tuple[str, ...]) -> int:
        r = region_ids.get(key)
        if r is None:
            r = region_ids[key] = len(regions)
            regions.append(cells)
        return r

    memberships: list[tuple[int, int]] = []
    disks: dict[str, tuple[str, ...]] = {}
    for i, cell in enumerate(calls.cell):
        if incidents_only is not None and not incidents_only[i]:
            continue
        memberships.append((region(f"c{cell}", (cell,)), i))
        ring = disks.get(cell)
        if ring is None:
            ring = disks[cell] = tuple(h3.grid_disk(cell, 1))
        for centre in ring:
            d = disks.get(centre)
            if d is None:
                d = disks[centre] = tuple(h3.grid_disk(centre, 1))
            memberships.append((region(f"d{centre}", d), i))
    return memberships, regions


def baseline_points(calls: Calls, incidents_only: np.ndarray | None = None) -> tuple[Points, list[tuple[str, ...]]]:
    """EARS C1, C2, C3 and fixed-threshold statistics at every call, for every cell and disk containing it.

    With ``incidents_only`` (a boolean mask over calls) only those calls are counted (EARS on incidents).
    Each statistic is the larger of its values on the 15- and the 60-minute windows.
    """
    memberships, regions = _memberships(calls, incidents_only)
    reg = np.fromiter((m[0] for m in memberships), dtype=np.int64, count=len(memberships))
    t = np.fromiter((round(calls.t[m[1]]) for m in memberships), dtype=np.int64, count=len(memberships))
    key = reg * (1 << 34) + t
    order = np.argsort(key, kind="stable")
    key, reg, t = key[order], reg[order], t[order]
    stats: dict[str, list[np.ndarray]] = defaultdict(list)
    per_window_counts = []
    for w in BASELINE_WINDOWS_S:
        # Y[k] = calls of the region in (t - (k+1) w, t - k w], k = 0 (now) .. 11
        edges = [np.searchsorted(key, key - k * w, side="right") for k in range(13)]
        counts = np.stack([edges[k] - edges[k + 1] for k in range(12)][::-1], axis=1)  # oldest first
        per_window_counts.append(counts)
        for m in ("C1", "C2", "C3"):
            stats[m].append(ears_statistic(counts, m, min_sigma=MIN_SIGMA))
    fixed = np.maximum(per_window_counts[1][:, -1], 2 * per_window_counts[0][:, -1]).astype(float)
    out = {m: np.max(np.stack(v), axis=0) for m, v in stats.items()}
    out["fixed"] = fixed
    return Points(t.astype(float), reg, out), regions


def baseline_alerts(
    points: Points, regions: list[tuple[str, ...]], stat: np.ndarray, threshold: float
) -> list[tuple[float, float, tuple[str, ...]]]:
    """Exceedances grouped into alerts: ``(opened_at, exceedance_at, cells)`` per exceedance, first one opens."""
    idx = np.nonzero(stat >= threshold)[0]
    idx = idx[np.argsort(points.t[idx], kind="stable")]
    open_eps: list[list[Any]] = []  # [footprint set, last t, opened at]
    out = []
    for i in idx:
        t = float(points.t[i])
        cells = regions[int(points.region[i])]
        open_eps = [e for e in open_eps if t - e[1] <= BASELINE_MERGE_S]
        ep = next((e for e in open_eps if e[0].intersection(cells)), None)
        if ep is None:
            ep = [set(cells), t, t]
            open_eps.append(ep)
        else:
            ep[0].update(cells)
            ep[1] = t
        out.append((ep[2], t, cells))
    return out


def score_baseline(
    method: str, points: Points, regions: list[tuple[str, ...]], stat: np.ndarray, threshold: float, plan: Plan, clean_live_days: float
) -> Score:
    """A baseline at ``threshold`` scored like our detector: alerts opened on clean days are false."""
    exc = baseline_alerts(points, regions, stat, threshold)
    clean = set(plan.clean_days)
    opened = {e[0] for e in exc}
    false_alerts = sum(1 for t in opened if plan.day(t) in clean)
    reports = [(t, cells) for _, t, cells in exc]  # already in time order
    return Score(method, threshold, false_alerts, clean_live_days, injection_delays(plan, reports))
