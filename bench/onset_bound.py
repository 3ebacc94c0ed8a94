"""How early can a county-wide test see the January 2016 blizzard, and at what price in false alerts?

Usage::

    python bench/onset_bound.py [PATH] [--thresholds 4.5,4,3.5,3,2.5,2]

Replays PATH (default: the real Montgomery County file) from its start to
2016-03-01 through the detector suite the worker runs, once per jurisdiction
threshold, and prints for each: the first county-wide alert on 2016-01-22..24
and its explanation, and county-wide alerts opened per day outside those three
days (after the 14-day warm-up). It also prints the Traffic calls received in
each 5 minutes from 19:00 on 2016-01-22, with the count the detectors expected.

This is the evidence for the README's statement that "within 15 minutes of
19:30" cannot be met at one false alert a day: the data does not hold enough
calls by 19:45 to tell the storm from an ordinary busy quarter-hour.
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta
from pathlib import Path

from _common import MONTGOMERY, parser

from detectors.evaluation.calls import Calls
from detectors.evaluation.events import EVENTS_TIMEZONE as TIMEZONE
from detectors.evaluation.replay import make_suite, replay
from detectors.types import AlertKind, AlertState
from streams.ingest.history import read_history

STORM = (datetime(2016, 1, 22, tzinfo=TIMEZONE), datetime(2016, 1, 25, tzinfo=TIMEZONE))
ONSET = datetime(2016, 1, 22, 19, 30, tzinfo=TIMEZONE)
END = datetime(2016, 3, 1, tzinfo=TIMEZONE)
WARMUP_DAYS = 14


def head(calls: Calls, end: float) -> Calls:
    n = next((i for i, t in enumerate(calls.t) if t >= end), len(calls.t))
    return Calls(t=calls.t[:n], cell=calls.cell[:n], category=calls.category[:n], dispatch_s=calls.dispatch_s[:n], inj=calls.inj[:n])


def run(calls: Calls, threshold: float) -> tuple[str, float]:
    close = min(3.0, threshold)
    suite = make_suite(TIMEZONE.key, jurisdiction_threshold=threshold)
    suite.surge.close_threshold = close
    alerts, _ = replay(suite, calls)
    lo, hi = STORM[0].timestamp(), STORM[1].timestamp()
    warm = calls.t[0] + WARMUP_DAYS * 86400
    county = [a for a in alerts if a.kind is AlertKind.SURGE and a.state is AlertState.OPEN and a.id.startswith("surge:jurisdiction")]
    during = [a for a in county if lo <= a.at < hi]
    outside = [a for a in county if not lo <= a.at < hi and a.at >= warm]
    days = (calls.t[-1] - warm) / 86400 - 3
    first = "none"
    if during:
        a = during[0]
        first = f"{datetime.fromtimestamp(a.at, TIMEZONE):%Y-%m-%d %H:%M} ({(a.at - ONSET.timestamp()) / 60:+.0f} min): {a.reason}"
    return first, len(outside) / days


def traffic_timeline(calls: Calls, suite_calls: Calls) -> list[str]:
    suite = make_suite(TIMEZONE.key)
    start = datetime(2016, 1, 22, 19, 0, tzinfo=TIMEZONE).timestamp()
    before = head(suite_calls, start)
    replay(suite, before)
    base = suite.surge.baseline
    lines = []
    for k in range(12):
        lo = start + k * 300
        n = sum(1 for t, c in zip(calls.t, calls.category, strict=True) if lo <= t < lo + 300 and c == "TRAFFIC")
        mid = lo + 150
        expected = base.total(lo, lo + 300) * base.category_share("TRAFFIC", mid)
        lines.append(f"  {datetime.fromtimestamp(lo, TIMEZONE):%H:%M}  {n:3d} Traffic calls  ({expected:.2f} expected)")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = parser(__file__, __doc__)
    p.add_argument("path", nargs="?", type=Path, default=MONTGOMERY, help=f"the Montgomery County file (default {MONTGOMERY.name})")
    p.add_argument("--thresholds", default="4.5,4,3.5,3,2.5,2", help="jurisdiction thresholds (-log10 p) to try, comma-separated")
    args = p.parse_args(argv)
    if not args.path.exists():
        p.error(f"{args.path} does not exist (this script needs the real Montgomery County file from ../shared/data)")
    try:
        thresholds = [float(x) for x in args.thresholds.split(",")]
    except ValueError:
        p.error(f"--thresholds must be numbers separated by commas, got {args.thresholds!r}")
    history, _ = read_history(args.path)
    calls = Calls.from_history(history)
    calls = head(calls, END.timestamp())
    if not calls.t or calls.t[-1] < STORM[1].timestamp():
        p.error(f"{args.path} does not cover the January 2016 blizzard")
    print("Traffic calls by received time, 2016-01-22 from 19:00 (5-minute bins):")
    print("\n".join(traffic_timeline(calls, calls)))
    print(f"\nonset as read from the data: {ONSET:%Y-%m-%d %H:%M}; replaying {len(calls):,} calls to {END:%Y-%m-%d} per threshold")
    print(f"{'threshold':>9}  {'county-wide FA/day':>18}  first county-wide alert in the storm")
    for th in thresholds:
        first, fa = run(calls, th)
        print(f"{th:9.1f}  {fa:18.2f}  {first}", flush=True)
    print(f"\n(window of days: warm-up {WARMUP_DAYS} days excluded, {STORM[0]:%Y-%m-%d}..{STORM[1] - timedelta(days=1):%Y-%m-%d} excluded)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
