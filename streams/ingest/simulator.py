"""A seeded simulator of a 911 centre, calibrated on real data.

The simulator writes the project's *watchfloor* CSV (one row per call with its
incident lifecycle, see :data:`WATCHFLOOR_HEADER`) so that the ingestion path,
the rolling counts and the detectors can be exercised on any volume, any span
and with known, injected incidents.

Model
-----
Calls are a space-time point process:

* **Time**: a non-homogeneous Poisson process whose rate in local hour ``h`` of a
  day with weekday ``w`` is ``calls_per_day * DAY_OF_WEEK_MULTIPLIERS[w] *
  HOUR_OF_DAY_SHARES[h] * G`` calls per hour, where ``G`` is one gamma-distributed
  multiplier per local date (mean 1, shape :data:`DAILY_RATE_SHAPE`): the
  weather, events and season that make real daily counts over-dispersed.
* **Place**: a mixture of ``hot_spots`` Gaussian blobs (towns, hospitals,
  highway interchanges: widths and Zipf weights below) and a uniform background
  over a disc of ``radius_km`` around the centre.
* **What**: a category from :data:`CATEGORY_SHARES`, a call type from that
  category's short list :data:`CALL_TYPES` (Montgomery's most common types) and
  the priority that list assigns to it.
* **Lifecycle**: dispatched after a lognormal received-to-dispatched delay,
  en route 30-120 s later, on scene after a lognormal travel time, closed
  20-60 min later, by a unit of the station nearest to the call.

Injected incidents (:class:`Injection`) add a known number of extra calls,
uniformly in time, inside one H3 resolution-8 cell or that cell and its ring of
neighbours. They are not marked in the CSV (a detector must not see a label);
the CLI writes the ground truth to a sidecar ``<out>.injections.json``.

Determinism: every random draw comes from a numpy Generator seeded by
``SeedSequence(seed, spawn_key=(stream, k))``: one stream for the layout (hot
spots, stations), one per local day of background calls, one per injection. The
same configuration therefore gives a byte-identical file, and the background is
identical with and without injections.

Generation is streaming: one local day at a time (:meth:`Simulator.iter_days`),
so a year (about 140,000 calls) is written in a few seconds with flat memory.

CLI::

    python -m streams.ingest.simulator --out sim.csv --days 365 --seed 1 \\
        --inject 2024-03-05T17:00,90,60,40.1213,-75.3399,1

With ``--profile jurisdiction.toml`` (see ``docs/jurisdiction.md``) the rhythm is
laid on the profile's local clock (its time zone) and, when the profile has a
boundary or box, the disc of calls moves to it (:func:`profile_place`). Without
one, it simulates Montgomery County in America/New_York, as calibrated.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import numbers
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TextIO, TypedDict, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import h3
import numpy as np
from tqdm import tqdm

from streams.ingest.schema import Call, Category, format_time
from streams.ingest.sources import WATCHFLOOR_COLUMNS
from streams.jurisdiction import Profile, ProfileError, load_profile

# --- Calibrated figures -----------------------------------------------------------------------------
# Measured by `python bench/calibrate.py ../shared/data/montgomery-pa-911-2015-12-to-2016-08.csv`
# on 2026-11-25, on the 248 baseline days of that file: the blizzard day 2016-01-23, the feed-outage
# dates 2015-12-17/18/19, 2016-03-27, 2016-04-12, 2016-05-01/02 and 2016-06-03, and the partial first
# and last dates are excluded (95,873 calls). Local time America/New_York.

#: Mean calls per baseline day (median 385, range 244..679).
CALLS_PER_DAY = 386.58
#: Shape k of the daily gamma rate multiplier (mean 1, variance 1/k = 0.01882): the daily variance left
#: once day-of-week is accounted for. Raw daily counts have variance/mean 10.06.
DAILY_RATE_SHAPE = 53.1
#: Share of a day's calls in each local hour 00..23.
HOUR_OF_DAY_SHARES = (
    0.02117, 0.01727, 0.01565, 0.01425, 0.01427, 0.01638, 0.02524, 0.03974,
    0.05047, 0.05327, 0.05437, 0.05570, 0.06079, 0.06018, 0.06036, 0.06208,
    0.06520, 0.06526, 0.05765, 0.04949, 0.04411, 0.03818, 0.03310, 0.02582,
)  # fmt: skip
#: Mean daily count of each weekday over the mean of the seven, Monday..Sunday.
DAY_OF_WEEK_MULTIPLIERS = (1.0308, 1.0703, 1.0603, 1.0335, 1.0395, 0.8981, 0.8673)
#: Category mix from Montgomery's ``title`` prefix. Montgomery has no police calls, so POLICE is absent.
MEASURED_CATEGORY_SHARES = {Category.EMS: 0.49409, Category.TRAFFIC: 0.35584, Category.FIRE: 0.15007}
#: Received (``desc`` time) to dispatched (``timeStamp``) delay, seconds: median and 90th percentile.
DISPATCH_DELAY_MEDIAN_S = 211.0
DISPATCH_DELAY_P90_S = 322.0
#: Share of calls in the N busiest H3 resolution-8 cells (1,889 cells hold a call). The hot-spot
#: constants below were tuned so that simulated runs land near these; they are the target, not an input.
TOP_CELL_SHARES = {1: 0.0156, 10: 0.0971, 50: 0.2594, 100: 0.376, 500: 0.791}

# --- Assumed figures (not in the data) ---------------------------------------------------------------

#: A tiny OTHER share, assumed (Montgomery has none) so that consumers see the category at all; the
#: measured shares are scaled by 1 - OTHER_SHARE.
OTHER_SHARE = 0.002
CATEGORY_SHARES = {
    **{cat: share * (1.0 - OTHER_SHARE) for cat, share in MEASURED_CATEGORY_SHARES.items()},
    Category.OTHER: OTHER_SHARE,
}
#: Call types per category: (type, share within the category, priority 1..3). Types and shares are
#: Montgomery's most common types per category (bench/calibrate.py ``top_call_types``, renormalised over
#: the list); the priorities are assumed, Montgomery publishes none. OTHER's list is assumed too.
CALL_TYPES: dict[Category, tuple[tuple[str, float, int], ...]] = {
    Category.EMS: (
        ("RESPIRATORY EMERGENCY", 0.1047, 1),
        ("CARDIAC EMERGENCY", 0.1026, 1),
        ("FALL VICTIM", 0.0997, 2),
        ("VEHICLE ACCIDENT", 0.0804, 2),
        ("SUBJECT IN PAIN", 0.0550, 3),
        ("HEAD INJURY", 0.0540, 2),
        ("UNKNOWN MEDICAL EMERGENCY", 0.0383, 2),
        ("SYNCOPAL EPISODE", 0.0353, 2),
    ),
    Category.TRAFFIC: (
        ("VEHICLE ACCIDENT", 0.6529, 2),
        ("DISABLED VEHICLE", 0.2059, 3),
        ("ROAD OBSTRUCTION", 0.0900, 3),
        ("HAZARDOUS ROAD CONDITIONS", 0.0310, 3),
        ("VEHICLE FIRE", 0.0159, 1),
    ),
    Category.FIRE: (
        ("FIRE ALARM", 0.3697, 2),
        ("VEHICLE ACCIDENT", 0.1097, 2),
        ("FIRE INVESTIGATION", 0.0981, 3),
        ("GAS-ODOR/LEAK", 0.0690, 2),
        ("BUILDING FIRE", 0.0540, 1),
        ("ELECTRICAL FIRE OUTSIDE", 0.0422, 2),
        ("FIRE SPECIAL SERVICE", 0.0399, 3),
        ("CARBON MONOXIDE DETECTOR", 0.0387, 2),
    ),
    Category.OTHER: (
        ("PUBLIC SERVICE", 0.5, 3),
        ("WELFARE CHECK", 0.3, 2),
        ("ANIMAL COMPLAINT", 0.2, 3),
    ),
}
#: Unit prefix per category: medic, engine, rescue (Montgomery dispatches fire-rescue to crashes), utility.
UNIT_PREFIX = {Category.EMS: "M", Category.FIRE: "E", Category.TRAFFIC: "R", Category.OTHER: "U", Category.POLICE: "P"}
#: Dispatched to en route, seconds, uniform (assumed: turnout time).
EN_ROUTE_DELAY_S = (30.0, 120.0)
#: En route to on scene, seconds, lognormal by median and p90 (assumed, not in the data: a suburban
#: county's travel times; NFPA 1710's urban goal is 240 s for the first engine).
TRAVEL_TIME_MEDIAN_S = 420.0
TRAVEL_TIME_P90_S = 720.0
#: On scene to closed, seconds, uniform (assumed).
ON_SCENE_DURATION_S = (1200.0, 3600.0)
#: Fire/EMS stations placed at random in the jurisdiction; a call's unit is from the nearest one.
STATIONS = 40
FIRST_STATION_NUMBER = 301
#: Hot-spot model: the share of calls from hot spots, the range of blob widths (log-uniform) and the Zipf
#: exponent of their weights. Tuned by a grid search (layout seeds 0..5, 30 hot spots, 95,873 locations as
#: in the measured sample) to approach TOP_CELL_SHARES: simulated top-1/10/50/100/500 shares average
#: 1.6/9.0/25.5/38.1/78.1 % against the measured 1.6/9.7/25.9/37.6/79.1 %.
HOT_SPOT_SHARE = 0.88
HOT_SPOT_SIGMA_KM = (0.55, 3.0)
HOT_SPOT_ZIPF = 0.6
#: Hot-spot centres stay within this fraction of the radius so their blobs stay inside.
HOT_SPOT_MAX_RADIUS = 0.85

# --- Defaults ------------------------------------------------------------------------------------------

DEFAULT_TIMEZONE = "America/New_York"
DEFAULT_START = datetime(2024, 1, 1, tzinfo=ZoneInfo(DEFAULT_TIMEZONE))
#: Montgomery County PA: the median call location (measured 40.1451, -75.3046), and the radius of a disc
#: with about the county's land area (483 sq mi, about 1,250 km^2, gives 19.9 km).
DEFAULT_CENTRE_LAT = 40.15
DEFAULT_CENTRE_LNG = -75.30
DEFAULT_RADIUS_KM = 20.0
DEFAULT_HOT_SPOTS = 30
AGENCY = "sim-911"
#: ``source`` of the simulated calls: the format they are written in, as the reader of the file names them
SOURCE = "watchfloor"
H3_RESOLUTION = 8
#: The watchfloor CSV header, owned by the reader (streams.ingest.sources).
WATCHFLOOR_HEADER = WATCHFLOOR_COLUMNS

_KM_PER_DEG_LAT = 6371.0088 * math.pi / 180.0
#: z such that P(Z <= z) = 0.9 for a standard normal: turns (median, p90) into a lognormal sigma.
_Z90 = 1.2815515655446004
# Random streams (first element of the SeedSequence spawn key).
_STREAM_LAYOUT = 0
_STREAM_DAY = 1
_STREAM_INJECTION = 2
#: Quarter-hour grid: every real UTC offset is a multiple of 15 min, so slices never straddle a local hour.
_SLICE_S = 900
_CATEGORY_ORDER = (Category.EMS, Category.TRAFFIC, Category.FIRE, Category.OTHER)


def _epoch(value: object, name: str) -> float:
    """Epoch seconds from a number or an aware datetime; ValueError naming ``name`` otherwise."""
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"{name} must be timezone-aware, got naive {value.isoformat()}; add a UTC offset or tzinfo")
        return value.timestamp()
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be epoch seconds or an aware datetime, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Injection:
    """A known incident: ``extra_calls`` calls added uniformly in ``[start, start + duration_s)``.

    The calls fall uniformly inside the H3 resolution-8 cell of (``lat``, ``lng``)
    (``spread_cells=0``) or, with ``spread_cells=1``, in that cell and its six
    neighbours (``h3.grid_disk``), each cell equally likely. ``start`` is epoch
    seconds or an aware datetime; the window must lie within the simulation.

    Examples
    --------
    >>> inj = Injection(start=1704124800, duration_s=3600, extra_calls=40, lat=40.12, lng=-75.34, spread_cells=1)
    >>> len(inj.cells()), inj.cells()[0] == h3.latlng_to_cell(40.12, -75.34, 8)
    (7, True)
    >>> Injection(start=1704124800, duration_s=0, extra_calls=40, lat=40.12, lng=-75.34)
    Traceback (most recent call last):
    ...
    ValueError: duration_s must be a finite number > 0, got 0
    """

    start: float | datetime
    duration_s: float
    extra_calls: int
    lat: float
    lng: float
    spread_cells: int = 0
    category: Category | str = Category.TRAFFIC
    start_s: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "start_s", _epoch(self.start, "start"))
        _positive(self.duration_s, "duration_s")
        if isinstance(self.extra_calls, bool) or not isinstance(self.extra_calls, (int, np.integer)) or self.extra_calls < 0:
            raise ValueError(f"extra_calls must be an integer >= 0, got {self.extra_calls!r}")
        _check_latlng(self.lat, self.lng, "lat", "lng")
        if self.spread_cells not in (0, 1) or isinstance(self.spread_cells, bool):
            raise ValueError(f"spread_cells must be 0 (the cell) or 1 (the cell and its neighbours), got {self.spread_cells!r}")
        try:
            category = Category(self.category.upper() if isinstance(self.category, str) else self.category)
        except ValueError:
            allowed = ", ".join(c.value for c in Category)
            raise ValueError(f"category must be one of {allowed}, got {self.category!r}") from None
        if category not in CALL_TYPES:
            raise ValueError(f"category {category.value} has no call-type list; use one of {', '.join(c.value for c in CALL_TYPES)}")
        object.__setattr__(self, "category", category)

    @property
    def end_s(self) -> float:
        """End of the window, epoch seconds (exclusive)."""
        return self.start_s + self.duration_s

    def cell(self) -> str:
        """The H3 resolution-8 cell of the incident's centre."""
        return h3.latlng_to_cell(self.lat, self.lng, H3_RESOLUTION)

    def cells(self) -> tuple[str, ...]:
        """The cells the calls fall in: the centre cell first, then its neighbours (sorted) if spread."""
        centre = self.cell()
        if self.spread_cells == 0:
            return (centre,)
        return (centre, *sorted(c for c in h3.grid_disk(centre, 1) if c != centre))


def _check_latlng(lat: object, lng: object, lat_name: str, lng_name: str) -> None:
    for value, name, bound in ((lat, lat_name, 90.0), (lng, lng_name, 180.0)):
        # cast: a numbers.Real compares with floats at run time; typeshed gives the ABC no comparison with float
        if (
            isinstance(value, bool)
            or not isinstance(value, numbers.Real)
            or not (math.isfinite(value) and -bound <= cast(float, value) <= bound)
        ):
            raise ValueError(f"{name} must be a number in [-{bound:g}, {bound:g}], got {value!r}")


@dataclass(frozen=True, slots=True)
class SimCall:
    """One simulated call: the :class:`~streams.ingest.schema.Call` a feed would send, and its lifecycle.

    Times are whole epoch seconds (UTC), ``call.received_at`` included.
    ``injection`` is the index of the :class:`Injection` that produced the call,
    or ``None`` for background: ground truth for evaluations, never written to the CSV.
    """

    call: Call
    dispatched_at: int | None
    en_route_at: int | None
    on_scene_at: int | None
    closed_at: int | None
    unit: str | None
    injection: int | None = None


@dataclass(frozen=True)
class _Layout:
    """Places drawn once per seed: hot spots and stations, in km east/north of the centre."""

    hot_x: np.ndarray
    hot_y: np.ndarray
    hot_sigma: np.ndarray
    hot_p: np.ndarray
    station_x: np.ndarray
    station_y: np.ndarray


@dataclass
class _Batch:
    """Calls drawn for one day or one injection, as parallel arrays (times as float epoch seconds)."""

    t: np.ndarray
    category: np.ndarray  # index into _CATEGORY_ORDER
    type_index: np.ndarray
    lat: np.ndarray
    lng: np.ndarray
    lifecycle: np.ndarray  # (n, 4) int offsets from received: dispatched, en route, on scene, closed
    injection: np.ndarray  # -1 for background


class Simulator:
    """A seeded 911 centre: background calls with real rhythms, plus injected incidents.

    The constructor only checks and stores the configuration. :meth:`calls`
    (one call at a time) and :meth:`iter_days` (one local date at a time) each
    generate the run afresh: every iteration yields the same calls in
    ``received_at`` order, and nothing is kept between days but the injected
    calls still to come. :func:`write_csv` turns them into the watchfloor CSV.

    Parameters
    ----------
    seed : int
        Seed (>= 0) of every random stream; also part of each call id ``SIM-{seed}-{n:07d}``.
    start : float or datetime
        First instant simulated: epoch seconds or an aware datetime.
    days : float
        Length of the simulation in days of 86,400 s (> 0).
    calls_per_day : float
        Mean calls per day before day-of-week and daily multipliers (> 0).
    centre_lat, centre_lng : float
        Centre of the jurisdiction, degrees.
    radius_km : float
        Radius of the disc that holds every background call (0 < radius_km <= 500).
    hot_spots : int
        Number of Gaussian hot spots (>= 0); with 0, locations are uniform over the disc.
    injections : sequence of Injection
        Incidents to add; each window must lie within ``[start, start + days)``.
    timezone : str
        IANA zone of the local clock that the hour-of-day and day-of-week rhythms follow.
    daily_rate_shape : float or None
        Shape of the daily gamma rate multiplier (> 0); ``None`` for a plain
        (not over-dispersed) Poisson process.

    Examples
    --------
    >>> sim = Simulator(seed=7, days=1, calls_per_day=100)
    >>> calls = list(sim.calls())
    >>> len(calls), calls[0].call.id, calls[0].call.agency  # one Monday: Poisson noise times that day's gamma multiplier
    (127, 'SIM-7-0000001', 'sim-911')
    >>> all(a.call.received_at <= b.call.received_at for a, b in zip(calls, calls[1:]))
    True
    >>> Simulator(days=0)
    Traceback (most recent call last):
    ...
    ValueError: days must be a finite number > 0, got 0
    """

    def __init__(
        self,
        seed: int = 0,
        start: float | datetime = DEFAULT_START,
        days: float = 28,
        calls_per_day: float = CALLS_PER_DAY,
        centre_lat: float = DEFAULT_CENTRE_LAT,
        centre_lng: float = DEFAULT_CENTRE_LNG,
        radius_km: float = DEFAULT_RADIUS_KM,
        hot_spots: int = DEFAULT_HOT_SPOTS,
        injections: Sequence[Injection] = (),
        timezone: str = DEFAULT_TIMEZONE,
        daily_rate_shape: float | None = DAILY_RATE_SHAPE,
    ) -> None:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        start_s = _epoch(start, "start")
        _positive(days, "days")
        _positive(calls_per_day, "calls_per_day")
        _check_latlng(centre_lat, centre_lng, "centre_lat", "centre_lng")
        _positive(radius_km, "radius_km")
        if radius_km > 500:
            raise ValueError(f"radius_km must be <= 500 (a jurisdiction, not a continent), got {radius_km!r}")
        if isinstance(hot_spots, bool) or not isinstance(hot_spots, (int, np.integer)) or hot_spots < 0:
            raise ValueError(f"hot_spots must be an integer >= 0, got {hot_spots!r}")
        if daily_rate_shape is not None:
            _positive(daily_rate_shape, "daily_rate_shape")
        try:
            tz = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):
            raise ValueError(f"timezone must be an IANA zone name such as 'America/New_York', got {timezone!r}") from None
        injections = tuple(injections)
        end_s = start_s + days * 86400.0
        for i, inj in enumerate(injections):
            if not isinstance(inj, Injection):
                raise ValueError(f"injections[{i}] must be an Injection, got {type(inj).__name__}")
            if inj.start_s < start_s or inj.end_s > end_s:
                raise ValueError(
                    f"injections[{i}] runs {format_time(inj.start_s)} .. {format_time(inj.end_s)}, outside the simulation "
                    f"{format_time(start_s)} .. {format_time(end_s)}"
                )
        self.seed = int(seed)
        self.start = start
        self.days = days
        self.calls_per_day = calls_per_day
        self.centre_lat = centre_lat
        self.centre_lng = centre_lng
        self.radius_km = radius_km
        self.hot_spots = int(hot_spots)
        self.injections = injections
        self.timezone = timezone
        self.daily_rate_shape = daily_rate_shape
        self._tz = tz
        self._start_s = start_s
        self._end_s = end_s

    def __repr__(self) -> str:
        names = (
            "seed", "start", "days", "calls_per_day", "centre_lat", "centre_lng", "radius_km",
            "hot_spots", "injections", "timezone", "daily_rate_shape",
        )  # fmt: skip
        return f"Simulator({', '.join(f'{n}={getattr(self, n)!r}' for n in names)})"

    @property
    def start_s(self) -> float:
        """First simulated instant, epoch seconds."""
        return self._start_s

    @property
    def end_s(self) -> float:
        """End of the simulation (exclusive), epoch seconds."""
        return self._end_s

    def day_count(self) -> int:
        """How many batches :meth:`iter_days` yields: the local dates the simulation touches."""
        return sum(1 for _ in self._local_days())

    def calls(self) -> Iterator[SimCall]:
        """Every call in ``received_at`` order (ties: background first, then generation order)."""
        for day in self.iter_days():
            yield from day

    def iter_days(self) -> Iterator[list[SimCall]]:
        """The calls of each local date, in order, one list per date (the streaming unit)."""
        layout = self._layout()
        pending = self._injected(layout)
        next_id = 1
        for k, (t0, t1, hours, weekdays) in enumerate(self._local_days()):
            day_end = t1[-1]
            batch = self._background(k, layout, t0, t1, hours, weekdays)
            take = pending.t < day_end
            if take.any():
                batch = _concat(batch, _select(pending, take))
                pending = _select(pending, ~take)
            calls = self._materialise(batch, layout, next_id)
            next_id += len(calls)
            yield calls

    # --- generation -------------------------------------------------------------------------------

    def _rng(self, *key: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=key))

    def _local_days(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """Per local date: slice starts and ends (epoch s), local hour and weekday of each slice."""
        t = self._start_s
        current = None
        t0: list[float] = []
        t1: list[float] = []
        hours: list[int] = []
        weekdays: list[int] = []
        while t < self._end_s:
            stop = min((math.floor(t / _SLICE_S) + 1) * _SLICE_S, self._end_s)
            local = datetime.fromtimestamp(t, self._tz)
            if local.date() != current and t0:
                yield np.array(t0), np.array(t1), np.array(hours), np.array(weekdays)
                t0, t1, hours, weekdays = [], [], [], []
            current = local.date()
            t0.append(t)
            t1.append(stop)
            hours.append(local.hour)
            weekdays.append(local.weekday())
            t = stop
        if t0:
            yield np.array(t0), np.array(t1), np.array(hours), np.array(weekdays)

    def _layout(self) -> _Layout:
        rng = self._rng(_STREAM_LAYOUT)
        n = self.hot_spots
        hx, hy = _uniform_disc(rng, n, self.radius_km * HOT_SPOT_MAX_RADIUS)
        lo, hi = (math.log(s) for s in HOT_SPOT_SIGMA_KM)
        sigma = np.exp(rng.uniform(lo, hi, n))
        weights = np.arange(1, n + 1, dtype=float) ** -HOT_SPOT_ZIPF
        sx, sy = _uniform_disc(rng, STATIONS, self.radius_km)
        return _Layout(hx, hy, sigma, weights / weights.sum() if n else weights, sx, sy)

    def _background(self, k: int, layout: _Layout, t0: np.ndarray, t1: np.ndarray, hours: np.ndarray, weekdays: np.ndarray) -> _Batch:
        rng = self._rng(_STREAM_DAY, k)
        # The order of draws below is part of the output: changing it changes every file.
        g = 1.0 if self.daily_rate_shape is None else rng.gamma(self.daily_rate_shape, 1.0 / self.daily_rate_shape)
        rate_per_hour = self.calls_per_day * _DOW[weekdays] * _HOURS[hours]
        counts = rng.poisson(rate_per_hour * (t1 - t0) / 3600.0 * g)
        n = int(counts.sum())
        starts = np.repeat(t0, counts)
        t = np.sort(starts + rng.random(n) * np.repeat(t1 - t0, counts))
        category = rng.choice(len(_CATEGORY_ORDER), size=n, p=_CATEGORY_P)
        type_index = _call_types(rng, category)
        x, y = self._locations(rng, layout, n)
        lat, lng = self._to_latlng(x, y)
        return _Batch(t, category, type_index, lat, lng, _lifecycle(rng, n), np.full(n, -1))

    def _locations(self, rng: np.random.Generator, layout: _Layout, n: int) -> tuple[np.ndarray, np.ndarray]:
        r = self.radius_km
        x, y = _uniform_disc(rng, n, r)
        if self.hot_spots:
            from_hot = rng.random(n) < HOT_SPOT_SHARE
            which = rng.choice(self.hot_spots, size=n, p=layout.hot_p)
            dx, dy = rng.standard_normal((2, n)) * layout.hot_sigma[which]
            hx, hy = layout.hot_x[which] + dx, layout.hot_y[which] + dy
            # A blob's tail outside the jurisdiction falls back to the uniform draw already made.
            keep = from_hot & (hx * hx + hy * hy <= r * r)
            x, y = np.where(keep, hx, x), np.where(keep, hy, y)
        return x, y

    def _to_latlng(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # Local tangent plane: good to metres over a county-sized disc.
        lat = self.centre_lat + y / _KM_PER_DEG_LAT
        lng = self.centre_lng + x / (_KM_PER_DEG_LAT * math.cos(math.radians(self.centre_lat)))
        return np.round(lat, 6), np.round(lng, 6)

    def _injected(self, layout: _Layout) -> _Batch:
        """All injected calls, sorted by time (their count is small next to the background)."""
        batches = [_empty_batch()]
        for i, inj in enumerate(self.injections):
            rng = self._rng(_STREAM_INJECTION, i)
            n = int(inj.extra_calls)
            # Clamped so that float rounding can never push a call onto the window's (exclusive) end.
            t = np.minimum(inj.start_s + rng.random(n) * inj.duration_s, np.nextafter(inj.end_s, -np.inf))
            cells = inj.cells()
            chosen = rng.integers(len(cells), size=n)
            lat, lng = _points_in_cells(rng, [cells[c] for c in chosen])
            category = np.full(n, _CATEGORY_ORDER.index(inj.category))
            type_index = _call_types(rng, category)
            batches.append(_Batch(t, category, type_index, lat, lng, _lifecycle(rng, n), np.full(n, i)))
        merged = batches[0]
        for b in batches[1:]:
            merged = _concat(merged, b)
        return _select(merged, np.argsort(merged.t, kind="stable"))

    def _materialise(self, batch: _Batch, layout: _Layout, first_id: int) -> list[SimCall]:
        received = np.floor(batch.t).astype(np.int64)
        order = np.argsort(received, kind="stable")
        batch = _select(batch, order)
        received = received[order]
        times = received[:, None] + batch.lifecycle
        units = self._units(batch, layout)
        prefix = f"SIM-{self.seed}-"
        columns = zip(
            received.tolist(),
            batch.category.tolist(),
            batch.type_index.tolist(),
            batch.lat.tolist(),
            batch.lng.tolist(),
            times.tolist(),
            units,
            batch.injection.tolist(),
            strict=True,
        )
        out = []
        for n, (received_at, cat, type_index, lat, lng, (dispatched, en_route, on_scene, closed), unit, inj) in enumerate(
            columns, start=first_id
        ):
            category = _CATEGORY_ORDER[cat]
            call_type, _, priority = CALL_TYPES[category][type_index]
            call = SimCall(
                Call(f"{prefix}{n:07d}", received_at, category, call_type, priority, lat, lng, AGENCY, SOURCE),
                dispatched, en_route, on_scene, closed, unit, None if inj < 0 else inj,
            )  # fmt: skip
            out.append(call)
        return out

    def _units(self, batch: _Batch, layout: _Layout) -> list[str]:
        """A unit of the nearest station: the category's prefix and the station number, e.g. ``M-317``."""
        if not len(batch.t):
            return []
        y = (batch.lat - self.centre_lat) * _KM_PER_DEG_LAT
        x = (batch.lng - self.centre_lng) * _KM_PER_DEG_LAT * math.cos(math.radians(self.centre_lat))
        d2 = (x[:, None] - layout.station_x[None, :]) ** 2 + (y[:, None] - layout.station_y[None, :]) ** 2
        nearest = d2.argmin(axis=1) + FIRST_STATION_NUMBER
        return [f"{UNIT_PREFIX[_CATEGORY_ORDER[c]]}-{s}" for c, s in zip(batch.category.tolist(), nearest.tolist(), strict=True)]


def _positive(value: object, name: str) -> None:
    # cast: as in _check_latlng
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (math.isfinite(value) and cast(float, value) > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def _normalised(values: Sequence[float]) -> np.ndarray:
    a = np.asarray(values, dtype=float)
    return a / a.sum()


_HOURS = _normalised(HOUR_OF_DAY_SHARES)
_DOW = _normalised(DAY_OF_WEEK_MULTIPLIERS) * 7.0
_CATEGORY_P = _normalised([CATEGORY_SHARES[c] for c in _CATEGORY_ORDER])
_TYPE_CUMULATIVE = tuple(np.cumsum(_normalised([s for _, s, _ in CALL_TYPES[c]])) for c in _CATEGORY_ORDER)
_DISPATCH_SIGMA = math.log(DISPATCH_DELAY_P90_S / DISPATCH_DELAY_MEDIAN_S) / _Z90
_TRAVEL_SIGMA = math.log(TRAVEL_TIME_P90_S / TRAVEL_TIME_MEDIAN_S) / _Z90


def _uniform_disc(rng: np.random.Generator, n: int, radius: float) -> tuple[np.ndarray, np.ndarray]:
    r = radius * np.sqrt(rng.random(n))
    theta = 2.0 * math.pi * rng.random(n)
    return r * np.cos(theta), r * np.sin(theta)


def _call_types(rng: np.random.Generator, category: np.ndarray) -> np.ndarray:
    u = rng.random(category.size)
    out = np.zeros(category.size, dtype=np.int64)
    for c, cumulative in enumerate(_TYPE_CUMULATIVE):
        mask = category == c
        # min() guards u against a cumulative sum that ends a rounding error below 1.
        out[mask] = np.minimum(np.searchsorted(cumulative, u[mask], side="right"), cumulative.size - 1)
    return out


def _lifecycle(rng: np.random.Generator, n: int) -> np.ndarray:
    """Offsets from received (s) of dispatched, en route, on scene, closed: non-decreasing by construction."""
    dispatch = rng.lognormal(math.log(DISPATCH_DELAY_MEDIAN_S), _DISPATCH_SIGMA, n)
    turnout = rng.uniform(*EN_ROUTE_DELAY_S, n)
    travel = rng.lognormal(math.log(TRAVEL_TIME_MEDIAN_S), _TRAVEL_SIGMA, n)
    on_scene = rng.uniform(*ON_SCENE_DURATION_S, n)
    steps = np.rint(np.stack([dispatch, turnout, travel, on_scene], axis=1)).astype(np.int64)
    return np.cumsum(steps, axis=1)


def _points_in_cells(rng: np.random.Generator, cells: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """One point uniformly inside each cell (rejection from the cell's circumscribed disc)."""
    lat = np.empty(len(cells))
    lng = np.empty(len(cells))
    discs: dict[str, tuple[float, float, float, float]] = {}
    for i, cell in enumerate(cells):
        if cell not in discs:
            c_lat, c_lng = h3.cell_to_latlng(cell)
            km_lng = _KM_PER_DEG_LAT * math.cos(math.radians(c_lat))
            reach = max(
                math.hypot((v_lat - c_lat) * _KM_PER_DEG_LAT, (v_lng - c_lng) * km_lng) for v_lat, v_lng in h3.cell_to_boundary(cell)
            )
            discs[cell] = (c_lat, c_lng, km_lng, reach * 1.01)
        c_lat, c_lng, km_lng, reach = discs[cell]
        while True:
            # Rounded first, as written to the CSV, so the written point is the one tested.
            r = reach * math.sqrt(rng.random())
            theta = 2.0 * math.pi * rng.random()
            p_lat = round(c_lat + r * math.sin(theta) / _KM_PER_DEG_LAT, 6)
            p_lng = round(c_lng + r * math.cos(theta) / km_lng, 6)
            if h3.latlng_to_cell(p_lat, p_lng, H3_RESOLUTION) == cell:
                break
        lat[i], lng[i] = p_lat, p_lng
    return lat, lng


def _empty_batch() -> _Batch:
    return _Batch(
        np.empty(0), np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64), np.empty(0), np.empty(0),
        np.empty((0, 4), dtype=np.int64), np.empty(0, dtype=np.int64),
    )  # fmt: skip


def _concat(a: _Batch, b: _Batch) -> _Batch:
    return _Batch(
        *(np.concatenate([getattr(a, f), getattr(b, f)]) for f in ("t", "category", "type_index", "lat", "lng", "lifecycle", "injection"))
    )


def _select(b: _Batch, index: np.ndarray) -> _Batch:
    return _Batch(b.t[index], b.category[index], b.type_index[index], b.lat[index], b.lng[index], b.lifecycle[index], b.injection[index])


# --- Output ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WriteSummary:
    """What :func:`write_csv` wrote: row count, first and last ``received_at``, injected ids per injection."""

    rows: int
    first_received: float | None
    last_received: float | None
    injected_ids: dict[int, list[str]]


def to_row(sim: SimCall) -> list[str]:
    """A call as a watchfloor CSV row: ISO 8601 UTC times with ``Z``, empty cell = unknown.

    >>> call = Call("SIM-1-0000001", 1704085200, Category.EMS, "FALL VICTIM", 2, 40.1, -75.3, "sim-911", SOURCE)
    >>> call = SimCall(call, 1704085411, 1704085471, 1704085891, 1704088291, "M-317")
    >>> to_row(call)[:9]
    ['SIM-1-0000001', '2024-01-01T05:00:00Z', 'EMS', 'FALL VICTIM', '2', '40.100000', '-75.300000', 'sim-911', '2024-01-01T05:03:31Z']
    >>> to_row(call)[9:]
    ['2024-01-01T05:04:31Z', '2024-01-01T05:11:31Z', '2024-01-01T05:51:31Z', 'M-317']
    """
    call = sim.call
    return [
        call.id,
        format_time(call.received_at),
        call.category.value,
        call.call_type,
        "" if call.priority is None else str(call.priority),
        f"{call.lat:.6f}",
        f"{call.lng:.6f}",
        call.agency,
        *("" if t is None else format_time(t) for t in (sim.dispatched_at, sim.en_route_at, sim.on_scene_at, sim.closed_at)),
        sim.unit or "",
    ]


def write_csv(calls: Iterable[SimCall], out: TextIO) -> WriteSummary:
    """Write the header and one row per call to ``out`` (opened with ``newline=""``); returns a summary.

    >>> import io
    >>> buf = io.StringIO()
    >>> summary = write_csv(Simulator(seed=1, days=0.25, calls_per_day=40).calls(), buf)
    >>> buf.getvalue().splitlines()[0]
    'id,received_at,category,call_type,priority,lat,lng,agency,dispatched_at,en_route_at,on_scene_at,closed_at,unit'
    >>> summary.rows == len(buf.getvalue().splitlines()) - 1
    True
    """
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(WATCHFLOOR_HEADER)
    rows = 0
    first = last = None
    injected: dict[int, list[str]] = {}
    for call in calls:
        writer.writerow(to_row(call))
        rows += 1
        if first is None:
            first = call.call.received_at
        last = call.call.received_at
        if call.injection is not None:
            injected.setdefault(call.injection, []).append(call.call.id)
    return WriteSummary(rows, first, last, injected)


def ground_truth(sim: Simulator, summary: WriteSummary, csv_name: str) -> dict:
    """The sidecar JSON of a run: its configuration and, per injection, its window, cells and call ids."""
    return {
        "csv": csv_name,
        "seed": sim.seed,
        "start": format_time(sim.start_s),
        "end": format_time(sim.end_s),
        "days": sim.days,
        "calls_per_day": sim.calls_per_day,
        "h3_resolution": H3_RESOLUTION,
        "injections": [
            {
                "index": i,
                "start": format_time(inj.start_s),
                "end": format_time(inj.end_s),
                "duration_s": inj.duration_s,
                "extra_calls": int(inj.extra_calls),
                "lat": inj.lat,
                "lng": inj.lng,
                "spread_cells": inj.spread_cells,
                "category": cast(Category, inj.category).value,  # __post_init__ made it a Category
                "cell": inj.cell(),
                "cells": list(inj.cells()),
                "call_ids": summary.injected_ids.get(i, []),
            }
            for i, inj in enumerate(sim.injections)
        ],
    }


class Place(TypedDict, total=False):
    """The :class:`Simulator` arguments a profile sets (see :func:`profile_place`)."""

    timezone: str
    centre_lat: float
    centre_lng: float
    radius_km: float


def profile_place(profile: Profile) -> Place:
    """The :class:`Simulator` arguments a jurisdiction profile sets: its zone, and its place when it has one.

    ``timezone`` is the profile's. With a boundary or box, ``centre_lat`` and
    ``centre_lng`` are the box's centre and ``radius_km`` the radius of a disc of
    the boundary's area (its H3 cover), or of the box's area times pi/4 (the disc
    inscribed in a square), at most 500 km; without either, the Montgomery defaults
    stay. The calls fill a disc, not the polygon: a rough place for a simulation.

    >>> from streams.jurisdiction import default_profile
    >>> profile_place(default_profile())
    {'timezone': 'UTC'}
    """
    place: Place = {"timezone": profile.timezone}
    box = profile.box
    if box is None:
        return place
    lat = (box.min_lat + box.max_lat) / 2.0
    lng = (box.min_lng + box.max_lng) / 2.0
    if profile.boundary is not None:
        area_km2 = sum(h3.cell_area(c, unit="km^2") for c in profile.boundary_cells())
    else:
        height = (box.max_lat - box.min_lat) * _KM_PER_DEG_LAT
        width = (box.max_lng - box.min_lng) * _KM_PER_DEG_LAT * math.cos(math.radians(lat))
        area_km2 = width * height * math.pi / 4.0
    place["centre_lat"], place["centre_lng"] = lat, lng
    place["radius_km"] = min(500.0, max(1.0, math.sqrt(area_km2 / math.pi)))
    return place


# --- CLI ---------------------------------------------------------------------------------------------


def _parse_time(text: str, tz: ZoneInfo, what: str) -> datetime:
    try:
        dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00") if text.strip().endswith("Z") else text.strip())
    except ValueError:
        raise ValueError(f"{what}: expected an ISO 8601 time such as 2024-03-05T17:00 or 2024-03-05T22:00Z, got {text!r}") from None
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=tz)


def _parse_injection(text: str, tz: ZoneInfo) -> Injection:
    parts = [p.strip() for p in text.split(",")]
    if not 5 <= len(parts) <= 7:
        raise ValueError(f"--inject expects START,DURATION_MIN,EXTRA,LAT,LNG[,SPREAD[,CATEGORY]], got {text!r} ({len(parts)} fields)")
    start = _parse_time(parts[0], tz, "--inject START")
    names = ("DURATION_MIN", "EXTRA", "LAT", "LNG", "SPREAD")
    kinds = (float, int, float, float, int)
    values = []
    for name, kind, part in zip(names, kinds, parts[1:6], strict=False):
        try:
            values.append(kind(part))
        except ValueError:
            raise ValueError(f"--inject {name} must be {'an integer' if kind is int else 'a number'}, got {part!r} in {text!r}") from None
    duration_min, extra, lat, lng = values[:4]
    spread = values[4] if len(values) > 4 else 0
    category = parts[6] if len(parts) > 6 else Category.TRAFFIC
    try:
        return Injection(start, duration_min * 60.0, extra, lat, lng, spread, category)
    except ValueError as exc:
        raise ValueError(f"--inject {text!r}: {exc}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m streams.ingest.simulator",
        description=(
            "Simulate a 911 centre calibrated on Montgomery County PA (see bench/calibrate.py) and write a watchfloor CSV; "
            "the ground truth of injected incidents goes to <out>.injections.json."
        ),
        epilog=(
            "example: python -m streams.ingest.simulator --out sim.csv --days 365 --seed 1 "
            "--inject 2024-03-05T17:00,90,60,40.1213,-75.3399,1"
        ),
    )
    parser.add_argument("--out", required=True, type=Path, metavar="PATH", help="CSV to write (its directory must exist)")
    parser.add_argument("--days", type=float, default=28.0, metavar="N", help="days to simulate (default 28)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="random seed >= 0 (default 0)")
    parser.add_argument(
        "--calls-per-day", type=float, default=CALLS_PER_DAY, metavar="X", help=f"mean calls per day (default {CALLS_PER_DAY}, measured)"
    )
    parser.add_argument(
        "--start", default=None, metavar="ISO",
        help=f"first instant, ISO 8601; without an offset it is local time in {DEFAULT_TIMEZONE}, or in the --profile's zone "
        f"(default {DEFAULT_START.replace(tzinfo=None).isoformat()} local time)",
    )  # fmt: skip
    parser.add_argument(
        "--profile", type=Path, default=None, metavar="TOML",
        help="jurisdiction profile (docs/jurisdiction.md): the local clock of the rhythm is its time zone, the calls fill a disc "
        "of its boundary's area around its centre (default: Montgomery County PA in America/New_York)",
    )  # fmt: skip
    parser.add_argument("--hot-spots", type=int, default=DEFAULT_HOT_SPOTS, metavar="H", help=f"hot spots (default {DEFAULT_HOT_SPOTS})")
    parser.add_argument(
        "--inject", action="append", default=[], metavar="START,DURATION_MIN,EXTRA,LAT,LNG[,SPREAD[,CATEGORY]]",
        help="add EXTRA calls uniformly over DURATION_MIN minutes from START in the H3 res-8 cell of LAT,LNG "
        "(SPREAD 1: and its 6 neighbours; CATEGORY default TRAFFIC); repeatable",
    )  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m streams.ingest.simulator``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    place: Place = {}
    if args.profile is not None:
        try:
            place = profile_place(load_profile(args.profile))
        except ProfileError as exc:
            parser.error(f"--profile: {exc}")
    tz = ZoneInfo(place.get("timezone", DEFAULT_TIMEZONE))
    try:
        start = _parse_time(args.start, tz, "--start") if args.start else DEFAULT_START.replace(tzinfo=tz)
        injections = [_parse_injection(text, tz) for text in args.inject]
        sim = Simulator(
            seed=args.seed, start=start, days=args.days, calls_per_day=args.calls_per_day,
            hot_spots=args.hot_spots, injections=injections, **place,
        )  # fmt: skip
    except ValueError as exc:
        parser.error(str(exc))
    out: Path = args.out
    if not out.parent.is_dir():
        parser.error(f"--out {out}: directory {out.parent} does not exist")
    sidecar = out.with_name(out.name + ".injections.json")
    tmp = out.with_name(out.name + ".tmp")
    days = tqdm(sim.iter_days(), total=sim.day_count(), unit="day", file=sys.stderr, disable=args.no_progress, desc="simulating")
    try:
        # Written next to the target and renamed, so a failed run leaves no half file.
        with tmp.open("w", newline="", encoding="utf-8") as fh:
            summary = write_csv((call for day in days for call in day), fh)
        os.replace(tmp, out)
    finally:
        days.close()
        tmp.unlink(missing_ok=True)
    sidecar.write_text(json.dumps(ground_truth(sim, summary, out.name), indent=2) + "\n", encoding="utf-8")
    span = "no calls"
    if summary.first_received is not None and summary.last_received is not None:
        span = f"{format_time(summary.first_received)} .. {format_time(summary.last_received)}"
    print(f"wrote {summary.rows} rows to {out} ({span}); {len(sim.injections)} injection(s), ground truth in {sidecar}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
