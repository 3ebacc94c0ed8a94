"""Offline evaluation of the surge detectors on real 911 data with injected surges, against EARS baselines.

Usage::

    python bench/evaluate.py [PATH] [--injections N] [--seed S] [--out DIR]

No Kafka, no Redis: PATH (default: the real Montgomery County file in
``../shared/data``, or, where that is absent, a seeded simulator file written
to ``--out`` first; both are read through :func:`streams.ingest.sources.read_source`,
the replay's own adapters) is replayed in event time through the very
:class:`detectors.suite.DetectorSuite` the worker runs, with the event clock
ticking every minute between calls as the worker's does.

What it measures
----------------
* **Injected surges** into the real background, seeded: sizes 5, 10 and 20
  extra calls, durations 15, 30 and 60 minutes, in one res-8 cell or in a
  cell and its ring of six neighbours. The centre and start of each are those
  of a background call drawn at random from its day, so surges happen where
  and when calls do (busy places at busy hours, the hard case). The first
  ``--warmup-days`` days are warm-up only. The remaining ordinary days are
  split at random into *injection days* (up to ``--per-day`` surges each,
  hours apart: each anchored in its own part of the day's calls) and *clean
  days*.
* **Probability of detection (POD)** and the **delay** from the first injected
  call to the first alert (open or update) whose cells include an injected
  cell, within the injection and the 30 minutes after it; and the POD within
  15 minutes of the first injected call.
* **False alerts per day**: surge alerts opened on clean days, per 24 hours of
  live feed (so a file with three hours a day is judged per 24 live hours).
  Known real surge days are neither clean nor injected.
* **Baselines side by side**: CDC EARS C1, C2, C3 (:mod:`detectors.ears`) and
  a fixed threshold, computed here on the same data (background plus
  injections), the same regions (each res-8 cell and each disk of a cell and
  its ring) and the same 15- and 60-minute windows, evaluated at every call.
  Exceedances are grouped into alerts like ours (overlapping cells, less than
  90 minutes apart: our 60-minute window plus our 30 closing minutes). Each
  baseline's threshold is tuned so that its false alerts per day on the clean
  days are at most ours: the comparison is at equal false-alert rate (the
  lowest such threshold above the statistic's 95th percentile: a rule that is
  on at more than 5 % of its evaluations merges into a few endless alerts and
  is no alert at all). EARS C3 is also run on incident counts (repeat calls
  removed as our detector does) to separate the test from the declustering.
* **ROC**: our detector at several thresholds, each baseline tuned to each of
  our false-alert rates: ``roc.png``, POD against false alerts per day, one
  curve per method, for all injected surges and for the 5-call ones.
* **Real events**: when our detectors fired on the known real surges (the
  January 2016 blizzard in the main file, the 2018-11-15 snowstorm in the
  sample file), and which feed outages were reported as ``FEED_OUTAGE``.

Warm-up
-------
Warm-up is counted in live feed, not calendar time (see
:mod:`detectors.baseline`): the detectors stay silent until they have learnt
1,000 calls and 24 hours of live feed, and the first ``--warmup-days`` local
dates with calls are neither injected nor counted. On the continuous main file
that is two weeks. The sample file holds three hours (12:00-15:00) on one day
a month: a "day" there is one slice, the detectors are ready after about 15
monthly slices (its month-long gaps are reported as feed outages and never
learnt as quiet), they know the 12:00-15:00 rhythm only, and false alerts are
per 24 hours of live feed, i.e. per eight slices; its figures rest on a
handful of slices and are indicative only.

Writes ``results.json`` and ``roc.png`` to ``--out`` (default ``out/evaluation``).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import h3
import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from detectors.ears import ears_statistic  # noqa: E402
from detectors.outage import FeedMonitor  # noqa: E402
from detectors.suite import DetectorSuite  # noqa: E402
from detectors.surge import SurgeDetector, incidents  # noqa: E402
from detectors.types import DETECTION_RESOLUTION, Alert, AlertKind, AlertState, CallPoint  # noqa: E402
from streams.ingest.sources import Row, read_source  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "montgomery-pa-911-2015-12-to-2016-08.csv"
TIMEZONE = ZoneInfo("America/New_York")
SIZES = (5, 10, 20)
DURATIONS_MIN = (15, 30, 60)
SPREADS = (0, 1)
#: The headline case of the issue: 10 extra calls within 60 minutes in a cell and its ring.
HEADLINE = (10, 1)
#: After an injection ends, an alert still counts as a detection for this long.
DETECT_GRACE_S = 1800.0
#: Baseline exceedances this close in time (and overlapping in cells) are one alert.
BASELINE_MERGE_S = 5400.0
#: Windows of the baselines (the surge detector's local windows).
BASELINE_WINDOWS_S = (900, 3600)
#: Our thresholds for the ROC sweep (the default one is always included).
SWEEP = (4.5, 5.0, 5.5, 6.5, 7.5)
TICK_S = 60.0


@dataclass(frozen=True)
class RealSurge:
    name: str
    #: onset (local time) as read from the data, and how it was read
    onset: datetime
    onset_note: str
    #: local dates that are neither clean nor injected
    dates: tuple[date, ...]


@dataclass(frozen=True)
class Silence:
    start: datetime
    end: datetime
    source: str


def _local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=TIMEZONE)


#: Known real surges (shared/data/README.md). Onsets are read from the data:
#: the blizzard's Traffic calls first tripled their usual Friday-evening count
#: in the 15 minutes from 19:30 on 2016-01-22 (6 against 1.7; 11 against 1.6 from
#: 19:45); the sample file's snowstorm slice starts at its first call.
REAL_SURGES = (
    RealSurge(
        "2016-01 blizzard (main file)",
        _local("2016-01-22T19:30"),
        "first 15 min with Traffic calls at 3x the usual Friday evening; the README names 2016-01-23",
        (date(2016, 1, 22), date(2016, 1, 23), date(2016, 1, 24)),
    ),
    RealSurge(
        "2018-11-15 snowstorm (sample file)",
        _local("2018-11-15T12:00"),
        "start of the file's 12:00-15:00 slice that day (the storm was under way)",
        (date(2018, 11, 15),),
    ),
)
#: Known real feed outages, as silences in the received time the detectors see
#: (the README and calibrate.py give dispatch times, a few minutes later).
KNOWN_OUTAGES = (
    Silence(_local("2015-12-17T22:47"), _local("2015-12-18T05:27"), "data README (overnight gap)"),
    Silence(_local("2015-12-18T22:30"), _local("2015-12-19T06:08"), "data README (overnight gap)"),
    Silence(_local("2016-03-27T07:40"), _local("2016-03-27T08:38"), "calibrate.py (07:42-08:42 dispatch time)"),
    Silence(_local("2016-04-12T10:37"), _local("2016-04-12T12:10"), "calibrate.py (10:41-13:16 dispatch time)"),
    Silence(_local("2016-04-12T18:50"), _local("2016-04-12T20:04"), "calibrate.py (18:52-21:10 dispatch time)"),
    Silence(_local("2016-05-01T12:51"), _local("2016-05-02T01:57"), "data README (12:57 - 03:01 dispatch time)"),
    Silence(_local("2016-06-03T13:22"), _local("2016-06-03T14:42"), "calibrate.py (dispatch time; no gap in received time)"),
)


# ----------------------------------------------------------------------------------------- data


@dataclass
class Calls:
    """Calls as parallel lists, in event-time order; ``inj`` is the injection index or -1."""

    t: list[float] = field(default_factory=list)
    cell: list[str] = field(default_factory=list)
    category: list[str] = field(default_factory=list)
    dispatch_s: list[float | None] = field(default_factory=list)
    inj: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.t)

    def point(self, i: int) -> CallPoint:
        return CallPoint(t=self.t[i], cell=self.cell[i], category=self.category[i], dispatch_s=self.dispatch_s[i])


def load_calls(path: Path, progress: bool = True) -> tuple[Calls, Counter]:
    """Every call of ``path`` with coordinates, read by the replay's source adapters, sorted by event time."""
    rows = []
    skipped: Counter = Counter()
    for row in tqdm(read_source(path), desc=f"reading {path.name}", unit=" rows", file=sys.stderr, disable=not progress):
        if not isinstance(row, Row):
            skipped[row.reason] += 1
            continue
        call = row.call
        lat, lng = call.get("lat"), call.get("lng")
        if lat is None or lng is None or not (-90 <= lat <= 90 and -180 <= lng <= 180) or (lat == 0 and lng == 0):
            skipped["no_coordinates"] += 1
            continue
        dispatched = next((u["at"] for u in row.updates if u["status"] == "dispatched"), None)
        dispatch_s = None
        if dispatched is not None:
            dispatch_s = datetime.fromisoformat(dispatched.replace("Z", "+00:00")).timestamp() - row.event_time
        rows.append((row.event_time, h3.latlng_to_cell(lat, lng, DETECTION_RESOLUTION), call["category"], dispatch_s))
    rows.sort(key=lambda r: r[0])
    calls = Calls()
    for t, cell, cat, d in rows:
        calls.t.append(t)
        calls.cell.append(cell)
        calls.category.append(cat)
        calls.dispatch_s.append(d)
        calls.inj.append(-1)
    return calls, skipped


def simulate(out: Path, days: float, seed: int) -> Path:
    """A seeded simulator file (the fresh-clone fallback), written as the watchfloor CSV."""
    from streams.ingest.simulator import Simulator, write_csv

    path = out / f"simulated-{days:g}d-seed{seed}.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        write_csv(Simulator(seed=seed, days=days).calls(), fh)
    return path


# ------------------------------------------------------------------------------------ injection


@dataclass(frozen=True)
class Injection:
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
        return self.times[0]

    @property
    def end(self) -> float:
        return self.start + self.duration_s


@dataclass
class Plan:
    injections: list[Injection]
    clean_days: list[date]
    injection_days: list[date]
    warmup_days: list[date]
    excluded_days: dict[date, str]


def local_day(t: float) -> date:
    return datetime.fromtimestamp(t, TIMEZONE).date()


def plan_injections(calls: Calls, n: int, seed: int, warmup_days: int, per_day: int) -> Plan:
    """Choose injection days, clean days and the injected surges (seeded)."""
    rng = random.Random(seed)
    by_day: dict[date, list[int]] = defaultdict(list)
    for i, t in enumerate(calls.t):
        by_day[local_day(t)].append(i)
    days = sorted(by_day)
    warm = days[:warmup_days]
    excluded: dict[date, str] = {}
    for ev in REAL_SURGES:
        for d in ev.dates:
            if d in by_day:
                excluded[d] = ev.name
    for s in KNOWN_OUTAGES:
        d = s.start.date()
        while d <= s.end.date():
            if d in by_day and d not in excluded:
                excluded[d] = f"feed outage ({s.source})"
            d += timedelta(days=1)
    # the first and last dates of the file are partial
    for d in (days[0], days[-1]):
        excluded.setdefault(d, "partial first/last date of the file")
    # a day with a handful of calls (a stray record in a sampled export) is no background to inject into
    for d in days:
        if len(by_day[d]) < 20:
            excluded.setdefault(d, f"only {len(by_day[d])} calls")
    eligible = [d for d in days[warmup_days:] if d not in excluded]
    rng.shuffle(eligible)
    n_days = min(len(eligible) // 2, max(1, math.ceil(n / per_day))) if n else 0
    inj_days = sorted(eligible[:n_days])
    clean = sorted(eligible[n_days:])
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
        # slot k of per_day takes its anchor call from the k-th part of the day's calls (surges hours apart)
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
    return Plan(injections, clean, inj_days, warm, excluded)


def merge(background: Calls, injections: list[Injection]) -> Calls:
    rows = list(zip(background.t, background.cell, background.category, background.dispatch_s, background.inj, strict=True))
    for inj in injections:
        rows += [(t, c, inj.category, None, inj.index) for t, c in zip(inj.times, inj.call_cells, strict=True)]
    rows.sort(key=lambda r: (r[0], r[4]))
    out = Calls()
    for t, c, k, d, j in rows:
        out.t.append(t)
        out.cell.append(c)
        out.category.append(k)
        out.dispatch_s.append(d)
        out.inj.append(j)
    return out


# ----------------------------------------------------------------------------------- our detector


def make_suite(threshold: float | None = None) -> DetectorSuite:
    surge = SurgeDetector() if threshold is None else SurgeDetector(threshold=threshold)
    return DetectorSuite(surge=surge, feed=FeedMonitor(), score=False)


def replay(suite: DetectorSuite, calls: Calls, progress: bool = False, desc: str = "replaying") -> tuple[list[Alert], float]:
    """Every call through ``suite.process``, the clock ticking every minute in between; alerts and seconds taken."""
    alerts: list[Alert] = []
    started = time.perf_counter()
    last = None
    for i in tqdm(range(len(calls)), desc=desc, unit=" calls", file=sys.stderr, disable=not progress, mininterval=0.5):
        t = calls.t[i]
        if last is not None:
            tick = (math.floor(last / TICK_S) + 1) * TICK_S
            while tick < t:
                alerts += suite.advance(tick)
                tick += TICK_S
        alerts += suite.process(calls.point(i))
        last = t
    return alerts, time.perf_counter() - started


def _replay_threshold(args: tuple[float, Calls]) -> tuple[float, list[Alert], float]:
    threshold, calls = args
    alerts, seconds = replay(make_suite(threshold), calls)
    return threshold, alerts, seconds


# ------------------------------------------------------------------------------------- scoring


@dataclass
class Score:
    method: str
    threshold: float
    false_alerts: int
    clean_days: float
    delays: dict[int, float | None]  # injection index -> delay (s) or None

    @property
    def fa_per_day(self) -> float:
        return self.false_alerts / self.clean_days if self.clean_days else float("nan")


def live_days(calls: Calls, days: set[date]) -> float:
    """24-hour days of live feed on ``days``: gaps between consecutive calls, each capped at 3 hours."""
    seconds = 0.0
    for a, b in zip(calls.t, calls.t[1:], strict=False):
        if local_day(a) in days:
            seconds += min(b - a, 3 * 3600.0)
    return seconds / 86400.0


def score_alerts(method: str, threshold: float, alerts: list[Alert], plan: Plan, clean_live_days: float) -> Score:
    clean = set(plan.clean_days)
    surge = [a for a in alerts if a.kind is AlertKind.SURGE]
    false_alerts = sum(1 for a in surge if a.state is AlertState.OPEN and local_day(a.at) in clean)
    reports = sorted((a.at, tuple(a.cells)) for a in surge if a.state in (AlertState.OPEN, AlertState.UPDATE))
    return Score(method, threshold, false_alerts, clean_live_days, injection_delays(plan, reports))


def injection_delays(plan: Plan, reports: list[tuple[float, tuple]]) -> dict[int, float | None]:
    """Per injection, seconds from its first call to the first report (``(time, cells)``, sorted by time)
    touching its cells before it ends plus the grace period; None when none does."""
    times = [r[0] for r in reports]
    delays: dict[int, float | None] = {}
    for inj in plan.injections:
        lo = np.searchsorted(times, inj.first, side="left")
        hi = np.searchsorted(times, inj.end + DETECT_GRACE_S, side="right")
        cells = set(inj.cells)
        delays[inj.index] = next((reports[k][0] - inj.first for k in range(lo, hi) if cells.intersection(reports[k][1])), None)
    return delays


# ------------------------------------------------------------------------------------- baselines


@dataclass
class Points:
    """Evaluation points of the baselines: one per (region, call in it)."""

    t: np.ndarray
    region: np.ndarray  # region index
    stats: dict[str, np.ndarray]


def baseline_points(calls: Calls, incidents_only: np.ndarray | None = None) -> tuple[Points, list[tuple[str, ...]]]:
    """EARS C1, C2, C3 and fixed-threshold statistics at every call, for every cell and disk containing it.

    With ``incidents_only`` (a boolean mask over calls) only those calls are counted (EARS on incidents).
    """
    cell_ids: dict[str, int] = {}
    regions: list[tuple[str, ...]] = []
    region_ids: dict[str, int] = {}

    def region(key: str, cells: tuple[str, ...]) -> int:
        r = region_ids.get(key)
        if r is None:
            r = region_ids[key] = len(regions)
            regions.append(cells)
        return r

    memberships: list[tuple[int, int]] = []  # (region, call index)
    disks: dict[str, tuple[str, ...]] = {}
    for i, cell in enumerate(calls.cell):
        if incidents_only is not None and not incidents_only[i]:
            continue
        cell_ids.setdefault(cell, len(cell_ids))
        memberships.append((region(f"c{cell}", (cell,)), i))
        ring = disks.get(cell)
        if ring is None:
            ring = disks[cell] = tuple(h3.grid_disk(cell, 1))
        for centre in ring:
            d = disks.get(centre)
            if d is None:
                d = disks[centre] = tuple(h3.grid_disk(centre, 1))
            memberships.append((region(f"d{centre}", d), i))
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


#: Floor of the EARS standard deviation for sparse counts (see detectors/ears.py).
MIN_SIGMA = 0.5


def baseline_alerts(points: Points, regions: list[tuple[str, ...]], stat: np.ndarray, threshold: float) -> list[tuple[float, float, tuple]]:
    """Exceedances grouped into alerts: ``(opened_at, exceedance_at, cells)`` per exceedance, first one opens."""
    idx = np.nonzero(stat >= threshold)[0]
    idx = idx[np.argsort(points.t[idx], kind="stable")]
    open_eps: list[list] = []  # [footprint set, last t, opened at]
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
    exc = baseline_alerts(points, regions, stat, threshold)
    clean = set(plan.clean_days)
    opened = {e[0] for e in exc}
    false_alerts = sum(1 for t in opened if local_day(t) in clean)
    reports = [(t, cells) for _, t, cells in exc]  # already in time order
    return Score(method, threshold, false_alerts, clean_live_days, injection_delays(plan, reports))


class Tuner:
    """Thresholds of one baseline method, scored on demand and remembered (several targets share them)."""

    def __init__(self, method: str, points: Points, regions: list[tuple[str, ...]], stat: np.ndarray, plan: Plan, clean_live_days: float):
        self.method, self.points, self.regions, self.stat, self.plan, self.clean = method, points, regions, stat, plan, clean_live_days
        finite = stat[np.isfinite(stat)]
        # A rule on at more than 5 % of its evaluations is no alert (and its exceedances merge into a few
        # county-wide episodes that look like few false alerts): thresholds start at the 95th percentile.
        floor = np.quantile(finite, 0.95) if len(finite) else 0.0
        candidates = np.unique(finite[(finite > 0) & (finite >= floor)])
        if len(candidates) > 4000:
            candidates = np.unique(np.quantile(candidates, np.linspace(0, 1, 4000)))
        self.candidates = np.append(candidates, np.inf)
        self._cache: dict[int, Score] = {}

    def at(self, k: int) -> Score:
        if k not in self._cache:
            self._cache[k] = score_baseline(
                self.method, self.points, self.regions, self.stat, float(self.candidates[k]), self.plan, self.clean
            )
        return self._cache[k]

    def tune(self, target: float) -> Score:
        """The lowest threshold whose false alerts per day on clean days are at most ``target``.

        Galloping down from the top (high thresholds are cheap: few exceedances), then bisection.
        """
        lo, hi = 0, len(self.candidates) - 1  # invariant: candidates[hi] meets the target
        step = 1
        while True:
            k = hi - step
            if k <= lo:
                if self.at(lo).fa_per_day <= target:
                    return self.at(lo)
                break
            if self.at(k).fa_per_day > target:
                lo = k
                break
            hi, step = k, step * 2
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.at(mid).fa_per_day <= target:
                hi = mid
            else:
                lo = mid
        return self.at(hi)


# ------------------------------------------------------------------------------------- summaries


def curve_point(score: Score, plan: Plan) -> dict:
    """One point of the ROC curves: false alerts per day, and POD of all surges and of the smallest."""
    return {
        "threshold": score.threshold,
        "fa_per_day": round(score.fa_per_day, 3),
        "pod_all": round(pod(score, plan)[0], 3),
        "pod_all_15min": round(pod(score, plan, within_s=900.0)[0], 3),
        "pod_size5": round(pod(score, plan, SIZES[0])[0], 3),
    }


def pod(
    score: Score, plan: Plan, size: int | None = None, spread: int | None = None, duration: int | None = None, within_s: float = math.inf
) -> tuple[float, int]:
    """Share of the chosen injections detected (within ``within_s`` of their first call), and how many were chosen."""
    chosen = [
        i
        for i in plan.injections
        if (size is None or i.size == size)
        and (spread is None or i.spread == spread)
        and (duration is None or i.duration_s == duration * 60)
    ]
    if not chosen:
        return float("nan"), 0
    hits = sum(score.delays[i.index] is not None and score.delays[i.index] <= within_s for i in chosen)
    return hits / len(chosen), len(chosen)


def delays_min(score: Score, plan: Plan, size: int | None = None, spread: int | None = None) -> list[float]:
    return [
        score.delays[i.index] / 60.0
        for i in plan.injections
        if (size is None or i.size == size) and (spread is None or i.spread == spread) and score.delays[i.index] is not None
    ]


def summary(score: Score, plan: Plan) -> dict:
    size, spread = HEADLINE
    d = delays_min(score, plan, size, spread)
    out = {
        "method": score.method,
        "threshold": score.threshold,
        "false_alerts": score.false_alerts,
        "clean_days": round(score.clean_days, 2),
        "false_alerts_per_day": round(score.fa_per_day, 3),
        "pod_by_size": {str(s): round(pod(score, plan, s)[0], 3) for s in SIZES},
        "pod_by_size_spread": {f"{s}/{'ring' if sp else 'cell'}": round(pod(score, plan, s, sp)[0], 3) for s in SIZES for sp in SPREADS},
        "pod_by_size_duration": {f"{s}/{du}min": round(pod(score, plan, s, None, du)[0], 3) for s in SIZES for du in DURATIONS_MIN},
        "pod_all": round(pod(score, plan)[0], 3),
        "headline_pod": round(pod(score, plan, size, spread)[0], 3),
        "headline_pod_15min": round(pod(score, plan, size, spread, within_s=900.0)[0], 3),
        "headline_n": pod(score, plan, size, spread)[1],
        "headline_delay_median_min": round(float(np.median(d)), 1) if d else None,
        "headline_delay_p90_min": round(float(np.percentile(d, 90)), 1) if d else None,
    }
    for s in SIZES:
        ds = delays_min(score, plan, s)
        out[f"delay_median_min_size{s}"] = round(float(np.median(ds)), 1) if ds else None
        out[f"delay_p90_min_size{s}"] = round(float(np.percentile(ds, 90)), 1) if ds else None
    return out


def format_table(rows: list[dict]) -> str:
    head = (
        f"{'method':<26} {'threshold':>9} {'FA/day':>7} {'POD@5':>6} {'POD@10':>7} {'POD@20':>7} "
        f"{'POD@10 ring':>11} {'<=15 min':>8} {'median':>7} {'p90':>6}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        med = r["headline_delay_median_min"]
        p90 = r["headline_delay_p90_min"]
        lines.append(
            f"{r['method']:<26} {r['threshold']:>9.3g} {r['false_alerts_per_day']:>7.2f} "
            f"{r['pod_by_size']['5']:>6.2f} {r['pod_by_size']['10']:>7.2f} {r['pod_by_size']['20']:>7.2f} "
            f"{r['headline_pod']:>11.2f} {r['headline_pod_15min']:>8.2f} "
            f"{('-' if med is None else f'{med:.1f}'):>7} {('-' if p90 is None else f'{p90:.1f}'):>6}"
        )
    lines.append("POD@k: detected share of surges of k extra calls (15-60 min, one cell or a cell and its ring);")
    lines.append(
        "POD@10 ring: 10 extra calls in a cell and its 6 neighbours; <=15 min: detected within 15 minutes of the first injected call;"
    )
    lines.append("median, p90: delays (minutes) from the first injected call to the alert, for those surges.")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------- real events


def real_events(alerts: list[Alert], calls: Calls) -> dict:
    out: dict = {"surges": [], "outages": [], "other_outage_alerts": []}
    fmt = "%Y-%m-%d %H:%M"
    times = np.array(calls.t)

    def calls_between(lo: float, hi: float) -> int:
        return int(np.searchsorted(times, hi, side="right") - np.searchsorted(times, lo, side="left"))

    for ev in REAL_SURGES:
        onset = ev.onset.timestamp()
        if calls_between(onset - 3 * 3600, onset + 3 * 3600) < 50:
            continue  # the file does not cover this event
        if ev.onset.date() == date(2018, 11, 15):
            # the sample's slice: the first call that day
            onset = min((t for t in calls.t if local_day(t) == ev.onset.date()), default=onset)
        fired = [
            a
            for a in alerts
            if a.kind is AlertKind.SURGE and a.state in (AlertState.OPEN, AlertState.UPDATE) and onset - 3600 <= a.at <= onset + 6 * 3600
        ]
        opened = [a for a in fired if a.state is AlertState.OPEN]
        first = fired[0] if fired else None
        first_open_after = next((a for a in opened if a.at >= onset), None)
        juris = next((a for a in fired if a.id.startswith("surge:jurisdiction")), None)
        out["surges"].append(
            {
                "name": ev.name,
                "onset": datetime.fromtimestamp(onset, TIMEZONE).strftime(fmt),
                "onset_note": ev.onset_note,
                "first_alert": None if first is None else _describe(first, onset),
                "first_jurisdiction_alert": None if juris is None else _describe(juris, onset),
                "first_open_after_onset": None if first_open_after is None else _describe(first_open_after, onset),
                "alerts_opened_in_6h": len(opened),
            }
        )
    outage_alerts = [a for a in alerts if a.kind is AlertKind.FEED_OUTAGE and a.state is AlertState.OPEN]
    matched = set()
    for s in KNOWN_OUTAGES:
        lo, hi = s.start.timestamp(), s.end.timestamp()
        if calls_between(lo - 3600, lo) == 0 or calls_between(hi, hi + 3600) == 0:
            continue  # the file does not cover this silence
        hit = next((a for a in outage_alerts if abs(a.started_at - lo) <= 600 and a.at <= hi), None)
        surges_after = [a.reason for a in alerts if a.kind is AlertKind.SURGE and a.state is AlertState.OPEN and lo <= a.at <= hi + 3600]
        if hit is not None:
            matched.add(hit.id)
        out["outages"].append(
            {
                "silence": f"{s.start.strftime(fmt)} .. {s.end.strftime(fmt)}",
                "minutes": round((hi - lo) / 60),
                "source": s.source,
                "reported_as_feed_outage": hit is not None,
                "reported_after_min": None if hit is None else round((hit.at - lo) / 60),
                "expected_calls_when_reported": None if hit is None else hit.expected,
                "surge_alerts_during_or_1h_after": surges_after,
            }
        )
    for a in outage_alerts:
        if a.id not in matched:
            close = next((b for b in alerts if b.id == a.id and b.state is AlertState.CLOSED), None)
            out["other_outage_alerts"].append(
                {
                    "silence_from": datetime.fromtimestamp(a.started_at, TIMEZONE).strftime(fmt),
                    "minutes": None if close is None else close.window_min,
                    "expected_calls": None if close is None else close.expected,
                }
            )
    return out


def _describe(a: Alert, onset: float) -> dict:
    return {
        "at": datetime.fromtimestamp(a.at, TIMEZONE).strftime("%Y-%m-%d %H:%M"),
        "minutes_after_onset": round((a.at - onset) / 60, 1),
        "state": a.state.value,
        "reason": a.reason,
    }


# ------------------------------------------------------------------------------------------- plot


def plot(curves: dict[str, list[dict]], path: Path, title: str) -> None:
    """POD against false alerts per day, one curve per method: all injected surges, and the 5-call ones."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 5), sharey=True)
    panels = (("pod_all", "all injected surges (5, 10, 20 calls; 15-60 min; cell or ring)"), ("pod_size5", "surges of 5 extra calls"))
    for ax, (key, label) in zip(axes, panels, strict=True):
        for name, pts in curves.items():
            pts = sorted(pts, key=lambda p: p["fa_per_day"])
            xs = [max(p["fa_per_day"], 0.01) for p in pts]
            ax.plot(xs, [p[key] for p in pts], marker="o", label=name, linewidth=2.5 if "ours" in name else 1.2)
        ax.axvline(1.0, color="grey", linestyle=":", label="1 false alert a day")
        ax.axhline(0.9, color="grey", linestyle="--", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("false alerts per day (clean days, whole jurisdiction)")
        ax.set_title(label, fontsize=10)
        ax.set_ylim(0, 1.02)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("probability of detection")
    axes[1].legend(fontsize=8, loc="lower right")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ------------------------------------------------------------------------------------------- main


def evaluate(
    path: Path,
    out: Path,
    injections: int,
    seed: int,
    warmup_days: int,
    per_day: int,
    sweep: tuple[float, ...] = SWEEP,
    workers: int = 2,
    progress: bool = True,
    make_plot: bool = True,
) -> dict:
    """Run the whole evaluation; returns what ``results.json`` holds."""
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    background, skipped = load_calls(path, progress)
    plan = plan_injections(background, injections, seed, warmup_days, per_day)
    calls = merge(background, plan.injections)
    clean_live = live_days(background, set(plan.clean_days))
    default_threshold = SurgeDetector().threshold

    # Our detector: the default configuration, and the sweep (in worker processes).
    alerts, seconds = replay(make_suite(), calls, progress, desc="surge detector")
    ours = score_alerts("surge-poisson-scan", default_threshold, alerts, plan, clean_live)
    sweep_scores = {default_threshold: ours}
    sweep = tuple(x for x in sweep if x != default_threshold)
    if sweep:
        jobs = [(x, calls) for x in sweep]
        if workers > 1:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                results = list(
                    tqdm(pool.map(_replay_threshold, jobs), total=len(jobs), desc="threshold sweep", file=sys.stderr, disable=not progress)
                )
        else:
            results = [_replay_threshold(j) for j in tqdm(jobs, desc="threshold sweep", file=sys.stderr, disable=not progress)]
        for x, al, _ in results:
            sweep_scores[x] = score_alerts("surge-poisson-scan", x, al, plan, clean_live)

    # Baselines on the same calls, regions and windows.
    points, regions = baseline_points(calls)
    incident_mask = _incident_mask(calls)
    points_inc, regions_inc = baseline_points(calls, incident_mask)
    methods = {
        "EARS C1": (points, regions, points.stats["C1"]),
        "EARS C2": (points, regions, points.stats["C2"]),
        "EARS C3": (points, regions, points.stats["C3"]),
        "EARS C3 (incidents)": (points_inc, regions_inc, points_inc.stats["C3"]),
        "fixed threshold": (points, regions, points.stats["fixed"]),
    }
    target = ours.fa_per_day
    table = [summary(ours, plan)]
    curves = {"surge-poisson-scan (ours)": [curve_point(sc, plan) for _, sc in sorted(sweep_scores.items())]}
    for name, (pts, regs, stat) in tqdm(methods.items(), desc="baselines", file=sys.stderr, disable=not progress):
        tuner = Tuner(name, pts, regs, stat, plan, clean_live)
        table.append(summary(tuner.tune(target), plan))
        curves[name] = [curve_point(tuner.tune(sc.fa_per_day), plan) for sc in sweep_scores.values()]

    results = {
        "data": str(path),
        "calls": len(background),
        "skipped_rows": dict(skipped),
        "seed": seed,
        "injections": len(plan.injections),
        "injection_days": len(plan.injection_days),
        "clean_days": len(plan.clean_days),
        "clean_live_days": round(clean_live, 2),
        "warmup_days": [d.isoformat() for d in plan.warmup_days],
        "excluded_days": {d.isoformat(): why for d, why in sorted(plan.excluded_days.items())},
        "detector": repr(SurgeDetector()),
        "feed_monitor": repr(FeedMonitor()),
        "table": table,
        "sweep": [summary(sc, plan) for _, sc in sorted(sweep_scores.items())],
        "roc": curves,
        "real_events": real_events(alerts, background),
        "runtime": {
            "replay_seconds": round(seconds, 1),
            "calls_per_second": round(len(calls) / seconds),
            "total_seconds": round(time.perf_counter() - started, 1),
        },
        "injection_list": [
            {
                "index": i.index,
                "day": i.day.isoformat(),
                "start": datetime.fromtimestamp(i.start, TIMEZONE).strftime("%Y-%m-%d %H:%M"),
                "size": i.size,
                "duration_min": round(i.duration_s / 60),
                "spread": "ring" if i.spread else "cell",
                "cells": list(i.cells),
                "delay_min": None if ours.delays[i.index] is None else round(ours.delays[i.index] / 60, 1),
            }
            for i in plan.injections
        ],
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    if make_plot:
        plot(curves, out / "roc.png", f"{path.name}: detection against false alerts, each baseline tuned to each of our rates")
    results["runtime"]["total_seconds"] = round(time.perf_counter() - started, 1)
    return results


def _incident_mask(calls: Calls) -> np.ndarray:
    """Which calls our detector counts as new incidents (its repeat rule), for EARS on incidents."""
    return np.array(incidents(calls.point(i) for i in range(len(calls))), dtype=bool)


def report(results: dict) -> str:
    lines = [
        f"data: {results['data']} ({results['calls']} calls)",
        f"{results['injections']} injected surges on {results['injection_days']} days; "
        f"false alerts counted on {results['clean_days']} clean days ({results['clean_live_days']} days of live feed)",
        "",
        format_table(results["table"]),
        "",
        "Our detector by size and spread (POD):",
    ]
    ours = results["table"][0]
    lines.append("  " + "  ".join(f"{k}: {v:.2f}" for k, v in ours["pod_by_size_spread"].items()))
    lines.append("  by size and duration: " + "  ".join(f"{k}: {v:.2f}" for k, v in ours["pod_by_size_duration"].items()))
    lines.append(
        "  delays (min) median/p90 by size: "
        + "  ".join(f"{s}: {ours[f'delay_median_min_size{s}']}/{ours[f'delay_p90_min_size{s}']}" for s in SIZES)
    )
    lines.append("")
    lines.append(
        "Threshold sweep (ours): "
        + "  ".join(
            f"{r['threshold']:g}: FA/day {r['false_alerts_per_day']:.2f} POD@10 ring {r['headline_pod']:.2f}" for r in results["sweep"]
        )
    )
    lines.append("")
    lines.append("Real events:")
    ev = results["real_events"]
    if not ev["surges"]:
        lines.append("  no known real surge in this file")
    for s in ev["surges"]:
        lines.append(f"  {s['name']}: onset {s['onset']} ({s['onset_note']})")
        for key in ("first_alert", "first_open_after_onset", "first_jurisdiction_alert"):
            a = s[key]
            if a is None:
                lines.append(f"    {key}: none")
            else:
                lines.append(f"    {key}: {a['at']} ({a['minutes_after_onset']:+.0f} min): {a['reason']}")
        lines.append(f"    surge alerts opened from 1 h before to 6 h after onset: {s['alerts_opened_in_6h']}")
    for o in ev["outages"]:
        state = (
            f"FEED_OUTAGE after {o['reported_after_min']} min ({o['expected_calls_when_reported']} calls expected)"
            if o["reported_as_feed_outage"]
            else "not reported"
        )
        surges = len(o["surge_alerts_during_or_1h_after"])
        lines.append(f"  outage {o['silence']} ({o['minutes']} min, {o['source']}): {state}; surge alerts during or 1 h after: {surges}")
    if ev["other_outage_alerts"]:
        lines.append(
            f"  other FEED_OUTAGE alerts: {len(ev['other_outage_alerts'])}"
            + (" (the first 10)" if len(ev["other_outage_alerts"]) > 10 else "")
        )
        for o in ev["other_outage_alerts"][:10]:
            lines.append(f"    silence from {o['silence_from']}, {o['minutes']} min, {o['expected_calls']} calls expected")
    rt = results["runtime"]
    lines.append("")
    lines.append(
        f"runtime: detector replay {rt['replay_seconds']} s ({rt['calls_per_second']} calls/s, minute ticks included); "
        f"total {rt['total_seconds']} s"
    )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python bench/evaluate.py", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "path",
        nargs="?",
        type=Path,
        default=None,
        help=f"a 911 CSV any source adapter reads (default {DEFAULT_DATA.name}, or the simulator)",
    )
    p.add_argument("--injections", type=int, default=360, metavar="N", help="surges to inject (default 360)")
    p.add_argument("--seed", type=int, default=1, metavar="S", help="seed of the injections (and of the simulator fallback)")
    p.add_argument("--out", type=Path, default=ROOT / "out" / "evaluation", metavar="DIR", help="where results.json and roc.png go")
    p.add_argument("--warmup-days", type=int, default=14, metavar="D", help="first local dates used for warm-up only (default 14)")
    p.add_argument("--per-day", type=int, default=3, metavar="K", help="at most K surges per injection day, hours apart (default 3)")
    p.add_argument("--sim-days", type=float, default=120.0, metavar="N", help="days simulated when PATH is absent (default 120)")
    p.add_argument("--no-sweep", action="store_true", help="only the default threshold (no ROC curve for ours)")
    p.add_argument("--workers", type=int, default=2, help="processes for the threshold sweep (default 2)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    path = args.path
    args.out.mkdir(parents=True, exist_ok=True)
    if path is None:
        path = DEFAULT_DATA if DEFAULT_DATA.exists() else simulate(args.out, args.sim_days, args.seed)
    if not path.exists():
        build_parser().error(f"{path} does not exist")
    results = evaluate(
        path, args.out, args.injections, args.seed, args.warmup_days, args.per_day,
        sweep=() if args.no_sweep else SWEEP, workers=args.workers,
    )  # fmt: skip
    print(report(results))
    print(f"\nwrote {args.out / 'results.json'} and {args.out / 'roc.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
