"""Measure, from real 911 exports, the figures that ``streams/ingest/simulator.py`` is calibrated on.

Usage::

    python bench/calibrate.py ../shared/data/montgomery-pa-911-2015-12-to-2016-08.csv [MORE.csv ...] [--json]

This is a measurement, not the ingestion path: parsing is deliberately simple
(the ``csv`` module and a layout recognised from the header), rows that do not
parse are counted and skipped. Four layouts are recognised, those described in
``shared/data/README.md``; each file yields only the figures it can support:

===================  ======  ========  =======  =====  ==========================
layout               rhythm  category  spatial  delay  local time
===================  ======  ========  =======  =====  ==========================
montgomery main      yes     yes       yes      yes    America/New_York
montgomery sample    no [1]  yes       yes      no     America/New_York
cincinnati fire/EMS  yes     no [2]    yes      no     America/New_York
seattle fire MVA     yes     no [2]    yes      no     UTC -> America/Los_Angeles
===================  ======  ========  =======  =====  ==========================

[1] three hours on one day a month: no daily or hourly rhythm to measure.
[2] filtered to one family of call types, so the mix says nothing.

Baseline days. Rhythm, category, spatial and delay figures are measured on
*baseline* days only, i.e. all local dates except

* the listed surge days (``--exclude-date``; by default the two snowstorms the
  data README names, 2016-01-23 and 2018-11-15),
* feed outages: every date touched by a silence during which the file's own
  hour-of-day rate expected at least ``--outage-calls`` calls (default 15, so the
  silence had a probability below e^-15 of happening by chance),
* the first and last date of a continuous file (partial days).

On the Montgomery main file this finds, besides the README's outages
(2015-12-17/18 overnight, 2016-05-01/02), three more silences the README does
not list: 2016-03-27 07:42-08:42, 2016-04-12 10:41-13:16 and 18:52-21:10, and
2016-06-03 13:22-14:42. Every excluded date is printed with its reason.

The daily over-dispersion is reported twice: the raw variance/mean of daily
counts, and the variance left once day-of-week is accounted for, expressed as
the shape ``k`` of a gamma-distributed daily rate multiplier (mean 1, variance
1/k): for counts ``n_d ~ Poisson(e_d * G_d)``, ``Var(n_d / e_d) = E[1/e_d] + 1/k``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import h3
import numpy as np
from _common import parser

#: Surge days named in shared/data/README.md, excluded from baseline figures.
DEFAULT_EXCLUDED_DATES = {
    date(2016, 1, 23): "January 2016 blizzard (data README)",
    date(2018, 11, 15): "first snowstorm of winter 2018-19 (data README)",
}
H3_RESOLUTION = 8
DEFAULT_TOP_N = (1, 10, 50, 100, 500)
#: z such that P(Z <= z) = 0.9 for a standard normal; turns (median, p90) into a lognormal sigma.
Z90 = 1.2815515655446004
#: Call types kept per category in the report (the simulator's short lists).
TOP_TYPES = 8
_DESC_TIME = re.compile(r"(\d{4}-\d{2}-\d{2}) @ (\d{2}:\d{2}:\d{2})")
_LOS_ANGELES = ZoneInfo("America/Los_Angeles")


@dataclass(frozen=True)
class Record:
    """One call as the calibration needs it. ``local`` is naive local wall-clock time."""

    local: datetime
    category: str | None
    call_type: str | None
    lat: float | None
    lng: float | None
    delay_s: float | None


@dataclass(frozen=True)
class Layout:
    name: str
    continuous: bool
    has_category: bool
    has_delay: bool


MONTGOMERY = Layout("montgomery-pa-911 (main)", continuous=True, has_category=True, has_delay=True)
MONTGOMERY_SAMPLE = Layout("montgomery-pa-911 (sample, no header)", continuous=False, has_category=True, has_delay=False)
CINCINNATI = Layout("cincinnati-fire-ems", continuous=True, has_category=False, has_delay=False)
SEATTLE = Layout("seattle-fire-911-mva", continuous=True, has_category=False, has_delay=False)


def detect_layout(first_row: list[str], path: Path) -> Layout:
    """Recognise a file's layout from its first row; ValueError names what was found."""
    head = [c.strip() for c in first_row]
    if head[:3] == ["lat", "lng", "desc"]:
        return MONTGOMERY
    if head[:3] == ["latitude", "longitude", "create_time_incident"]:
        return CINCINNATI
    if head[:3] == ["Address", "Type", "Datetime"]:
        return SEATTLE
    if len(head) == 6 and _float(head[0]) is not None and ":" in head[2]:
        return MONTGOMERY_SAMPLE
    raise ValueError(
        f"{path}: unrecognised layout, first row {head[:5]!r}; expected one of the layouts in shared/data/README.md "
        "(montgomery main or sample, cincinnati, seattle)"
    )


def read_records(path: Path) -> tuple[Layout, list[Record], int]:
    """Read a file in place; returns its layout, the parsed records and how many rows were skipped."""
    with path.open(newline="", encoding="utf-8", errors="replace") as fh:
        reader = csv.reader(fh)
        try:
            first = next(reader)
        except StopIteration:
            raise ValueError(f"{path}: file is empty") from None
        layout = detect_layout(first, path)
        rows: Iterator[list[str]] = reader
        if layout is MONTGOMERY_SAMPLE:
            rows = _chain_first(first, reader)
        parse = {MONTGOMERY: _montgomery, MONTGOMERY_SAMPLE: _montgomery_sample, CINCINNATI: _cincinnati, SEATTLE: _seattle}[layout]
        records: list[Record] = []
        skipped = 0
        for row in rows:
            rec = parse(row)
            if rec is None:
                skipped += 1
            else:
                records.append(rec)
    records.sort(key=lambda r: r.local)
    return layout, records, skipped


def _chain_first(first: list[str], rest: Iterator[list[str]]) -> Iterator[list[str]]:
    yield first
    yield from rest


def _float(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _coords(lat_text: str, lng_text: str) -> tuple[float | None, float | None]:
    lat, lng = _float(lat_text), _float(lng_text)
    if lat is None or lng is None or (lat == 0.0 and lng == 0.0) or not (-90 <= lat <= 90 and -180 <= lng <= 180):
        return None, None
    return lat, lng


def _split_title(title: str) -> tuple[str | None, str | None]:
    head, sep, tail = title.partition(":")
    if not sep:
        return None, None
    # Montgomery's traffic types end in " -" ("VEHICLE ACCIDENT -"); drop the dangling dash.
    return head.strip().upper(), tail.strip().rstrip("-").strip() or None


def _montgomery(row: list[str]) -> Record | None:
    if len(row) < 9:
        return None
    try:
        local = datetime.strptime(row[5].strip(), "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None
    delay = None
    match = _DESC_TIME.search(row[2])
    if match:
        try:
            earlier = datetime.strptime(f"{match[1]} {match[2]}", "%Y-%m-%d %H:%M:%S")
            delay = (local - earlier).total_seconds()
        except ValueError:
            delay = None
    category, call_type = _split_title(row[4])
    lat, lng = _coords(row[0], row[1])
    return Record(local, category, call_type, lat, lng, delay)


def _montgomery_sample(row: list[str]) -> Record | None:
    if len(row) < 4:
        return None
    try:
        local = datetime.strptime(row[3].strip(), "%Y-%m-%d %H:%M")
    except ValueError:
        return None
    category, call_type = _split_title(row[2])
    lat, lng = _coords(row[0], row[1])
    return Record(local, category, call_type, lat, lng, None)


def _cincinnati(row: list[str]) -> Record | None:
    if len(row) < 5:
        return None
    try:
        local = datetime.strptime(row[4].strip(), "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None
    lat, lng = _coords(row[0], row[1])
    return Record(local, None, row[3].strip() or None, lat, lng, None)


def _seattle(row: list[str]) -> Record | None:
    if len(row) < 5:
        return None
    text = row[2].strip()
    try:
        utc = datetime.strptime(text, "%m/%d/%Y %I:%M:%S %p %z")
    except ValueError:
        # The ISO-like variant, where hour 24 means 00 of the next day.
        m = re.fullmatch(r"(\d{4}-\d{2}-\d{2})T(\d{2}):(\d{2}):(\d{2})\+0000", text)
        if not m:
            return None
        day = datetime.strptime(m[1], "%Y-%m-%d").replace(tzinfo=UTC)
        utc = day + timedelta(hours=int(m[2]), minutes=int(m[3]), seconds=int(m[4]))
    # The offset is a real UTC offset: the hourly profile bottoms out at 11:00 UTC = 03:00 Pacific.
    local = utc.astimezone(_LOS_ANGELES).replace(tzinfo=None)
    lat, lng = _coords(row[3], row[4])
    return Record(local, "TRAFFIC", row[1].strip() or None, lat, lng, None)


# --- measurement ---------------------------------------------------------------------------------


def hourly_rate(records: list[Record], n_days: int) -> np.ndarray:
    """Mean calls per local hour-of-day over ``n_days`` days (24 values)."""
    counts = np.zeros(24)
    for r in records:
        counts[r.local.hour] += 1
    return counts / max(n_days, 1)


def find_outages(records: list[Record], rate: np.ndarray, min_expected: float) -> list[tuple[datetime, datetime, float]]:
    """Silences between consecutive calls during which ``rate`` expected at least ``min_expected`` calls."""
    gaps = []
    for a, b in zip(records, records[1:], strict=False):
        if (b.local - a.local).total_seconds() < 3600:
            continue
        expected = _expected_calls(a.local, b.local, rate)
        if expected >= min_expected:
            gaps.append((a.local, b.local, expected))
    return gaps


def _expected_calls(start: datetime, end: datetime, rate: np.ndarray) -> float:
    total = 0.0
    t = start
    while t < end:
        next_hour = t.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        stop = min(next_hour, end)
        total += rate[t.hour] * (stop - t).total_seconds() / 3600
        t = stop
    return total


def baseline_days(
    records: list[Record], layout: Layout, excluded: dict[date, str], outage_calls: float
) -> tuple[set[date], dict[str, str]]:
    """The local dates that baseline figures use, and why each other date was left out."""
    dates = {r.local.date() for r in records}
    why: dict[date, str] = {d: reason for d, reason in excluded.items() if d in dates}
    if layout.continuous and records:
        first, last = records[0].local.date(), records[-1].local.date()
        why.setdefault(first, "first date of the file (partial day)")
        why.setdefault(last, "last date of the file (partial day)")
        rate = hourly_rate(records, len(dates))
        for a, b, expected in find_outages(records, rate, outage_calls):
            reason = f"feed outage: no call from {a:%Y-%m-%d %H:%M} to {b:%Y-%m-%d %H:%M} (about {expected:.0f} expected)"
            d = a.date()
            while d <= b.date():
                why.setdefault(d, reason)
                d += timedelta(days=1)
        # Whole dates with no call at all are outages too (they are not in ``dates``).
        d = first
        while d <= last:
            if d not in dates:
                why.setdefault(d, "feed outage: no call all day")
            d += timedelta(days=1)
    keep = dates - set(why)
    return keep, {d.isoformat(): reason for d, reason in sorted(why.items())}


def measure(path: Path, excluded: dict[date, str], top_ns: tuple[int, ...], outage_calls: float) -> dict:
    """All figures that ``path`` supports, as a JSON-ready dict."""
    layout, records, skipped = read_records(path)
    if not records:
        raise ValueError(f"{path}: no row could be parsed ({skipped} skipped)")
    keep, why = baseline_days(records, layout, excluded, outage_calls)
    base = [r for r in records if r.local.date() in keep]
    out: dict = {
        "file": path.name,
        "layout": layout.name,
        "rows": len(records) + skipped,
        "rows_skipped_unparseable": skipped,
        "first_local": records[0].local.isoformat(sep=" "),
        "last_local": records[-1].local.isoformat(sep=" "),
        "excluded_dates": why,
        "baseline_days": len(keep),
        "baseline_rows": len(base),
    }
    if layout.continuous:
        out.update(_rhythm(base, keep))
    if layout.has_category:
        out.update(_categories(base))
    out["spatial"] = _spatial(base, top_ns)
    if layout.has_delay:
        out["received_to_dispatched_s"] = _delays(base)
    return out


def _rhythm(base: list[Record], keep: set[date]) -> dict:
    per_day = Counter(r.local.date() for r in base)
    days = sorted(keep)
    n = np.array([per_day[d] for d in days], dtype=float)
    mean = float(n.mean())
    var = float(n.var(ddof=1)) if len(n) > 1 else 0.0
    weekday = np.array([d.weekday() for d in days])
    dow_mean = np.array([n[weekday == w].mean() if (weekday == w).any() else np.nan for w in range(7)])
    dow_mult = dow_mean / np.nanmean(dow_mean)
    expected = mean * dow_mult[weekday]
    ratio = n / expected
    gamma_cv2 = max(float(ratio.var(ddof=1)) - float(np.mean(1.0 / expected)), 0.0) if len(n) > 1 else 0.0
    hours = np.zeros(24)
    for r in base:
        hours[r.local.hour] += 1
    return {
        "calls_per_day": {
            "mean": round(mean, 2),
            "median": float(np.median(n)),
            "variance": round(var, 1),
            "variance_over_mean": round(var / mean, 2) if mean else None,
            "min": int(n.min()),
            "max": int(n.max()),
        },
        "daily_rate_gamma": {
            "cv2_after_day_of_week": round(gamma_cv2, 5),
            "shape": round(1.0 / gamma_cv2, 1) if gamma_cv2 > 0 else None,
        },
        "hour_of_day_shares": [round(float(x), 5) for x in hours / hours.sum()],
        "day_of_week_multipliers_mon_to_sun": [round(float(x), 4) for x in dow_mult],
    }


def _categories(base: list[Record]) -> dict:
    cats = Counter(r.category for r in base if r.category)
    types: dict[str, Counter] = defaultdict(Counter)
    for r in base:
        if r.category and r.call_type:
            types[r.category][r.call_type] += 1
    total = sum(cats.values())
    return {
        "category_shares": {c: round(k / total, 5) for c, k in cats.most_common()},
        "top_call_types": {c: [[t, round(k / cats[c], 4)] for t, k in types[c].most_common(TOP_TYPES)] for c, _ in cats.most_common()},
    }


def _spatial(base: list[Record], top_ns: tuple[int, ...]) -> dict:
    located = [r for r in base if r.lat is not None and r.lng is not None]
    if not located:
        return {"located_rows": 0}
    cells = Counter(h3.latlng_to_cell(r.lat, r.lng, H3_RESOLUTION) for r in located)
    counts = np.array(sorted(cells.values(), reverse=True), dtype=float)
    total = counts.sum()
    lat = np.array([r.lat for r in located])
    lng = np.array([r.lng for r in located])
    c_lat, c_lng = float(np.median(lat)), float(np.median(lng))
    dist = _haversine_km(c_lat, c_lng, lat, lng)
    return {
        "located_rows": len(located),
        "h3_resolution": H3_RESOLUTION,
        "distinct_cells": len(cells),
        "top_cell_shares": {str(k): round(float(counts[:k].sum() / total), 4) for k in top_ns},
        "centre_median": [round(c_lat, 4), round(c_lng, 4)],
        "radius_km_p50_p95": [round(float(np.percentile(dist, 50)), 1), round(float(np.percentile(dist, 95)), 1)],
    }


def _haversine_km(lat0: float, lng0: float, lat: np.ndarray, lng: np.ndarray) -> np.ndarray:
    p0, p1 = math.radians(lat0), np.radians(lat)
    dp, dl = p1 - p0, np.radians(lng - lng0)
    a = np.sin(dp / 2) ** 2 + math.cos(p0) * np.cos(p1) * np.sin(dl / 2) ** 2
    return 2 * 6371.0088 * np.arcsin(np.sqrt(a))


def _delays(base: list[Record]) -> dict:
    raw = np.array([r.delay_s for r in base if r.delay_s is not None])
    ok = raw[raw > 0]
    median, p90, p99 = (float(np.percentile(ok, q)) for q in (50, 90, 99))
    return {
        "n": int(ok.size),
        "excluded_not_positive": int((raw <= 0).sum()),
        "rows_without_desc_time": sum(r.delay_s is None for r in base),
        "median": median,
        "p90": p90,
        "p99": p99,
        "lognormal_mu": round(math.log(median), 4),
        "lognormal_sigma": round(math.log(p90 / median) / Z90, 4),
    }


# --- output ----------------------------------------------------------------------------------------


def render_table(fig: dict) -> str:
    """A human-readable report of one file's figures."""
    lines = [
        f"== {fig['file']}  [{fig['layout']}]",
        f"rows {fig['rows']} (unparseable {fig['rows_skipped_unparseable']}), local time {fig['first_local']} .. {fig['last_local']}",
    ]
    lines.append(f"baseline: {fig['baseline_days']} days, {fig['baseline_rows']} rows; excluded dates:")
    lines += [f"  {span}  {why}" for span, why in _date_runs(fig["excluded_dates"])]
    if "calls_per_day" in fig:
        c, g = fig["calls_per_day"], fig["daily_rate_gamma"]
        lines.append(
            f"calls/day: mean {c['mean']}  median {c['median']}  variance {c['variance']}  var/mean {c['variance_over_mean']}"
            f"  range {c['min']}..{c['max']}"
        )
        lines.append(f"daily gamma multiplier after day-of-week: cv^2 {g['cv2_after_day_of_week']}  shape k {g['shape']}")
        shares = fig["hour_of_day_shares"]
        lines.append("hour-of-day shares (%):")
        for row in range(0, 24, 8):
            lines.append("  " + "  ".join(f"{h:02d}h {100 * shares[h]:4.2f}" for h in range(row, row + 8)))
        dow = fig["day_of_week_multipliers_mon_to_sun"]
        lines.append(
            "day-of-week multipliers: " + "  ".join(f"{d} {m:.3f}" for d, m in zip("Mon Tue Wed Thu Fri Sat Sun".split(), dow, strict=True))
        )
    if "category_shares" in fig:
        lines.append("category shares: " + "  ".join(f"{c} {100 * s:.2f}%" for c, s in fig["category_shares"].items()))
        for cat, types in fig["top_call_types"].items():
            lines.append(f"  {cat}: " + ", ".join(f"{t} {100 * s:.1f}%" for t, s in types))
    s = fig["spatial"]
    if s.get("located_rows"):
        tops = "  ".join(f"top-{k} {100 * v:.1f}%" for k, v in s["top_cell_shares"].items())
        lines.append(f"spatial (H3 res {s['h3_resolution']}): {s['distinct_cells']} cells; {tops}")
        lines.append(f"  centre (median) {s['centre_median']}  radius km p50/p95 {s['radius_km_p50_p95']}")
    if "received_to_dispatched_s" in fig:
        d = fig["received_to_dispatched_s"]
        lines.append(
            f"desc time -> timeStamp (s): n {d['n']}  median {d['median']:.0f}  p90 {d['p90']:.0f}  p99 {d['p99']:.0f}"
            f"  (lognormal mu {d['lognormal_mu']}, sigma {d['lognormal_sigma']}; {d['excluded_not_positive']} <= 0 dropped)"
        )
    return "\n".join(lines)


def _date_runs(why: dict[str, str]) -> list[tuple[str, str]]:
    """Collapse consecutive dates excluded for the same reason into ``first..last (n dates)`` runs."""
    runs: list[list] = []
    for text, reason in why.items():
        d = date.fromisoformat(text)
        if runs and runs[-1][2] == reason and runs[-1][1] + timedelta(days=1) == d:
            runs[-1][1] = d
        else:
            runs.append([d, d, reason])
    out = []
    for first, last, reason in runs:
        span = first.isoformat() if first == last else f"{first}..{last} ({(last - first).days + 1} dates)"
        out.append((span, reason))
    return out


def _parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    p = parser(__file__, "Measure the simulator's calibration figures from real 911 exports (layouts of shared/data/README.md).")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="CSV export(s), read in place")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument(
        "--exclude-date",
        action="append",
        type=_parse_date,
        default=[],
        metavar="YYYY-MM-DD",
        help="a further local date to leave out of baseline figures (2016-01-23 and 2018-11-15 always are)",
    )
    p.add_argument(
        "--outage-calls",
        type=float,
        default=15.0,
        metavar="X",
        help="a silence is a feed outage when the hourly rhythm expected at least X calls in it (default 15)",
    )
    p.add_argument("--top", type=int, nargs="+", default=list(DEFAULT_TOP_N), metavar="N", help="top-N cell shares to report")
    args = p.parse_args(argv)
    if args.outage_calls <= 0:
        p.error(f"--outage-calls must be > 0, got {args.outage_calls}")
    if any(n < 1 for n in args.top):
        p.error(f"--top values must be >= 1, got {args.top}")
    excluded = dict(DEFAULT_EXCLUDED_DATES)
    excluded.update({d: "listed with --exclude-date" for d in args.exclude_date})
    figures = []
    for path in args.paths:
        if not path.is_file():
            p.error(f"{path}: no such file")
        try:
            figures.append(measure(path, excluded, tuple(args.top), args.outage_calls))
        except ValueError as exc:
            p.error(str(exc))
    if args.json:
        print(json.dumps({"measured_on": date.today().isoformat(), "files": figures}, indent=2))
    else:
        print(f"measured on {date.today().isoformat()}")
        print("\n\n".join(render_table(f) for f in figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
