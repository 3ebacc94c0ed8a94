"""Replay a 911 CSV export as live Kafka traffic.

    python -m streams.ingest.replay ../shared/data/montgomery-pa-911-2015-12-to-2016-08.csv --speed 60
    python -m streams.ingest.replay calls.csv --format watchfloor --speed max --limit 10000
    python -m streams.ingest.replay seattle-2022.csv --timezone America/Los_Angeles --dry-run
    python -m streams.ingest.replay sf-calls.csv --mapping sf-fire.toml --dry-run

Rows are read through a source mapping (``streams.ingest.sources``: a built-in
format, ``--format auto`` detecting it from the header, or ``--mapping M.toml``
for any other export; ``--timezone ZONE`` for times written without an offset,
over the mapping's zone), sorted by event time, and produced to
``{prefix}.calls`` and ``{prefix}.incident-updates`` keyed by call id, at
``--speed`` times real time (``max``: as fast as the broker takes them).
Incident updates come from the file's status times where it has them.
Rows the mapping cannot read go to the dead-letter topic with the original line
and the reason, so nothing disappears silently; so does an incident update
refused on its own (a status time before the call was received by more than
``--status-tolerance`` seconds), as its update JSON, while its call is replayed.
When nothing can be replayed, the last line says why: the reasons the rows
were refused, with an example, or the ``--since``/``--until`` window that
left no call. The producer is idempotent and
waits for every acknowledgement before exiting.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING

from streams.faustext import kafka_backoff
from streams.ingest.mapping import Mapping, MappingError, load_mapping
from streams.ingest.schema import Reason
from streams.ingest.sources import FORMATS, Rejected, Row, UnknownFormat, count_rows, detect_format, read_source
from streams.runtime.settings import load_settings
from streams.topics import CALLS, DEADLETTER, INCIDENT_UPDATES, topic_name

if TYPE_CHECKING:
    from aiokafka import AIOKafkaProducer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outgoing:
    """One record to produce, ordered by event time (calls before their updates at equal times)."""

    event_time: float
    order: int
    topic: str
    key: bytes
    value: bytes


@dataclass(frozen=True)
class Pace:
    """When each record is due, in seconds after the replay starts (pure).

    ``speed`` replays event-time gaps ``speed`` times faster than they
    happened; ``rate`` caps the records sent per second (for load tests at a
    fixed offered load); with both, a record waits for the later of the two;
    with neither, everything is due at once.

    >>> Pace(speed=60).due(5, event_time=7200.0, first_event_time=3600.0)
    60.0
    >>> Pace(rate=1000).due(5000, event_time=0.0, first_event_time=0.0)
    5.0
    >>> Pace().due(5000, 1.0, 0.0) is None
    True
    """

    speed: float | None = None
    rate: float | None = None

    def __post_init__(self) -> None:
        for name in ("speed", "rate"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive or None, got {value!r}")

    def due(self, index: int, event_time: float, first_event_time: float) -> float | None:
        times = []
        if self.speed is not None:
            times.append((event_time - first_event_time) / self.speed)
        if self.rate is not None:
            times.append(index / self.rate)
        return max(times) if times else None


@dataclass
class ReplaySummary:
    calls: int = 0
    updates: int = 0
    rejected: Counter | None = None  # by reason; refused updates under status_before_received
    first_event_time: float | None = None
    last_event_time: float | None = None
    seconds: float = 0.0
    unmapped: Counter | None = None  # (field, value) the mapping had no entry for: read as null

    def text(self, dry_run: bool = False) -> str:
        from streams.ingest.schema import format_time

        rejected = self.rejected or Counter()
        what = f"{self.calls} calls and {self.updates} incident updates"
        if dry_run:
            head = f"dry run: {what} would be replayed, nothing sent"
        else:
            rate = (self.calls + self.updates) / self.seconds if self.seconds > 0 else 0.0
            head = f"replayed {what} in {self.seconds:.1f} s ({rate:,.0f} records/s)"
        if self.first_event_time is not None and self.last_event_time is not None:
            head += f"; event time {format_time(self.first_event_time)} .. {format_time(self.last_event_time)}"
        rows = Counter({r: n for r, n in rejected.items() if r != Reason.STATUS_BEFORE_RECEIVED})
        reasons = ", ".join(f"{r}: {n}" for r, n in sorted(rows.items()))
        text = head + f"; {sum(rows.values())} rows refused by the adapter" + (f" ({reasons})" if reasons else "")
        if rejected.get(Reason.STATUS_BEFORE_RECEIVED):
            text += (
                f"; {rejected[Reason.STATUS_BEFORE_RECEIVED]} incident updates refused ({Reason.STATUS_BEFORE_RECEIVED}), their calls kept"
            )
        if self.unmapped:
            values = ", ".join(f"{f} {v!r}: {n}" for (f, v), n in self.unmapped.most_common(5))
            text += f"; {sum(self.unmapped.values())} values not in the mapping, read as null ({values})"
        return text


@dataclass
class ReplayPlan:
    """What :func:`read_plan` made of a file: the records in order, the refusals, and what it read before filtering."""

    records: list[Outgoing]
    rejected: list[Rejected]  # refused rows, then refused updates (reason status_before_received, raw the update JSON)
    rows_read: int  # calls read from the file, before --since/--until and --limit
    first_read: float | None  # earliest and latest received time among them
    last_read: float | None
    unmapped: Counter


def nothing_read(plan: ReplayPlan, since: float | None, until: float | None) -> str:
    """Why a plan has no record, in one line naming the reasons with an example, or the window that emptied it (pure).

    >>> r = Rejected(2, b"x", "impossible_timestamp", "column 'Datetime' is '01/21/2022 01:43:00 PM': no UTC offset")
    >>> print(nothing_read(ReplayPlan([], [r] * 3, 0, None, None, Counter()), None, None))
    none of the 3 rows was read: 3 impossible_timestamp (line 2: column 'Datetime' is '01/21/2022 01:43:00 PM': no UTC offset)
    """
    from streams.ingest.schema import format_time

    rows = [r for r in plan.rejected if r.reason != Reason.STATUS_BEFORE_RECEIVED]
    if plan.rows_read == 0:
        if not rows:
            return "the file has no data rows"
        counts = Counter(r.reason for r in rows)
        first: dict[str, Rejected] = {}
        for r in rows:
            first.setdefault(r.reason, r)
        why = "; ".join(f"{n:,} {reason} (line {first[reason].line}: {first[reason].detail})" for reason, n in counts.most_common())
        return f"none of the {len(rows):,} rows was read: {why}"
    window = f"[{format_time(since) if since is not None else '...'}, {format_time(until) if until is not None else '...'})"
    span = f"{format_time(plan.first_read)} .. {format_time(plan.last_read)}" if plan.first_read is not None and plan.last_read else "?"
    return f"none of the {plan.rows_read:,} calls read was received in --since/--until {window}; the file's calls run {span}"


def plan_replay(
    path: Path,
    fmt: str | Mapping,
    prefix: str,
    limit: int | None = None,
    since: float | None = None,
    until: float | None = None,
    *,
    timezone: str | None = None,
    status_tolerance: float | None = None,
) -> tuple[list[Outgoing], list[Rejected]]:
    """Read a file into the ordered records to produce (pure apart from reading the file).

    ``since``/``until`` (epoch seconds) keep calls received in ``[since, until)``;
    ``limit`` then keeps the first ``limit`` of them by event time, with their updates.
    ``fmt``, ``timezone`` and ``status_tolerance`` as :func:`streams.ingest.sources.read_source` takes them.
    """
    plan = read_plan(path, fmt, prefix, limit, since, until, timezone=timezone, status_tolerance=status_tolerance)
    return plan.records, plan.rejected


def read_plan(
    path: Path,
    fmt: str | Mapping,
    prefix: str,
    limit: int | None = None,
    since: float | None = None,
    until: float | None = None,
    *,
    timezone: str | None = None,
    status_tolerance: float | None = None,
) -> ReplayPlan:
    """:func:`plan_replay`, with what was read before filtering (for the message when nothing is left)."""
    calls_topic = topic_name(prefix, CALLS)
    updates_topic = topic_name(prefix, INCIDENT_UPDATES)
    rows: list[Row] = []
    rejected: list[Rejected] = []
    refused: list[Rejected] = []
    unmapped: Counter = Counter()
    n_read = 0
    first_read = last_read = None
    for item in read_source(path, fmt, timezone=timezone, status_tolerance=status_tolerance):
        if isinstance(item, Rejected):
            rejected.append(item)
            continue
        n_read += 1
        first_read = item.event_time if first_read is None else min(first_read, item.event_time)
        last_read = item.event_time if last_read is None else max(last_read, item.event_time)
        if (since is None or item.event_time >= since) and (until is None or item.event_time < until):
            rows.append(item)
    rows.sort(key=lambda r: (r.event_time, r.line))
    if limit is not None:
        rows = rows[:limit]
    out: list[Outgoing] = []
    for row in rows:
        key = str(row.call["id"]).encode()
        out.append(Outgoing(row.event_time, 0, calls_topic, key, _encode(row.call)))
        for upd in row.updates:
            out.append(Outgoing(_update_time(upd, row.event_time), 1, updates_topic, key, _encode(upd)))
        for r in row.refused:
            refused.append(Rejected(row.line, _encode(r.update), r.reason, f"call {row.call['id']!r}, update {r.status!r}: {r.detail}"))
        unmapped.update(row.unmapped)
    out.sort(key=lambda o: (o.event_time, o.order))
    return ReplayPlan(out, rejected + refused, n_read, first_read, last_read, unmapped)


def _encode(obj: dict) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _update_time(upd: dict, fallback: float) -> float:
    from datetime import datetime

    try:
        return datetime.fromisoformat(str(upd["at"]).replace("Z", "+00:00")).timestamp()
    except (KeyError, ValueError):
        return fallback


async def produce(
    records: list[Outgoing],
    rejected: list[Rejected],
    *,
    bootstrap: str,
    prefix: str,
    pace: Pace,
    progress: bool = True,
    source_name: str = "",
) -> ReplaySummary:
    """Send the records in order, each when ``pace`` says it is due."""
    summary = ReplaySummary(rejected=Counter(r.reason for r in rejected))
    producer = await _start_producer(bootstrap)
    started = time.monotonic()
    try:
        await _send_rejected(producer, topic_name(prefix, DEADLETTER), rejected, source_name)
        await _send_paced(producer, records, pace, started, topic_name(prefix, CALLS), summary, progress=progress)
        await producer.flush()
    finally:
        await producer.stop()
    summary.seconds = time.monotonic() - started
    if records:
        summary.first_event_time = records[0].event_time
        summary.last_event_time = records[-1].event_time
    return summary


async def _start_producer(bootstrap: str) -> AIOKafkaProducer:
    """An idempotent producer, started; :class:`ReplayError` when Kafka cannot be reached."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        max_batch_size=256 * 1024,
        request_timeout_ms=60000,
    )
    try:
        await producer.start()
    except KafkaError as exc:
        raise ReplayError(f"cannot reach Kafka at {bootstrap} ({exc}); start the stack with: python -m infra.stack up") from exc
    return producer


async def _send_rejected(producer: AIOKafkaProducer, dlq: str, rejected: list[Rejected], source_name: str) -> None:
    """Each refused line (or update) to the dead-letter topic ``dlq``, in the worker's envelope, keyed by its line number."""
    for r in rejected:
        envelope = {
            "v": 1,
            "reason": r.reason,
            "detail": r.detail,
            "topic": f"replay:{source_name}",
            "partition": None,
            "offset": r.line,
            "refused_at": time.time(),
            "original_b64": __import__("base64").b64encode(r.raw).decode(),
        }
        await producer.send(dlq, key=f"line-{r.line}".encode(), value=_encode(envelope))


async def _send_paced(
    producer: AIOKafkaProducer,
    records: list[Outgoing],
    pace: Pace,
    started: float,
    calls_topic: str,
    summary: ReplaySummary,
    *,
    progress: bool,
) -> None:
    """Send ``records`` in order, each when ``pace`` says it is due after ``started``; count calls and updates in ``summary``."""
    from tqdm import tqdm

    t0 = records[0].event_time if records else 0.0
    bar = tqdm(total=len(records), unit="rec", desc="replay", disable=not progress, file=sys.stderr, smoothing=0.1)
    pending: list[asyncio.Future] = []
    paced = pace != Pace()
    for i, rec in enumerate(records):
        due = pace.due(i, rec.event_time, t0)
        if due is not None:
            delay = started + due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        pending.append(await producer.send(rec.topic, key=rec.key, value=rec.value))
        if rec.topic == calls_topic:
            summary.calls += 1
        else:
            summary.updates += 1
        if len(pending) >= 5000:
            await asyncio.gather(*pending)
            bar.update(len(pending))
            pending.clear()
        elif paced and len(pending) >= 50:
            bar.update(len(pending))
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)
    bar.update(len(pending))
    bar.close()


class ReplayError(RuntimeError):
    """The replay could not run; the message says why and what to do."""


def _speed(text: str) -> float | None:
    if text == "max":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--speed takes a positive number or 'max', got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"--speed must be positive, got {text!r}")
    return value


def parse_when(text: str) -> float:
    """An ISO 8601 time given on the command line, as epoch seconds (no offset: UTC); for argparse.

    >>> parse_when("2016-01-23T14:00"), parse_when("2016-01-23T14:00-05:00")
    (1453557600.0, 1453575600.0)
    """
    from datetime import datetime

    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an ISO 8601 time such as 2016-01-23 or 2016-01-23T14:00-05:00, got {text!r}") from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def _zone(text: str) -> str:
    """An IANA zone name given on the command line; for argparse."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise argparse.ArgumentTypeError(f"expected an IANA time zone such as America/Los_Angeles, got {text!r}") from None
    return text


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m streams.ingest.replay",
        description="Replay a 911 CSV export as live Kafka traffic, in event-time order.",
        epilog=f"Formats: {', '.join(FORMATS)}. Settings (broker, topic prefix) come from WF_* variables; see docs/operations.md.",
    )
    p.add_argument("path", type=Path, help="CSV file to replay (a real export or a simulator file)")
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--format", default="auto", choices=["auto", *FORMATS], help="built-in source format (default: detect from the header)"
    )
    src.add_argument("--mapping", type=Path, default=None, help="a source mapping (TOML) that reads the file, instead of a built-in format")
    p.add_argument(
        "--timezone",
        type=_zone,
        default=None,
        help="IANA zone of times written without a UTC offset (default: the mapping's, else refused)",
    )
    p.add_argument(
        "--status-tolerance",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="a status time up to this much before its call's received time is moved to it; further, that update alone is "
        "refused (default: the mapping's status_tolerance_s, 120)",
    )
    p.add_argument("--speed", type=_speed, default=60.0, help="times real time, or 'max' (default: 60, an hour a minute)")
    p.add_argument("--rate", type=float, default=None, help="at most this many records per second; with --speed max, a fixed offered load")
    p.add_argument("--limit", type=int, default=None, help="replay only the first N calls by event time")
    p.add_argument("--since", type=parse_when, default=None, help="only calls received at or after this time (ISO 8601; no offset: UTC)")
    p.add_argument("--until", type=parse_when, default=None, help="only calls received before this time (ISO 8601; no offset: UTC)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--dry-run", action="store_true", help="read and order the file, print the summary, send nothing")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = load_settings()
    if settings.faust_fastpath:  # the one flag for every change to Faust and aiokafka (streams.faustext)
        kafka_backoff.install()  # a broker outage: wait between failed metadata updates, do not spin
    if not args.path.is_file():
        print(f"replay: {args.path} is not a file", file=sys.stderr)
        return 2
    if args.rate is not None and args.rate <= 0:
        print(f"replay: --rate must be positive, got {args.rate}", file=sys.stderr)
        return 2
    if args.limit is not None and args.limit < 1:
        print(f"replay: --limit must be at least 1, got {args.limit}", file=sys.stderr)
        return 2
    try:
        fmt: str | Mapping
        if args.mapping is not None:
            fmt = load_mapping(args.mapping)
            shown = f"{fmt.name!r} (mapping {args.mapping})"
        else:
            fmt = detect_format(args.path) if args.format == "auto" else args.format
            shown = repr(fmt)
        print(f"replay: {args.path} as {shown}, {count_rows(args.path, fmt):,} rows", file=sys.stderr)
        plan = read_plan(
            args.path,
            fmt,
            settings.topic_prefix,
            args.limit,
            args.since,
            args.until,
            timezone=args.timezone,
            status_tolerance=args.status_tolerance,
        )
        records, rejected = plan.records, plan.rejected
        if not records:
            print(f"replay: {nothing_read(plan, args.since, args.until)}", file=sys.stderr)
            return 2
        if args.dry_run:
            summary = ReplaySummary(
                calls=sum(1 for r in records if r.topic.endswith(CALLS)),
                updates=sum(1 for r in records if r.topic.endswith(INCIDENT_UPDATES)),
                rejected=Counter(r.reason for r in rejected),
                first_event_time=records[0].event_time,
                last_event_time=records[-1].event_time,
                unmapped=plan.unmapped,
            )
        else:
            summary = asyncio.run(
                produce(
                    records,
                    rejected,
                    bootstrap=settings.kafka_bootstrap,
                    prefix=settings.topic_prefix,
                    pace=Pace(speed=args.speed, rate=args.rate),
                    progress=not args.no_progress,
                    source_name=args.path.name,
                )
            )
            summary.unmapped = plan.unmapped
    except (UnknownFormat, MappingError, ReplayError) as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 2
    print(summary.text(dry_run=args.dry_run))
    return 0


if __name__ == "__main__":
    sys.exit(main())
