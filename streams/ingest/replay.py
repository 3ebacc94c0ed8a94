"""Replay a 911 CSV export as live Kafka traffic.

    python -m streams.ingest.replay ../shared/data/montgomery-pa-911-2015-12-to-2016-08.csv --speed 60
    python -m streams.ingest.replay calls.csv --format watchfloor --speed max --limit 10000

Rows are read through a source adapter (``streams.ingest.sources``; ``--format auto``
detects it from the header), sorted by event time, and produced to
``{prefix}.calls`` and ``{prefix}.incident-updates`` keyed by call id, at
``--speed`` times real time (``max``: as fast as the broker takes them).
Incident updates come from the file's status times where it has them.
Rows the adapter cannot read go to the dead-letter topic with the original line
and the reason, so nothing disappears silently. The producer is idempotent and
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
    rejected: Counter | None = None
    first_event_time: float | None = None
    last_event_time: float | None = None
    seconds: float = 0.0

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
        reasons = ", ".join(f"{r}: {n}" for r, n in sorted(rejected.items()))
        return head + f"; {sum(rejected.values())} rows refused by the adapter" + (f" ({reasons})" if reasons else "")


def plan_replay(
    path: Path,
    fmt: str,
    prefix: str,
    limit: int | None = None,
    since: float | None = None,
    until: float | None = None,
) -> tuple[list[Outgoing], list[Rejected]]:
    """Read a file into the ordered records to produce (pure apart from reading the file).

    ``since``/``until`` (epoch seconds) keep calls received in ``[since, until)``;
    ``limit`` then keeps the first ``limit`` of them by event time, with their updates.
    """
    calls_topic = topic_name(prefix, CALLS)
    updates_topic = topic_name(prefix, INCIDENT_UPDATES)
    rows: list[Row] = []
    rejected: list[Rejected] = []
    for item in read_source(path, fmt):
        if isinstance(item, Rejected):
            rejected.append(item)
        elif (since is None or item.event_time >= since) and (until is None or item.event_time < until):
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
    out.sort(key=lambda o: (o.event_time, o.order))
    return out, rejected


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
    """Each refused line to the dead-letter topic ``dlq``, in the worker's envelope, keyed by its line number."""
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m streams.ingest.replay",
        description="Replay a 911 CSV export as live Kafka traffic, in event-time order.",
        epilog=f"Formats: {', '.join(FORMATS)}. Settings (broker, topic prefix) come from WF_* variables; see docs/operations.md.",
    )
    p.add_argument("path", type=Path, help="CSV file to replay (a real export or a simulator file)")
    p.add_argument("--format", default="auto", choices=["auto", *FORMATS], help="source format (default: detect from the header)")
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
        fmt = detect_format(args.path) if args.format == "auto" else args.format
        print(f"replay: {args.path} as {fmt!r}, {count_rows(args.path):,} rows", file=sys.stderr)
        records, rejected = plan_replay(args.path, fmt, settings.topic_prefix, args.limit, args.since, args.until)
        if not records:
            print("replay: no calls in the file match --since/--until", file=sys.stderr)
            return 2
        if args.dry_run:
            summary = ReplaySummary(
                calls=sum(1 for r in records if r.topic.endswith(CALLS)),
                updates=sum(1 for r in records if r.topic.endswith(INCIDENT_UPDATES)),
                rejected=Counter(r.reason for r in rejected),
                first_event_time=records[0].event_time,
                last_event_time=records[-1].event_time,
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
    except (UnknownFormat, ReplayError) as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 2
    print(summary.text(dry_run=args.dry_run))
    return 0


if __name__ == "__main__":
    sys.exit(main())
