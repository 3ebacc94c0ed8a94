"""How many days of history make the detectors valid at the first live call: bootstrap on N days, then run live.

Usage::

    python bench/bootstrap_days.py PATH (--profile P.toml | --timezone ZONE) [--days 0,1,2,3,5,7,14,28]
        [--live-days 14] [--surges 12] [--skip-days D] [--mapping M.toml | --format NAME] [--seed S] [--calibrate]

For each N of ``--days``, the detectors the worker would start from are built
as ``python -m streams.detection.bootstrap`` builds them (the worker's suite on
the profile's clock, holidays and false-alert budget; :func:`bootstrap`) on the
first N days of PATH's calls (after ``--skip-days``), and then fed the next
``--live-days`` days as the live feed (N = 0: no bootstrap, the worker's cold
start; ``--calibrate``: the thresholds fitted to the budget on the history
first, when it is long enough). Printed per N: whether the detectors were ready
at the first live call, the thresholds they started from, the surge alerts
opened a day on the live days (the file's real surges count too: an upper
bound of the false ones), and how many of ``--surges`` injected local surges on
the first live day (10 EMS calls in 10 minutes in a cell that has calls, one
every 2 hours) a surge alert covered within 15 minutes, with the median delay.

This is a benchmark: it prints figures and asserts nothing. Figures are in
docs/detection.md.
"""

from __future__ import annotations

import pickle
import random
import statistics
import sys
import time
from dataclasses import replace

from _common import parser, ruled

from detectors.evaluation.replay import replay
from detectors.types import AlertKind, AlertState, CallPoint
from streams.detection import bootstrap as bs
from streams.detection.runner import profile_suite
from streams.jurisdiction import Profile, ProfileError, default_profile, load_profile

DAY = 86400.0


def injected(live: list[CallPoint], surges: int, seed: int) -> tuple[list[CallPoint], list[tuple[float, str]]]:
    """``surges`` local surges on the first live day, 2 hours apart: 10 EMS calls, a minute apart, in a cell with calls."""
    rng = random.Random(seed)
    cells = sorted({p.cell for p in live})
    marks, extra = [], []
    for k in range(surges):
        start = live[0].t + 3600.0 * (1 + 2 * k) + rng.uniform(0, 1800)
        cell = rng.choice(cells)
        marks.append((start, cell))
        extra += [CallPoint(t=start + 60.0 * i, cell=cell, category="EMS") for i in range(10)]
    return sorted(live + extra, key=lambda p: p.t), marks


def delays_min(alerts: list, marks: list[tuple[float, str]]) -> list[float | None]:
    """Minutes from each surge's first call to the first surge alert (opened or updated) covering its cell, within 30 min."""
    out: list[float | None] = []
    for start, cell in marks:
        hits = [
            a.at - start
            for a in alerts
            if a.kind is AlertKind.SURGE
            and a.state in (AlertState.OPEN, AlertState.UPDATE)
            and cell in a.cells
            and start <= a.at <= start + 1800
        ]
        out.append(min(hits) / 60.0 if hits else None)
    return out


def main() -> int:
    p = parser(__file__, __doc__)
    p.add_argument("path", help="a 911 CSV the replay reads")
    p.add_argument("--profile", help="the jurisdiction profile (its zone, holidays and false-alert budget)")
    p.add_argument("--timezone", help="the jurisdiction's IANA zone without a profile; also that of naive times")
    p.add_argument("--mapping", help="a source mapping (TOML) that reads PATH")
    p.add_argument("--format", default="auto", help="PATH's built-in format (default: detected from the header)")
    p.add_argument("--days", default="0,1,2,3,5,7,14,28", help="days of history to bootstrap on (default 0,1,2,3,5,7,14,28)")
    p.add_argument("--live-days", type=float, default=14.0, help="days of live feed after the history (default 14)")
    p.add_argument("--surges", type=int, default=12, help="local surges injected on the first live day (default 12)")
    p.add_argument("--skip-days", type=float, default=0.0, help="days of the file skipped before the history starts")
    p.add_argument("--seed", type=int, default=1, help="seed of the injected surges' times and cells")
    p.add_argument("--calibrate", action="store_true", help="calibrate the thresholds on each history first, as bootstrap --calibrate")
    args = p.parse_args()
    try:
        days = sorted({float(d) for d in args.days.split(",")})
        profile: Profile = load_profile(args.profile) if args.profile else default_profile()
        if args.timezone:
            profile = replace(profile, timezone=args.timezone)
    except (ValueError, ProfileError) as exc:
        p.error(str(exc))
    if args.profile is None and args.timezone is None:
        p.error("give --profile P.toml or --timezone ZONE: the detectors learn on the jurisdiction's clock")
    rows = bs._rows(args.path, args.format, args.mapping, profile.timezone)  # exits with the adapters' message
    extent = profile if profile.boundary is not None or profile.box is not None else None
    points, left_out = bs.history_points(rows, resolutions=(8, 7), now=time.time() + DAY, jurisdiction=extent)
    if not points:
        raise SystemExit(f"no call of {args.path} can be used ({dict(left_out)})")
    t0 = points[0].t + args.skip_days * DAY
    points = [q for q in points if q.t >= t0]

    def span(a: float, b: float) -> list[CallPoint]:
        return [q for q in points if t0 + a * DAY <= q.t < t0 + b * DAY]

    budget = profile.false_alerts_per_day
    print(f"{args.path} ({profile.timezone}, budget {budget:g} a day): {args.live_days:g} live days after N days of history")
    head = f"{'N days':>6} {'calls':>7} {'ready':>5} {'thresholds':>10} {'surge/day':>9} {'found <=15 min':>14} {'median min':>10}"
    rows_out = []
    for n in days:
        history, live = span(0, n), span(n, n + args.live_days)
        if not live:
            print(f"N = {n:g}: the file ends before its live days", file=sys.stderr)
            break
        thresholds, calibrated = None, "shipped"
        if args.calibrate and history:
            try:
                c = bs.calibrate_on_history(history, profile, profile.timezone)
                thresholds, calibrated = (c.threshold, c.jurisdiction_threshold), f"{c.threshold:g}/{c.jurisdiction_threshold:g}"
            except ValueError:
                pass  # too short a history: the shipped thresholds, as the bootstrap does
        suite = profile_suite(profile, thresholds)
        ready = False
        if history:
            runner, summary = bs.bootstrap(history, timezone=profile.timezone, partitions=1, suite=suite)
            suite, ready = runner.suite, summary.ready["surge"]
        frozen = pickle.dumps(suite)
        plain, _ = replay(pickle.loads(frozen), bs.WorkerCalls.from_points(live))
        live_span = (live[-1].t - live[0].t) / DAY
        opened = sum(1 for a in plain if a.kind is AlertKind.SURGE and a.state is AlertState.OPEN)
        mixed, marks = injected(live, args.surges, args.seed + int(n))
        alerts, _ = replay(pickle.loads(frozen), bs.WorkerCalls.from_points(mixed))
        found = [d for d in delays_min(alerts, marks) if d is not None and d <= 15]
        median = f"{statistics.median(found):.1f}" if found else "-"
        rows_out.append(
            f"{n:>6g} {len(history):>7,} {'yes' if ready else 'no':>5} {calibrated:>10} {opened / max(live_span, 1e-9):>9.2f} "
            f"{len(found):>8}/{args.surges:<5} {median:>10}"
        )
        print(rows_out[-1], file=sys.stderr, flush=True)
    print(ruled(head, rows_out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
