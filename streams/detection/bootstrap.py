"""Bootstrap the detectors from history: a file of past calls -> a trained, signed checkpoint the worker starts from.

Without a checkpoint the worker's detectors start empty and stay silent until
they have learnt ``warmup_calls`` calls and ``warmup_hours`` hours of live feed
(:mod:`detectors.baseline`): a jurisdiction switching Watchfloor on has no
alerts on its first days, though its CAD holds years of calls. This module
feeds a history file through the worker's own suite
(:func:`streams.detection.runner.profile_suite`: the jurisdiction's time zone
and holidays) and leaves a :class:`~streams.detection.runner.DetectionRunner` the worker
restores as it restores its own checkpoints.

The pure part (no Kafka, no Redis):

* :func:`history_points` turns the source adapters' rows into the points the
  worker sends on ``detector-input``: each call validated by the worker's schema
  (:func:`streams.ingest.schema.parse_event`, with its jurisdiction), located in
  its res-8 cell as the counting planner does (:func:`detection_cell`), with its
  category and priority, a repeated call id dropped as the worker drops it;
* :func:`train` replays them in event-time order through the suite with the clock
  ticking every minute (:func:`detectors.evaluation.replay.replay`), and returns
  the alerts it would have raised (a false-alert estimate: nothing is published,
  nothing is counted);
* :func:`settle` prepares the trained suite for the gap between history and the
  live feed: the alerts still open at the end of history are closed (silently:
  the records are discarded), and the feed monitor forgets the last call of the
  history, so the days or months before the first live call are not a feed outage;
* :func:`bootstrap` does the three and builds a fresh runner around the suite
  and the forecaster, which learns the same calls
  (:meth:`streams.forecasting.issuer.ForecastIssuer.learn_history`): its
  de-duplication state (offsets of the live calls topic) starts empty;
* :func:`signed_checkpoint` signs it at detector-input offset -1 (nothing of the
  live input seen), under the worker's key.

The command (the adapter) reads the file, prints a summary, and writes the
checkpoint to a file (``--out``) or into Redis (``--into-redis``, refused when the
worker already keeps a checkpoint there, unless ``--force``)::

    python -m streams.detection.bootstrap calls.csv --timezone America/Los_Angeles --out bootstrap.ckpt
    python -m streams.detection.bootstrap --load bootstrap.ckpt

A detection stage split over workers (``WF_DETECTION_PARTS``, :mod:`streams.detection.shards`)
is seeded once per part set, with each worker's ``WF_DETECTION_PARTS``: only
that share's detectors learn the history, and the checkpoint goes to its keys
(``P:detector:<parts>``); ``--load`` refuses a checkpoint of other parts,
naming both.

Examples
--------
>>> import random
>>> from detectors.types import CallPoint
>>> rng, t, points = random.Random(3), 1_700_000_000.0, []
>>> while len(points) < 1500:                       # four days at 16 calls an hour
...     t += rng.expovariate(16 / 3600)
...     points.append(CallPoint(t=t, cell="882aac941dfffff", category="EMS"))
>>> runner, summary = bootstrap(points, timezone="UTC", partitions=4)
>>> summary.calls, summary.ready["surge"], runner.partitions, runner._seen
(1500, True, 4, {})
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import pickle
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import h3
from tqdm import tqdm

from detectors.anomaly import MixAnomalyDetector
from detectors.calibration import Calibration, calibrate, counted_days, is_jurisdiction
from detectors.evaluation.calls import Calls
from detectors.evaluation.replay import TICK_S, replay
from detectors.forecast import ShiftForecaster
from detectors.suite import DetectorSuite
from detectors.surge import SurgeDetector
from detectors.types import DETECTION_RESOLUTION, Alert, AlertKind, AlertState, CallPoint
from streams.counting.keys import Keys
from streams.counting.rolling import cells_for
from streams.detection import checkpoint
from streams.detection.parts import PARTS, check_parts
from streams.detection.runner import DetectionRunner, default_suite, profile_forecaster, profile_suite
from streams.detection.shards import NoForecasts, runner_parts, share_suite
from streams.forecasting.issuer import ForecastIssuer
from streams.ingest.mapping import Mapping, MappingError, load_mapping
from streams.ingest.schema import Call, Extent, InvalidRecord, parse_event
from streams.ingest.sources import Rejected, Row, UnknownFormat, read_source
from streams.jurisdiction import Profile

log = logging.getLogger(__name__)

#: The longest the clock runs on past the last history call to close the alerts still open (seconds).
MAX_SETTLE_S = 6 * 3600.0

#: The detector-input offset a bootstrap checkpoint is signed at: no live message seen yet.
BOOTSTRAP_OFFSET = -1


# -- history rows -> the worker's points ----------------------------------------------------------------


def detection_cell(lat: float, lng: float, resolutions: tuple[int, ...]) -> str:
    """The res-8 cell the worker sends on detector-input for a call at ``(lat, lng)``, counting at ``resolutions``.

    As the counting planner does: the detection resolution's cell among the
    counted ones (the finest cell's ancestor, which H3's aperture 7 does not
    always make the cell holding the point), else the point's own cell.

    >>> detection_cell(40.1224422, -75.3383233, (8, 7))
    '882aac95d1fffff'
    >>> detection_cell(40.1224422, -75.3383233, (7, 6)) == h3.latlng_to_cell(40.1224422, -75.3383233, 8)
    True
    """
    if DETECTION_RESOLUTION in resolutions:
        return cells_for(lat, lng, resolutions)[resolutions.index(DETECTION_RESOLUTION)]
    return str(h3.latlng_to_cell(lat, lng, DETECTION_RESOLUTION))


def history_points(
    rows: Iterable[Row | Rejected],
    *,
    resolutions: tuple[int, ...],
    jurisdiction: Extent | None = None,
    now: float | None = None,
    until: float | None = None,
) -> tuple[list[CallPoint], Counter[str]]:
    """The calls of ``rows`` as the worker's detector points, in event-time order, and the rows left out per reason.

    Each call goes through the worker's validation (:func:`streams.ingest.schema.parse_event`
    with ``jurisdiction`` and the clock ``now``, default the wall clock), so a call
    the worker would refuse (outside the jurisdiction, no location, from the
    future) is left out under the worker's reason; rows the adapters rejected
    are counted under theirs; a call id seen before under ``"duplicate_id"``
    (the worker counts a call once); calls at or after ``until`` (epoch
    seconds) under ``"after_until"``. Ties in time keep the file's order.

    >>> rows = [Row(2, b"", 1453564931.0, {"type": "call", "v": 1, "id": "A", "received_at": "2016-01-23T16:02:11Z",
    ...     "category": "EMS", "call_type": "x", "priority": 2, "lat": 40.12, "lng": -75.34, "agency": "a", "source": "s"}, ()),
    ...     Rejected(3, b"", "impossible_timestamp", "...")]
    >>> points, left_out = history_points(rows, resolutions=(8, 7))
    >>> [(p.t, p.cell, p.category, p.priority) for p in points], dict(left_out)
    ([(1453564931.0, '882aac95d3fffff', 'EMS', 2)], {'impossible_timestamp': 1})
    """
    clock = time.time() if now is None else now
    points: list[CallPoint] = []
    left_out: Counter[str] = Counter()
    seen: set[str] = set()
    for row in rows:
        if not isinstance(row, Row):
            left_out[row.reason] += 1
            continue
        try:
            event = parse_event(json.dumps(row.call).encode(), now=clock, jurisdiction=jurisdiction).event
        except InvalidRecord as exc:
            left_out[exc.reason.value] += 1
            continue
        if not isinstance(event, Call):  # the adapters make calls here; an update is not a call to learn
            left_out["not_a_call"] += 1
            continue
        if until is not None and event.received_at >= until:
            left_out["after_until"] += 1
            continue
        if event.id in seen:
            left_out["duplicate_id"] += 1
            continue
        seen.add(event.id)
        cell = sys.intern(detection_cell(event.lat, event.lng, resolutions))
        points.append(CallPoint(t=event.received_at, cell=cell, category=event.category.value, priority=event.priority))
    points.sort(key=lambda p: p.t)
    return points, left_out


@dataclass
class WorkerCalls(Calls):
    """:class:`~detectors.evaluation.calls.Calls` carrying what the worker's points carry: the priority, no response times."""

    priority: list[int | None] = field(default_factory=list)

    def point(self, i: int) -> CallPoint:
        """Call ``i`` as the worker hands it to the detectors (``streams.detection.runner``)."""
        return CallPoint(t=self.t[i], cell=self.cell[i], category=self.category[i], priority=self.priority[i])

    @classmethod
    def from_points(cls, points: list[CallPoint]) -> WorkerCalls:
        """The points (in event-time order) as parallel lists."""
        return cls(
            t=[p.t for p in points],
            cell=[p.cell for p in points],
            category=[p.category for p in points],
            dispatch_s=[None] * len(points),
            inj=[-1] * len(points),
            priority=[p.priority for p in points],
        )


# -- training, settling ----------------------------------------------------------------------------


def _progress(items: Iterable[Any], desc: str, total: int | None = None) -> Iterable[Any]:
    return tqdm(items, desc=desc, total=total, unit=" calls", file=sys.stderr, mininterval=1.0)


def _quiet(items: Iterable[Any], desc: str, total: int | None = None) -> Iterable[Any]:
    return items


def train(suite: DetectorSuite, points: list[CallPoint], *, progress: bool = False) -> tuple[list[Alert], float | None]:
    """Replay ``points`` (event-time order) through ``suite``, the clock ticking every minute; the alert records and when it became ready.

    The suite learns every call; the alert records it made are returned, not
    sent anywhere. The second value is the event time of the first call at which
    the surge detector's baseline was ready (None if it never was).
    """
    calls = WorkerCalls.from_points(points)
    ready_at: list[float] = []
    show = _progress if progress else _quiet

    def watch(items: Iterable[Any], desc: str, total: int | None = None) -> Iterator[Any]:
        for i in show(items, desc, total):
            if not ready_at and suite.surge.baseline.ready:
                ready_at.append(calls.t[i])
            yield i

    alerts, _ = replay(suite, calls, track=watch, desc="learning the history")
    if not ready_at and suite.surge.baseline.ready and len(calls):
        ready_at.append(calls.t[-1])
    return alerts, (ready_at[0] if ready_at else None)


def open_alerts(records: Iterable[Alert]) -> dict[str, Alert]:
    """The alerts a sequence of lifecycle records leaves open, by id (the last record of each).

    >>> from detectors.types import AlertKind as K, AlertState as S
    >>> def rec(i, s):
    ...     return Alert(id=i, kind=K.SURGE, state=s, started_at=0.0, at=0.0, cells=(), window_min=15,
    ...                  observed=9, expected=1.0, score=5.0, p_value=None)
    >>> sorted(open_alerts([rec("a", S.OPEN), rec("b", S.OPEN), rec("a", S.UPDATE), rec("b", S.CLOSED)]))
    ['a']
    """
    out: dict[str, Alert] = {}
    for a in records:
        if a.state is AlertState.CLOSED:
            out.pop(a.id, None)
        else:
            out[a.id] = a
    return out


def settle(
    suite: DetectorSuite, records: list[Alert], last_t: float, max_s: float = MAX_SETTLE_S
) -> tuple[DetectorSuite, float, list[Alert]]:
    """Ready ``suite`` (trained up to ``last_t``) for a live feed that starts after a gap of any length.

    ``records`` are the alert records training made. While an alert other than
    a feed outage is open, the clock ticks on every minute past ``last_t`` (at
    most ``max_s`` seconds), so that it closes now, in the bootstrap, whose
    records nobody reads, rather than at the first live call, which would
    publish the close of an alert never opened live. Then the feed monitor is
    replaced by a fresh one on the same learnt rate: it has seen no call, so
    the gap before the first live call (the silence it would otherwise measure
    from the last history call) is no outage; it watches silences again from
    the first live call on.

    Returns the suite to run live, the seconds the clock ran past ``last_t``,
    and the alerts still open after ``max_s`` (they close at the first live calls).
    """
    still = {k: a for k, a in open_alerts(records).items() if a.kind is not AlertKind.FEED_OUTAGE}
    tick = (math.floor(last_t / TICK_S) + 1) * TICK_S
    ran = 0.0
    while still and tick - last_t <= max_s:
        for a in suite.advance(tick):
            if a.kind is AlertKind.FEED_OUTAGE:
                continue
            if a.state is AlertState.CLOSED:
                still.pop(a.id, None)
            else:
                still[a.id] = a
        ran = tick - last_t
        tick += TICK_S
    feed = suite.feed.clone({"baseline": suite.feed.baseline})  # its configuration and learnt rate, no last call
    live = DetectorSuite(surge=suite.surge, feed=feed, extra=suite.extra, score=suite.score, zones=suite.zones, skip=suite.skip)
    return live, ran, list(still.values())


# -- the whole bootstrap ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    """What a bootstrap learnt and what it would have raised on the history (see :meth:`lines`)."""

    #: calls learnt
    calls: int
    #: rows left out, per reason
    left_out: dict[str, int]
    #: the jurisdiction's IANA zone the detectors learnt their hour-of-week rhythm in
    timezone: str
    #: event times of the first and last call learnt (epoch seconds; None without calls)
    first_t: float | None
    last_t: float | None
    #: whether each detector's model is ready (baseline ``ready``): surge, feed, and the anomaly model's warm-up
    ready: dict[str, bool]
    #: hours of live feed the surge baseline learnt (silences past the plausible not counted)
    exposure_hours: float
    #: event time of the first call at which the surge baseline was ready (None: never)
    ready_at: float | None
    #: alerts opened on the days counted, per kind (surges local and jurisdiction-wide apart), and those days of live feed
    #: (as :func:`detectors.calibration.counted_days` counts them: whole local days after the one the detectors are ready
    #: on, gaps between calls capped at 3 hours, so a sampled export's month-long gaps are not quiet days)
    opened: dict[str, int]
    live_days: float
    #: seconds the clock ran on past the last call to close history alerts, and the alerts it could not close
    settle_s: float
    left_open: int
    #: the surge baseline's half-life: how fast what it learnt fades
    half_life_days: float = 90.0

    @property
    def days(self) -> float:
        """Days from the first call to the last."""
        if self.first_t is None or self.last_t is None:
            return 0.0
        return (self.last_t - self.first_t) / 86400.0

    def local_date(self, t: float | None) -> date | None:
        """The local date of event time ``t`` in the jurisdiction's zone."""
        return None if t is None else datetime.fromtimestamp(t, ZoneInfo(self.timezone)).date()

    def per_day(self) -> dict[str, float]:
        """Alerts opened per day of live feed, per kind, once the detectors were ready (a false-alert estimate, the
        calibration's measure: every alert counts, real surges included, so it bounds the false ones from above)."""
        return {kind: n / self.live_days for kind, n in sorted(self.opened.items())} if self.live_days > 0 else {}

    def lines(self, now: float | None = None) -> list[str]:
        """The summary a person reads after a bootstrap; with ``now`` (epoch seconds), how much the history has faded by then."""
        out = [f"calls learnt        {self.calls:,}" + (f"   (left out: {_reasons(self.left_out)})" if self.left_out else "")]
        out.append(
            f"history             {self.days:.1f} days, {self.local_date(self.first_t)} to {self.local_date(self.last_t)} "
            f"({self.timezone}); {self.exposure_hours:,.0f} hours of live feed learnt"
        )
        out.append("ready               " + ", ".join(f"{name} {'yes' if ok else 'NO'}" for name, ok in self.ready.items()))
        if self.ready_at is not None:
            out.append(
                f"ready after         {(self.ready_at - (self.first_t or self.ready_at)) / 86400.0:.1f} days of history "
                f"({self.local_date(self.ready_at)})"
            )
            rates = self.per_day()
            if rates:
                rate_text = ", ".join(f"{kind} {r:.2f}" for kind, r in rates.items())
                out.append(f"alerts a day        {rate_text}   (on {self.live_days:.1f} days of feed after ready)")
            elif self.live_days > 0:
                out.append(f"alerts a day        none raised on {self.live_days:.1f} days of feed after ready")
        if self.left_open:
            out.append(
                f"left open           {self.left_open} alert(s) still open after {self.settle_s / 3600:.0f} h: "
                "they close at the first live calls"
            )
        if now is not None and self.last_t is not None and now > self.last_t:
            age = (now - self.last_t) / 86400.0
            weight = 0.5 ** (age / self.half_life_days)
            out.append(
                f"age                 the history ends {age:,.0f} days before today: if the live feed starts today, its last day's "
                f"calls count {weight:.0%} of a live call (half-life {self.half_life_days:g} days)"
            )
            if age > self.half_life_days:
                out.append(
                    "TOO OLD for a live feed of today: its first hours would outweigh it, on detectors that say they are ready; "
                    "bootstrap from the latest weeks (a replay of old calls, as in the demo, is not affected)"
                )
        if not self.ready.get("surge", all(self.ready.values())):
            out.append("NOT READY: give more history (the detectors need 1,000 calls and 24 hours of feed); the worker would warm up live")
        return out


def _reasons(counts: dict[str, int]) -> str:
    return ", ".join(f"{n:,} {reason}" for reason, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _kind(alert: Alert) -> str:
    """The alert's kind as the summary counts it: surges of the jurisdiction apart from local ones."""
    if alert.kind is AlertKind.SURGE:
        return "surge (jurisdiction)" if is_jurisdiction(alert) else "surge (local)"
    return alert.kind.value


def bootstrap(
    points: list[CallPoint],
    *,
    timezone: str,
    partitions: int,
    left_out: dict[str, int] | None = None,
    suite: DetectorSuite | None = None,
    forecaster: ShiftForecaster | None = None,
    progress: bool = False,
    parts: Sequence[str] = PARTS,
) -> tuple[DetectionRunner, Summary]:
    """A runner whose detectors learnt ``points`` (event-time order), ready for the live feed, and what it learnt.

    ``suite`` defaults to the worker's (:func:`~streams.detection.runner.default_suite`
    in ``timezone``). The runner is new (:class:`DetectionRunner` with
    ``partitions``, the worker's ``WF_PARTITIONS``): its de-duplication offsets,
    reorder buffer and drift monitor start empty; only the suite is trained and
    settled (:func:`settle`), and the forecaster (by default
    ``ShiftForecaster(timezone)``) learns the same calls. ``left_out`` is
    reported in the summary as given.

    ``parts`` (:data:`~streams.detection.parts.PARTS` by default: the whole
    stage) makes the runner of a detection worker running that share of it
    (``WF_DETECTION_PARTS``, :func:`streams.detection.shards.worker_runner`):
    only those parts' detectors learn the history, the others are held but not
    run, and without ``forecaster`` among them no forecaster learns it.
    """
    run = check_parts(parts)
    suite = share_suite(default_suite(timezone) if suite is None else suite, run)
    if "forecaster" in run:
        forecasting = ForecastIssuer(ShiftForecaster(timezone) if forecaster is None else forecaster)
    else:
        forecasting = NoForecasts()
    records, ready_at = train(suite, points, progress=progress)
    forecasting.learn_history(_progress(points, "forecaster", len(points)) if progress else points)
    last_t = points[-1].t if points else None
    settle_s, left = 0.0, list[Alert]()
    if last_t is not None:
        suite, settle_s, left = settle(suite, records, last_t)
    days, live_days = counted_days([p.t for p in points], timezone)
    tz = ZoneInfo(timezone)
    opened = Counter(_kind(a) for a in records if a.state is AlertState.OPEN and datetime.fromtimestamp(a.at, tz).date() in days)
    ready: dict[str, bool] = {}
    if "surge" in run:
        ready["surge"] = suite.surge.baseline.ready
    if "feed" in run:
        ready["feed"] = suite.feed.baseline.ready
    for d in suite.extra:
        if isinstance(d, MixAnomalyDetector) and "anomaly" in run:
            ready["anomaly"] = d.windows_learnt >= d.warmup
    if "forecaster" in run:
        ready["forecast"] = forecasting.forecaster.ready()
    learnt = suite.surge.baseline if "surge" in run or "feed" not in run else suite.feed.baseline
    summary = Summary(
        calls=len(points),
        left_out=dict(left_out or {}),
        timezone=timezone,
        first_t=points[0].t if points else None,
        last_t=last_t,
        ready=ready,
        exposure_hours=learnt.exposure_hours,
        ready_at=ready_at,
        opened=dict(opened),
        live_days=live_days,
        settle_s=settle_s,
        left_open=len(left),
        half_life_days=learnt.half_life_days,
    )
    return DetectionRunner(suite=suite, forecasting=forecasting, partitions=partitions), summary


def calibrate_on_history(points: list[CallPoint], profile: Profile, timezone: str, progress: bool = False) -> Calibration:
    """The surge thresholds that meet ``profile``'s false-alert budget on ``points`` (:func:`detectors.calibration.calibrate`).

    The profile's special days are not counted against the budget (their surges are real). Raises
    :class:`ValueError` when the history is too short to calibrate on (the message says what it holds).
    """
    calls = Calls()
    for p in points:
        calls.append(p.t, p.cell, p.category, None)

    def mapper(fn: Callable[[Any], Any], jobs: list[Any]) -> Iterable[Any]:
        results = map(fn, jobs)
        return tqdm(results, total=len(jobs), desc="calibrating", unit=" thresholds", file=sys.stderr) if progress else results

    return calibrate(calls, profile.false_alerts_per_day, timezone, exclude_days=[d.date for d in profile.special_days], mapper=mapper)


def calibration_lines(profile: Profile, calibration: Calibration | None, why_not: str | None = None) -> list[str]:
    """What the summary says of the surge thresholds: calibrated, or shipped and why, and kept at the budget online.

    >>> from streams.jurisdiction import Profile
    >>> calibration_lines(Profile(id="x", name="X", timezone="UTC"), None)[0]
    'thresholds          local 6, jurisdiction 4.5 (shipped; --calibrate fits them to the history)'
    """
    budget = profile.false_alerts_per_day
    if calibration is None:
        shipped = SurgeDetector()
        text = f"thresholds          local {shipped.threshold:g}, jurisdiction {shipped.jurisdiction_threshold:g} (shipped; "
        text += (f"not calibrated: {why_not}" if why_not else "--calibrate fits them to the history") + ")"
        out = [text]
    else:
        out = [
            f"thresholds          local {calibration.threshold:g}, jurisdiction {calibration.jurisdiction_threshold:g}, calibrated to "
            f"{budget:g} alert(s) a day on {calibration.live_days:.1f} days of history: {calibration.expected_per_day:.2f} a day there "
            "(every alert counted, real surges too: an upper bound of the false ones)"
        ]
    out.append(f"online              kept at {budget:g} alert(s) a day ([detection] of the profile), moved at most 0.1 a day")
    return out


def signed_checkpoint(runner: DetectionRunner, key: bytes) -> bytes:
    """``runner`` pickled and signed at detector-input offset :data:`BOOTSTRAP_OFFSET` under ``key`` (the worker's)."""
    return checkpoint.sign(pickle.dumps(runner, protocol=pickle.HIGHEST_PROTOCOL), key, offset=BOOTSTRAP_OFFSET)


# -- the command (the adapter: files, settings, Redis) ------------------------------------------------


def _zone(profile: Profile, timezone: str | None) -> str:
    """The jurisdiction's IANA zone: the profile's (``--profile`` or ``WF_PROFILE``), else ``--timezone``, else UTC (warned)."""
    if profile.path is not None:
        if timezone is not None and timezone != profile.timezone:
            raise SystemExit(
                f"--timezone {timezone} differs from the timezone of the profile {profile.path} ({profile.timezone}): give one"
            )
        return profile.timezone
    if timezone is not None:
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise SystemExit(f"--timezone {timezone!r} is not an IANA time zone (e.g. America/Chicago, Europe/Paris)") from None
        return timezone
    log.warning("no --profile, WF_PROFILE or --timezone: the detectors learn the hour-of-week rhythm in UTC, not in local time")
    return "UTC"


def _until(text: str | None, zone: str) -> float | None:
    """``--until`` as epoch seconds: an ISO date or time, naive ones in the jurisdiction's zone."""
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise SystemExit(f"--until {text!r} is not an ISO date or time (e.g. 2016-08-01 or 2016-08-01T06:00-04:00)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=ZoneInfo(zone))
    return when.timestamp()


def _rows(path: str, fmt: str, mapping: str | None, timezone: str | None) -> Iterator[Row | Rejected]:
    """The file's rows by the source adapters: its format or mapping file, naive times in ``timezone`` (None: the format's)."""
    if mapping is not None and fmt != "auto":
        raise SystemExit("give --format or --mapping, not both")
    try:
        how: str | Mapping = load_mapping(mapping) if mapping is not None else fmt
        return read_source(path, how, timezone=timezone)
    except (MappingError, UnknownFormat) as exc:
        raise SystemExit(str(exc)) from None
    except OSError as exc:
        raise SystemExit(f"cannot read {exc.filename}: {exc.strerror}") from None


def _write_file(path: str, blob: bytes) -> None:
    """Write ``blob`` to ``path`` with mode 0600 (it holds the detectors' state: calls' places and times)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(blob)
    os.chmod(path, 0o600)  # an existing file keeps its mode through O_CREAT


async def _into_redis(settings: Any, blob: bytes, force: bool) -> bool:
    from streams.counting.state import RedisState  # the Redis adapter, only when writing there

    state = RedisState.from_settings(settings)
    try:
        return await state.seed_detection(BOOTSTRAP_OFFSET, blob, force=force)
    finally:
        await state.close()


def _store(settings: Any, blob: bytes, force: bool) -> int:
    """Put ``blob`` into Redis as the detectors' checkpoint (of the worker's part set); the exit status, with what
    happened on stdout/stderr."""
    where = Keys(settings.redis_prefix, detection=settings.detection_set).detector
    if asyncio.run(_into_redis(settings, blob, force)):
        print(f"written to Redis {settings.redis_url} as {where}: start the worker (python -m streams.runtime.worker); it restores from it")
        return 0
    print(
        f"refused: {where} already holds the worker's detectors (a checkpoint, or a worker has run): writing would lose "
        "their live state. Stop the worker and add --force to replace it",
        file=sys.stderr,
    )
    return 3


def main(argv: list[str] | None = None) -> int:
    """``python -m streams.detection.bootstrap``: see ``--help``."""
    from streams.counting.state import jurisdiction_extent  # the worker's: the profile's boundary, else WF_JURISDICTION's box
    from streams.runtime.settings import SettingsError, checkpoint_key, load_jurisdiction, load_settings

    p = argparse.ArgumentParser(
        prog="python -m streams.detection.bootstrap",
        description="Train the worker's detectors on a history file and leave a signed checkpoint the worker starts from. "
        "With WF_DETECTION_PARTS set, the checkpoint is that share's (P:detector:<parts>): only its detectors learn, "
        "and a detection worker with the same WF_DETECTION_PARTS restores it; run the command once per part set.",
    )
    p.add_argument("file", nargs="?", help="the history: a CSV file the replay reads")
    p.add_argument("--format", default="auto", help="the file's built-in format (default: detected from the header)")
    p.add_argument("--mapping", help="a source mapping (TOML) describing the file, in place of a built-in format")
    p.add_argument("--profile", help="the jurisdiction profile (TOML; default WF_PROFILE): its time zone")
    p.add_argument("--timezone", help="the jurisdiction's IANA time zone without a profile (default UTC); also that of naive times")
    p.add_argument("--until", help="learn only calls before this ISO date or time (naive: the jurisdiction's local time)")
    p.add_argument(
        "--calibrate",
        action="store_true",
        help="fit the surge thresholds to the profile's false-alert budget on this history first "
        "(replays it once per candidate pair, eight times: minutes on a year of calls)",
    )
    p.add_argument("--out", help="write the signed checkpoint to this file (mode 0600)")
    p.add_argument(
        "--into-redis", action="store_true", help="write it as the detectors' checkpoint in Redis (WF_REDIS_URL, WF_REDIS_PREFIX)"
    )
    p.add_argument("--force", action="store_true", help="with --into-redis or --load: replace the checkpoint the worker keeps there")
    p.add_argument("--load", metavar="CKPT", help="put a checkpoint saved with --out into Redis (no history is read)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        settings = load_settings(**({"profile": args.profile} if args.profile is not None else {}))
        profile = load_jurisdiction(settings)
        key = checkpoint_key(settings)
    except SettingsError as exc:
        raise SystemExit(str(exc)) from None
    parts = settings.detection_parts
    where = Keys(settings.redis_prefix, detection=settings.detection_set).detector
    if args.calibrate and "surge" not in parts:
        p.error(f"--calibrate fits the surge thresholds, and this worker's parts ({','.join(parts)}, WF_DETECTION_PARTS) have no surge")
    if args.load is not None:
        if args.file is not None:
            p.error("--load takes no history file")
        try:
            blob = Path(args.load).read_bytes()
        except OSError as exc:
            raise SystemExit(f"cannot read {args.load}: {exc.strerror}") from None
        try:
            runner = checkpoint.restore(blob, key, offset=BOOTSTRAP_OFFSET)
        except checkpoint.CheckpointRefused as exc:
            raise SystemExit(f"{args.load} was refused: {exc}; it must be signed with the worker's key (WF_CHECKPOINT_KEY)") from None
        if not isinstance(runner, DetectionRunner):
            raise SystemExit(f"{args.load} holds a {type(runner).__name__}, not the detectors")
        held = runner_parts(runner)
        if held != parts:
            raise SystemExit(
                f"{args.load} holds the detection parts {','.join(held)}, but this worker's are {','.join(parts)} "
                f"(WF_DETECTION_PARTS{'' if settings.detection_set else ' unset: the whole stage'}): load it with "
                f"WF_DETECTION_PARTS={','.join(held)}, or bootstrap this worker's parts from the history"
            )
        return _store(settings, blob, args.force)
    if args.file is None:
        p.error("give a history file (or --load CKPT)")
    if args.out is None and not args.into_redis:
        p.error("say where the checkpoint goes: --out FILE and/or --into-redis")
    zone = _zone(profile, args.timezone)
    until = _until(args.until, zone)
    naive_zone = zone if profile.path is not None or args.timezone is not None else None
    source = _rows(args.file, args.format, args.mapping, naive_zone)
    rows = tqdm(source, desc="reading", unit=" rows", file=sys.stderr, mininterval=1.0)
    points, left_out = history_points(rows, resolutions=settings.resolutions, jurisdiction=jurisdiction_extent(settings), until=until)
    if not points:
        raise SystemExit(f"no call of {args.file} can be learnt ({_reasons(left_out) or 'the file has no rows'})")
    local_profile = replace(profile, timezone=zone)
    calibration, why_not = None, None
    if args.calibrate:
        try:
            calibration = calibrate_on_history(points, local_profile, zone, progress=True)
        except ValueError as exc:
            why_not = str(exc)
    thresholds = None if calibration is None else (calibration.threshold, calibration.jurisdiction_threshold)
    suite = profile_suite(local_profile, thresholds)  # the worker's: its zone, holidays and false-alert budget
    runner, summary = bootstrap(
        points, timezone=zone, partitions=settings.partitions, left_out=dict(left_out), suite=suite,
        forecaster=profile_forecaster(local_profile), progress=True, parts=parts,
    )  # fmt: skip
    share = [] if not settings.detection_set else [f"parts               {', '.join(parts)} (WF_DETECTION_PARTS): checkpoint {where}"]
    print("\n".join(share + summary.lines(now=time.time()) + calibration_lines(local_profile, calibration, why_not)))
    blob = signed_checkpoint(runner, key)
    status = 0
    if args.out is not None:
        _write_file(args.out, blob)
        print(f"checkpoint          {args.out} ({len(blob) / 1e6:.1f} MB, signed with the worker's key)")
    if args.into_redis:
        status = _store(settings, blob, args.force)
    elif args.out is not None:
        print(f"next                python -m streams.detection.bootstrap --load {args.out}  (before the worker's first start)")
    return status


if __name__ == "__main__":
    sys.exit(main())
